"""Model sources: a zoo name, a ``file.py:builder`` / ``module:builder`` reference or an
``nn.Module``, resolved to (name, spec, builder, module)."""

from __future__ import annotations

import torch.nn as nn

from archcost.errors import AnalysisError

_RUNNING = [None]  # the model last resolved: the one whose code runs now (named in errors)


def running_model():
    """The name of the model whose builder or forward runs now (None before any)."""
    return _RUNNING[0]


def resolve_model(model_or_name, builder_kwargs):
    """-> (name, spec or None, builder or None, module or None)."""
    if isinstance(model_or_name, nn.Module):
        _RUNNING[0] = type(model_or_name).__name__
        return type(model_or_name).__name__, None, None, model_or_name
    from archcost.zoo.custom import resolve_builder
    from archcost.zoo.registry import get_spec

    name = str(model_or_name)
    _RUNNING[0] = name
    if ":" in name:
        builder = resolve_builder(name)
        return name, None, lambda: builder(**builder_kwargs), None
    try:
        spec = get_spec(name)
    except KeyError as exc:
        raise AnalysisError(exc.args[0]) from None
    return name, spec, lambda: spec.builder(**builder_kwargs), None
