"""Memory a forward really holds, measured on the tensors it creates.

Two passes, each on the same model and input:

- ``peak``: an eval, no-grad forward under a TorchDispatchMode that sees every tensor an
  operator returns. Each new storage adds its bytes to the live total; a finalizer on the
  storage subtracts them when it is freed. ``peak_bytes`` is the highest live total
  beyond what existed before the forward (weights, buffers and the input are excluded).
  The ops see the same shapes on ``meta`` tensors as on CPU, so the result is the same
  there (tests compare). What an operator allocates internally and frees before it
  returns (an im2col buffer, a cuDNN workspace) is invisible at this level; the CPU
  profiler and the CUDA caching allocator see it (``archcost memory`` compares them).
- ``saved``: a train-mode forward with autograd's saved-tensor hooks: every storage that
  autograd keeps for backward, each once, parameters, buffers and the input excluded.
  That is the activation memory of a training step (dropout masks and max-pool indices
  included), not the "every feature map" figure of ``activation_bytes``.

Both attribute bytes to modules: ``saved`` to the innermost module running when the
storage was saved, ``peak`` as the highest live total while each module ran.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Tuple

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

OPTIMIZER_STATE = {"sgd": 0, "momentum": 1, "adam": 2}  # state tensors per parameter
OPTIMIZERS = tuple(OPTIMIZER_STATE)


def _key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def existing_storages(model: nn.Module, inputs: Iterable[torch.Tensor]) -> set:
    """Storage keys that exist before the forward: weights, buffers, inputs."""
    keys = {_key(p) for p in model.parameters()}
    keys |= {_key(b) for b in model.buffers()}
    keys |= {_key(t) for t in inputs}
    return keys


@dataclass
class ModuleMemory:
    saved_bytes: int = 0  # saved while this module (children included) ran
    self_saved_bytes: int = 0  # saved by this module's own code, outside its children
    peak_bytes: int = 0  # highest live total (model-wide, beyond weights and input) during it


@dataclass
class MemoryResult:
    peak_bytes: int
    saved_bytes: int
    modules: Dict[str, ModuleMemory] = field(default_factory=dict)
    final_bytes: int = 0  # still live after the eval forward (its outputs)


class _Stack:
    """Module scopes by name, maintained by forward pre/post hooks."""

    def __init__(self):
        self.names: List[str] = []


@contextlib.contextmanager
def _scope_hooks(model: nn.Module, stack: _Stack, on_enter=None, on_exit=None):
    from .engine import named_modules_unique

    handles = []

    def pre(name):
        def hook(mod, args):
            stack.names.append(name)
            if on_enter:
                on_enter(name)
        return hook

    def post(name):
        def hook(mod, args, out):
            if on_exit:
                on_exit(name)
            stack.names.pop()
        return hook

    try:
        for name, mod in named_modules_unique(model):
            handles.append(mod.register_forward_pre_hook(pre(name)))
            handles.append(mod.register_forward_hook(post(name)))
        yield
    finally:
        for h in handles:
            h.remove()


_EVAL_BN = {torch.ops.aten.native_batch_norm.default}


def _bn_training(func, args, kwargs) -> bool:
    return bool(kwargs.get("training", args[5] if len(args) > 5 else True)) if kwargs else bool(
        args[5] if len(args) > 5 else True)


class LiveBytes(TorchDispatchMode):
    """Live bytes of the storages created under it; ``peak`` is their maximum."""

    def __init__(self, exclude=()):
        super().__init__()
        self.exclude = set(exclude)
        self.live: Dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self.frames: List[list] = []  # [name, highest live total while it ran]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if func in _EVAL_BN and outs and outs[0].device.type == "meta" and not _bn_training(func, args, kwargs):
            outs = outs[:1]  # the CPU kernel returns empty statistics in eval; meta allocates C each
        for t in outs:
            self._add(t)
        return out

    def _add(self, t):
        st = t.untyped_storage()
        k = st._cdata
        if k in self.live or k in self.exclude:
            return
        n = st.nbytes()
        self.live[k] = n
        weakref.finalize(st, self._free, k)
        self.current += n
        if self.current > self.peak:
            self.peak = self.current
        if self.frames and self.current > self.frames[-1][1]:
            self.frames[-1][1] = self.current

    def _free(self, k):
        n = self.live.pop(k, None)
        if n is not None:
            self.current -= n


def peak_pass(model: nn.Module, inputs: Tuple[torch.Tensor, ...], modules: Dict[str, ModuleMemory]):
    """Eval, no-grad forward; returns (peak, bytes still live after it)."""
    mode = LiveBytes(existing_storages(model, inputs))
    stack = _Stack()

    def enter(name):
        mode.frames.append([name, mode.current])

    def leave(name):
        name_, high = mode.frames.pop()
        rec = modules.setdefault(name_, ModuleMemory())
        rec.peak_bytes = max(rec.peak_bytes, high)
        if mode.frames and high > mode.frames[-1][1]:
            mode.frames[-1][1] = high

    was_training = model.training
    model.eval()
    try:
        with _scope_hooks(model, stack, enter, leave), torch.no_grad(), mode:
            out = model(*inputs)
        final = mode.current
        del out
        return mode.peak, final
    finally:
        model.train(was_training)


def saved_pass(model: nn.Module, inputs: Tuple[torch.Tensor, ...], modules: Dict[str, ModuleMemory]) -> int:
    """Train-mode forward with saved-tensor hooks; returns the bytes saved for backward.
    The model's mode and its buffers (BatchNorm statistics a train forward updates) are
    restored afterwards."""
    exclude = existing_storages(model, inputs)
    saved: Dict[int, torch.Tensor] = {}
    stack = _Stack()
    total = [0]

    def pack(t):
        st = t.untyped_storage()
        k = st._cdata
        if k not in exclude and k not in saved:
            saved[k] = t
            n = st.nbytes()
            total[0] += n
            for name in stack.names:
                modules.setdefault(name, ModuleMemory()).saved_bytes += n
            if stack.names:
                modules.setdefault(stack.names[-1], ModuleMemory()).self_saved_bytes += n
        return t

    was_training = model.training
    buffers = [(b, b.detach().clone()) for b in model.buffers() if b.device.type != "meta"]
    model.train()
    try:
        with _scope_hooks(model, stack), torch.enable_grad(), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(*inputs)
        del out
        return total[0]
    finally:
        saved.clear()
        model.train(was_training)
        with torch.no_grad():
            for b, copy in buffers:
                b.copy_(copy)


def measure(model: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> MemoryResult:
    modules: Dict[str, ModuleMemory] = {}
    peak, final = peak_pass(model, inputs, modules)
    saved = saved_pass(model, inputs, modules)
    return MemoryResult(peak, saved, modules, final)


def train_bytes(param_bytes: int, buffer_bytes: int, trainable_bytes: int, saved_bytes: int,
                optimizer: str = "sgd") -> int:
    """Weights and buffers + one gradient per trainable parameter + the optimizer's state
    (plain SGD none, momentum one buffer, Adam two) + the activations saved for backward."""
    if optimizer not in OPTIMIZER_STATE:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    return param_bytes + buffer_bytes + trainable_bytes * (1 + OPTIMIZER_STATE[optimizer]) + saved_bytes
