"""Models from outside the zoo: ``path/to/file.py:builder`` or ``package.module:builder``."""

import importlib
import importlib.util
import pathlib
import sys

import torch.nn as nn


class BuilderError(ValueError):
    pass


def resolve_builder(ref: str):
    """Import ``file.py:name`` or ``package.module:name`` and return the callable."""
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise BuilderError(f"model reference {ref!r} must look like path/to/file.py:builder "
                           "or package.module:builder")
    try:
        if target.endswith(".py") or "/" in target or pathlib.Path(target).is_file():
            path = pathlib.Path(target)
            if path.is_dir():
                raise BuilderError(_folder(target))
            if not path.exists():
                raise BuilderError(f"model file {target!r} does not exist")
            if path.suffix != ".py":
                raise BuilderError(f"model file {target!r} is not a Python file (.py): name one, "
                                   "like path/to/file.py:builder")
            spec = importlib.util.spec_from_file_location(f"archcost_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            # the file may import modules beside it (``from blocks import block``), as
            # ``python file.py`` would let it: its folder is searched first while it loads
            folder = str(path.resolve().parent)
            sys.path.insert(0, folder)
            try:
                spec.loader.exec_module(module)
            finally:
                if folder in sys.path:
                    sys.path.remove(folder)
        else:
            module = importlib.import_module(target)
    except BuilderError:
        raise
    except Exception as exc:  # the user's file failed to import
        if pathlib.Path(target).is_dir():
            raise BuilderError(_folder(target)) from None
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and target.endswith(".py"):
            hint = (f"; {exc.name!r} is looked for beside the model file and on PYTHONPATH: put it there, "
                    "or install it")
        raise BuilderError(f"could not import {target!r}: {type(exc).__name__}: {exc}{hint}") from None
    builder = getattr(module, attr, None)
    if builder is None and pathlib.Path(target).is_dir():
        raise BuilderError(_folder(target))
    if builder is None:
        raise BuilderError(f"{target!r} has no attribute {attr!r}")
    if not callable(builder):
        raise BuilderError(f"{ref!r} is not callable; it must be a function returning an nn.Module")

    def build(**kwargs):
        try:
            return builder(**kwargs)
        except Exception as exc:
            raise BuilderError(f"builder {ref!r} raised {type(exc).__name__}: {exc}") from None

    return build


def _folder(target) -> str:
    return f"model file {target!r} is a folder: name a Python file in it, like path/to/file.py:builder"


def check_module(obj) -> None:
    if not isinstance(obj, nn.Module):
        raise BuilderError(f"the builder returned {type(obj).__name__}, not a torch.nn.Module")
