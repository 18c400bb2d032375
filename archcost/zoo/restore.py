"""The user's model comes back as it was: whatever the passes do to an ``nn.Module``
(eval/train switches, hooks, a cast to another dtype or device, NHWC weights, BatchNorm
statistics updated by a train-mode forward, ``requires_grad`` flips), :func:`preserved`
puts it back, bit for bit, when the analysis returns or raises.

How: every module's mode, hook dicts, parameter and buffer slots are recorded; every
tensor's ``.data`` is kept by reference (a cast or ``.to(memory_format=...)`` replaces
``.data`` and leaves the original storage untouched, so putting the reference back
restores values, dtype, device and strides without a copy of the weights); buffers,
which a train-mode forward changes in place, are also cloned and copied back.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn as nn

from archcost.errors import AnalysisError

_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
               "_backward_pre_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
               "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


class Snapshot:
    """The restorable state of a module tree (see the module docstring)."""

    def __init__(self, model: nn.Module, values: bool = False):
        self.modules = list(model.modules())
        self.state = []
        for m in self.modules:
            hooks = {k: dict(getattr(m, k)) for k in _HOOK_DICTS if isinstance(getattr(m, k, None), dict)}
            self.state.append((m.training, hooks, dict(m._parameters), dict(m._buffers)))
        self.params = [(p, p.data, p.requires_grad, p.grad, None if p.grad is None else p.grad.data)
                       for p in _unique(
            p for m in self.modules for p in m._parameters.values() if p is not None)]
        self.buffers = [(b, b.data, b.detach().clone()) for b in _unique(
            b for m in self.modules for b in m._buffers.values() if b is not None)]
        # ``values``: a pass steps an optimizer in place (a training step on the module's
        # own weights), so the values themselves are copied, gradients too.
        self.values = [(p, p.detach().clone(), None if p.grad is None else p.grad.detach().clone())
                       for p, *_ in self.params] if values else []

    def restore(self) -> None:
        for m, (training, hooks, params, buffers) in zip(self.modules, self.state):
            m.training = training
            for k, saved in hooks.items():
                d = getattr(m, k)
                d.clear()
                d.update(saved)
            for slots, saved in ((m._parameters, params), (m._buffers, buffers)):
                if isinstance(slots, dict):  # a ScriptModule's are fixed views onto TorchScript's
                    slots.clear()
                    slots.update(saved)
        for p, data, requires_grad, grad, grad_data in self.params:
            p.grad = None  # a cast converts .grad too: put the parameter back first
            p.data = data
            p.requires_grad_(requires_grad)
            if grad is not None:
                grad.data = grad_data
            p.grad = grad
        for b, data, values in self.buffers:
            b.data = data
            b.data.copy_(values)
        for p, value, grad in self.values:
            p.data.copy_(value)
            if grad is not None:
                p.grad.data.copy_(grad)


def _unique(tensors):
    seen = {}
    for t in tensors:
        seen.setdefault(id(t), t)
    return list(seen.values())


@contextlib.contextmanager
def preserved(obj, values: bool = False):
    """Restore ``obj`` (when it is an ``nn.Module``) on leaving, however the block ends;
    ``values``: also its weights' values (for passes that step an optimizer)."""
    if not isinstance(obj, nn.Module):
        yield
        return
    snap = Snapshot(obj, values)
    try:
        yield
    finally:
        snap.restore()


def refuse_lazy(model) -> None:
    """A module with uninitialised lazy parameters (``nn.LazyLinear``) has no shapes to
    count yet: one line that says so and what to do."""
    if not isinstance(model, nn.Module):
        return
    lazy = lazy_parameters(model)
    if lazy:
        raise AnalysisError(f"the module has uninitialised lazy parameters ({lazy}): run one "
                            "forward on an example input first, then analyze it")


def lazy_parameters(model: nn.Module) -> str:
    """'' when every parameter has its shape; else the first lazy one's name (and how many more)."""
    lazy = [n for n, p in model.named_parameters() if nn.parameter.is_lazy(p)]
    if not lazy:
        return ""
    return lazy[0] + (f" and {len(lazy) - 1} more" if len(lazy) > 1 else "")


def restores_model(fn):
    """Decorator: ``fn(model_or_name, ...)`` hands a module back as it received it."""

    @functools.wraps(fn)
    def wrapper(model_or_name, *args, **kwargs):
        refuse_lazy(model_or_name)
        steps = bool(kwargs.get("train") or kwargs.get("freeze") or kwargs.get("checkpoint"))
        with preserved(model_or_name, values=steps):
            return fn(model_or_name, *args, **kwargs)

    return wrapper


@contextlib.contextmanager
def running_as(model: nn.Module, train: bool):
    """One pass in train or eval mode; afterwards the model's mode and its buffers (the
    BatchNorm statistics a train forward updates) are as they were."""
    was_training = model.training
    buffers = [(b, b.detach().clone()) for b in model.buffers() if b.device.type != "meta"]
    model.train(train)
    try:
        yield model
    finally:
        model.train(was_training)
        with torch.no_grad():
            for b, copy in buffers:
                b.copy_(copy)
