"""Atomic report writing: a temp file in the target folder, then a rename, so a failure
never leaves half a CSV or PNG behind. Inside :func:`file_set`, one run's files are
renamed together at the end: all of them or none (an error or Ctrl-C before that leaves
the previous set as it was).

Temp files are named ``.tmp-<pid>-...``: a run killed outright (``kill -9``) leaves its
own, which the next run that writes to the folder removes (:func:`remove_stale`); a temp
file of a process still running is never touched."""

import contextlib
import os
import pathlib
import signal
import tempfile
import threading


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(v):
    """A text cell a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``+cmd``,
    ``@SUM``) gets a leading ``'`` (shown as text); numbers, and text that reads as a
    number (``-3``), stay as they are. :func:`unsafe_undone` reverses it."""
    if not isinstance(v, str) or not v.startswith(FORMULA_START):
        return v
    try:
        float(v)
        return v
    except ValueError:
        return "'" + v


def unsafe_undone(v):
    """The cell as it was before :func:`spreadsheet_safe` (for reading our own CSVs back)."""
    if isinstance(v, str) and len(v) > 1 and v[0] == "'" and v[1:].startswith(FORMULA_START):
        return v[1:]
    return v


class OutputDirError(ValueError):
    pass


_staged = threading.local()  # the open file set's [(tmp, target)], if any


def ensure_dir(path, hint: str = "pass --out DIR or --no-save") -> pathlib.Path:
    p = pathlib.Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(f"cannot create output folder {str(p)!r}: {exc.strerror}") from None
    if not p.is_dir():
        raise OutputDirError(f"output path {str(p)!r} is not a folder")
    if not os.access(p, os.W_OK):
        raise OutputDirError(f"output folder {str(p)!r} is not writable; {hint}")
    remove_stale(p)
    return p


STALE_SECONDS = 24 * 3600  # an old-style temp name (no pid) is stale after a day


def remove_stale(folder) -> list:
    """Remove the temp files that runs which no longer exist left in ``folder``."""
    import re
    import time

    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(".tmp-") or not e.is_file(follow_symlinks=False):
            continue
        m = re.match(r"\.tmp-(\d+)-", e.name)
        try:
            if m:
                if _alive(int(m.group(1))):
                    continue
            elif time.time() - e.stat(follow_symlinks=False).st_mtime < STALE_SECONDS:
                continue
            os.unlink(e.path)
            removed.append(e.path)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process (or not ours to judge): keep its file
    return True


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temp path beside ``target``; rename it over ``target`` only on success
    (inside a :func:`file_set`, when the whole set is written)."""
    target = pathlib.Path(target)
    if target.is_dir():
        raise OutputDirError(f"cannot write {str(target)!r}: a folder has that name; remove it or pass "
                             "another --out")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=target.suffix, dir=target.parent)
    except OSError as exc:  # a folder that takes no files (/proc), is missing or forbids writing
        raise OutputDirError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
    staged = getattr(_staged, "files", None)
    try:
        yield tmp
        if staged is not None:
            staged.append((tmp, target))  # renamed (or removed) by file_set
            tmp = None
        else:
            os.replace(tmp, target)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def file_set(folder="."):
    """Write a run's files as a set: every write inside the block goes to a temp file;
    they are renamed into place together when the block ends without an error, with
    SIGINT and SIGTERM held back during the renames. On an error or Ctrl-C nothing is replaced.
    An OSError while writing (a full disk, a vanished folder) becomes one OutputDirError."""
    if getattr(_staged, "files", None) is not None:  # nested: the outer set commits
        yield
        return
    _staged.files = files = []
    try:
        try:
            yield
        except OSError as exc:
            raise OutputDirError(f"cannot write the reports in {str(folder)!r}: "
                                 f"{exc.strerror or exc}; nothing was replaced") from None
        _commit(files)
    finally:
        _staged.files = None
        for tmp, _ in files:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _commit(files):
    main = threading.current_thread() is threading.main_thread()
    if main:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        for tmp, target in files:
            if pathlib.Path(target).is_dir():
                raise OutputDirError(f"cannot write {str(target)!r}: a folder has that name")
        for tmp, target in files:
            os.replace(tmp, target)
    except OSError as exc:
        raise OutputDirError(f"cannot write {str(exc.filename or '')!r}: {exc.strerror or exc}") from None
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def write_text(target, text: str) -> pathlib.Path:
    with atomic_path(target) as tmp:
        pathlib.Path(tmp).write_text(text)
    return pathlib.Path(target)
