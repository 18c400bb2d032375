"""Updating a baseline CSV that several processes may update at once.

``update_locked`` holds an exclusive ``flock`` on the baseline's folder while it reads the
current file, merges the new rows in and renames the merged file over it (atomically),
so two ``archcost check --update`` runs never lose each other's models: the second one
reads what the first wrote. The folder is locked, not the file, because the rename
replaces the file's inode. Where ``fcntl`` is missing (Windows) the merge is still
read-then-rename, without the lock."""

from __future__ import annotations

import contextlib
import os
import pathlib

from .files import write_csv

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


@contextlib.contextmanager
def folder_lock(folder):
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def update_locked(path, read, merge):
    """Under the folder lock: ``current = read(path)`` (None when the file does not
    exist yet), write ``merge(current)`` atomically. Returns the merged frame. A symlinked
    baseline stays a link: the file it points to is rewritten."""
    path = pathlib.Path(os.path.realpath(path))
    with folder_lock(path.parent if str(path.parent) else "."):
        current = read(path) if path.exists() else None
        frame = merge(current)
        write_csv(path, frame)
    return frame
