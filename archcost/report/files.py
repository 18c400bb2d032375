"""Atomic report writing: a temp file in the target folder, then a rename, so a failure
never leaves half a CSV or PNG behind."""

import contextlib
import os
import pathlib
import tempfile


class OutputDirError(ValueError):
    pass


def ensure_dir(path) -> pathlib.Path:
    p = pathlib.Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(f"cannot create output folder {str(p)!r}: {exc.strerror}") from None
    if not p.is_dir():
        raise OutputDirError(f"output path {str(p)!r} is not a folder")
    if not os.access(p, os.W_OK):
        raise OutputDirError(f"output folder {str(p)!r} is not writable; pass --out DIR or --no-save")
    return p


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temp path beside ``target``; rename it over ``target`` only on success."""
    target = pathlib.Path(target)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(target, text: str) -> pathlib.Path:
    with atomic_path(target) as tmp:
        pathlib.Path(tmp).write_text(text)
    return pathlib.Path(target)


def write_csv(target, frame) -> pathlib.Path:
    from .clean import to_csv

    with atomic_path(target) as tmp:
        to_csv(frame, tmp)
    return pathlib.Path(target)
