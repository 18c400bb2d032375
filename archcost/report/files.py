"""Writing reports: CSVs (values cleaned by ``clean.py``) through the atomic writes and
file sets of ``archcost.files``, re-exported here for the commands."""

import pathlib

from archcost.files import OutputDirError, atomic_path, ensure_dir, file_set, write_text  # noqa: F401


def write_csv(target, frame) -> pathlib.Path:
    from .clean import to_csv

    with atomic_path(target) as tmp:
        to_csv(frame, tmp)
    return pathlib.Path(target)
