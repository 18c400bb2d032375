"""Models from outside the zoo: ``path/to/file.py:builder`` or ``package.module:builder``."""

import copy
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
            module = _load_file(path)
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

    source = getattr(module, "__archcost_key__", target)

    def build(**kwargs):
        """The builder's model: the builder runs once per device it is built on (its side
        effects once in a run); later calls get a deep copy of that first model."""
        key = (source, attr, repr(sorted(kwargs.items())), str(_default_device()))
        if key in _BUILT:
            try:
                return copy.deepcopy(_BUILT[key])
            except Exception:  # a module that cannot be copied: build it again
                pass
        try:
            model = builder(**kwargs)
        except Exception as exc:
            raise BuilderError(f"builder {ref!r} raised {type(exc).__name__}: {exc}") from None
        if isinstance(model, nn.Module):
            try:
                _BUILT[key] = copy.deepcopy(model)
            except Exception:
                pass
            while len(_BUILT) > KEEP_BUILT:
                _BUILT.pop(next(iter(_BUILT)))
        return model

    return build


def _default_device():
    import torch

    get = getattr(torch, "get_default_device", None)
    return get() if get else "cpu"


KEEP_BUILT = 4
_BUILT = {}  # (source, builder, keywords, device) -> a pristine copy of the builder's model (the last few)
_FILES = {}  # (path, mtime, size) -> the module: a model file is executed once per version


def _load_file(path: pathlib.Path):
    path = path.resolve()
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _FILES:
        spec = importlib.util.spec_from_file_location(f"archcost_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        # the file may import modules beside it (``from blocks import block``), as
        # ``python file.py`` would let it: its folder is searched first while it loads
        folder = str(path.parent)
        sys.path.insert(0, folder)
        try:
            spec.loader.exec_module(module)
        finally:
            if folder in sys.path:
                sys.path.remove(folder)
        module.__archcost_key__ = key
        _FILES[key] = module
    return _FILES[key]


def _folder(target) -> str:
    return f"model file {target!r} is a folder: name a Python file in it, like path/to/file.py:builder"


def check_module(obj) -> None:
    if not isinstance(obj, nn.Module):
        raise BuilderError(f"the builder returned {type(obj).__name__}, not a torch.nn.Module")
    from .restore import lazy_parameters

    lazy = lazy_parameters(obj)
    if lazy:  # no shapes to count yet (nn.LazyLinear before its first forward)
        raise BuilderError(f"the builder returned a module with uninitialised lazy parameters ({lazy}): "
                           "run one forward on an example input inside the builder before returning it")
