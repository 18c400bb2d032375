"""Imported once by the worker server (multiprocessing's forkserver, ``workers.py``) when
it starts, before it forks any worker: what every worker would otherwise import again.

The caller names them in two environment variables, read here only:

- ``ARCHCOST_WORKER_PATH``: the caller's ``sys.path`` (the server starts as a fresh
  interpreter), so the caller's modules import here;
- ``ARCHCOST_WORKER_STUBS``: module names the caller replaced by empty modules (a stub for
  an import that must not run), put in ``sys.modules`` first so the imports below go the
  caller's way;
- ``ARCHCOST_WORKER_IMPORTS``: modules to import (the task's libraries: torch, timm,
  fvcore, archcost's passes).

torch runs with one thread here and this process runs no kernel: its OpenMP runtime never
starts a thread pool, so a worker forked from it starts with a fresh one (libgomp is not
fork-safe). An import that fails is left for the worker to meet again, as its row's error.
"""

import importlib
import os
import sys
import types


def _names(key):
    return [n for n in os.environ.get(key, "").split(",") if n]


sys.path[:0] = [p for p in os.environ.get("ARCHCOST_WORKER_PATH", "").split(os.pathsep) if p and p not in sys.path]

for _name in _names("ARCHCOST_WORKER_STUBS"):
    sys.modules.setdefault(_name, types.ModuleType(_name))

try:
    import torch

    torch.set_num_threads(1)  # no parallel region can start a thread pool in the server
except Exception:  # no torch: a plain task
    pass

for _name in _names("ARCHCOST_WORKER_IMPORTS"):
    try:
        importlib.import_module(_name)
    except Exception:
        pass
