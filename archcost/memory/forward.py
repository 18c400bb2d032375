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

On meta tensors both passes run common ops (convolution, batch norm, pooling, matrix
products, elementwise arithmetic) in closed form (``MetaShortcuts``), since PyTorch's
Python meta kernels for them cost more than the rest of the analysis; the outputs are the
same, and tests compare.

Both attribute bytes to modules: ``saved`` to the innermost module running when the
storage was saved, ``peak`` as the highest live total while each module ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Tuple

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from archcost.count.engine import module_hooks
from archcost.count.shapes import MetaShortcuts  # noqa: F401  (re-exported: memory passes and builders use it)
from archcost.count.engine import _tensors
from archcost.count.storage import StorageTracker
from archcost.zoo.restore import running_as  # noqa: F401  (re-exported)

OPTIMIZER_STATE = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}  # state tensors per parameter
OPTIMIZERS = tuple(OPTIMIZER_STATE)


# What a train-mode forward raises when the model cannot train on this input alone: BatchNorm
# on 1 value per channel (ValueError), a detection model that needs targets in training mode
# (torchvision's ``torch._assert``: AssertionError), a forward that indexes a missing target.
TRAIN_FORWARD_ERRORS = (ValueError, RuntimeError, AssertionError, TypeError, KeyError, IndexError)


def no_train_note(what: str, exc: BaseException) -> str:
    """One line: why there is no train-mode number (the inference columns stand)."""
    msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    hint = ("; the model needs targets in training mode, which archcost does not make: inference columns only"
            if "target" in msg.lower() else "")
    return f"no {what} on this input: {msg}{hint}"


def existing_storages(model: nn.Module, inputs: Iterable[torch.Tensor]) -> set:
    """Storage keys that exist before the forward: weights, buffers, inputs."""
    tensors = list(model.parameters()) + list(model.buffers()) + _tensors(list(inputs))
    return {StorageTracker.key(t) for t in tensors}


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
    scratch_at_peak: int = 0  # kernel scratch in peak_bytes (memory/scratch.py)


def _eval_bn_statistics(func, args, kwargs) -> bool:
    """native_batch_norm(input, weight, bias, running_mean, running_var, training, ...)
    in eval: its two statistics outputs are empty on CPU, C elements each on meta."""
    if func is not torch.ops.aten.native_batch_norm.default:
        return False
    training = kwargs["training"] if "training" in (kwargs or {}) else args[5]
    return not training


def allocating_call(mode, func, args, kwargs):
    """Run ``func`` under a live-bytes mode: -> (its output, the output tensors that
    allocate as the CPU kernel does, the kernel's scratch bytes). Scratch is asked before
    the call runs (an in-place call changes its operands)."""
    scratch = mode.scratch.bytes(func, args, kwargs) if mode.scratch is not None else 0
    out = mode.call(func, args, kwargs)
    if isinstance(out, torch.Tensor):  # most operators: tree_flatten is the slow part of a pass
        outs = [out]
    else:
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
    if outs and outs[0].device.type == "meta" and _eval_bn_statistics(func, args, kwargs):
        outs = outs[:1]  # count what the CPU kernel allocates
    return out, outs, scratch


class LiveBytes(MetaShortcuts):
    """Live bytes of the storages created under it; ``peak`` is their maximum. Storages
    in ``exclude`` (weights, buffers, inputs) are not counted."""

    def __init__(self, exclude=(), scratch=None):
        super().__init__()
        self.exclude = set(exclude)
        self.scratch = scratch  # a scratch provider (memory/scratch.py), or None: kernels' scratch left out
        self.scratch_at_peak = 0
        self.tracker = StorageTracker(on_free=self._freed)
        self.current = 0
        self.peak = 0
        self.frames: List[list] = []  # [name, highest live total while it ran]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out, outs, scratch = allocating_call(self, func, args, kwargs)
        for t in outs:
            if StorageTracker.key(t) not in self.exclude and self.tracker.add(t):
                self.current += t.untyped_storage().nbytes()
        # the live total after the call, and inside it: its scratch on top of what it returned
        high = self.current + scratch
        if high > self.peak:
            self.peak, self.scratch_at_peak = high, scratch
        if self.frames:
            self.frames[-1][1] = max(self.frames[-1][1], high)
        return out

    def _freed(self, nbytes):
        self.current -= nbytes


def peak_pass(model: nn.Module, inputs: Tuple[torch.Tensor, ...], modules: Dict[str, ModuleMemory],
              scratch: bool = True) -> int:
    """Eval, no-grad forward; returns the peak of live bytes and records each module's.
    ``scratch``: with what kernels allocate and free inside themselves, measured on this
    CPU (``memory/scratch.py``; not on a GPU)."""
    return peak_detail(model, inputs, modules, scratch)[0]


def peak_detail(model: nn.Module, inputs: Tuple[torch.Tensor, ...], modules: Dict[str, ModuleMemory],
                scratch: bool = True) -> Tuple[int, int]:
    """(``peak_bytes``, the kernel scratch in it) of an eval, no-grad forward."""
    from archcost.memory import scratch as ks

    if not scratch or not ks.measurable(model, inputs):
        return _peak_run(model, inputs, modules, None)

    def run_meta(batch, provider):
        mods: Dict[str, ModuleMemory] = {}
        return (*_peak_run(model, ks.inputs_at(inputs, batch, inputs[0].device), mods, provider), mods)

    twin = []

    def run_real(batch, mode):
        if not twin:
            twin.append(ks.cpu_twin(model))
        with running_as(twin[0], train=False), torch.no_grad(), mode:
            twin[0](*ks.inputs_at(inputs, batch, "cpu"))

    weights = sum(t.untyped_storage().nbytes() for t in {StorageTracker.key(t): t for t in
                                                          [*model.parameters(), *model.buffers()]}.values())
    source = ks.source_for(model, inputs, lambda: ks.ScratchSource(run_meta, run_real,
                                                                   need=lambda r: weights + r[0]))
    source.run_real = run_real  # this call's CPU twin, dropped when it returns
    try:
        peak, at_peak, mods = source.at(ks.batch_of(inputs))[0]
    finally:
        twin.clear()
    for name, rec in mods.items():
        mine = modules.setdefault(name, ModuleMemory())
        mine.peak_bytes = max(mine.peak_bytes, rec.peak_bytes)
    return peak, at_peak


def _peak_run(model, inputs, modules, scratch) -> Tuple[int, int]:
    mode = LiveBytes(existing_storages(model, inputs), scratch)

    def enter(name, args):
        mode.frames.append([name, mode.current])

    def leave(name, out):
        _, high = mode.frames.pop()
        rec = modules.setdefault(name, ModuleMemory())
        rec.peak_bytes = max(rec.peak_bytes, high)
        if mode.frames:
            mode.frames[-1][1] = max(mode.frames[-1][1], high)

    with running_as(model, train=False), module_hooks(model, enter, leave), torch.no_grad(), mode:
        model(*inputs)
    return mode.peak, mode.scratch_at_peak


def saved_pass(model: nn.Module, inputs: Tuple[torch.Tensor, ...], modules: Dict[str, ModuleMemory]) -> int:
    """Train-mode forward with saved-tensor hooks; returns the bytes saved for backward
    and records them per module (inclusive, and own code)."""
    exclude = existing_storages(model, inputs)
    saved: Dict[int, torch.Tensor] = {}
    stack: List[str] = []
    total = 0

    def pack(t):
        nonlocal total
        k = StorageTracker.key(t)
        if k not in exclude and k not in saved:
            saved[k] = t
            n = t.untyped_storage().nbytes()
            total += n
            for name in stack:
                modules.setdefault(name, ModuleMemory()).saved_bytes += n
            if stack:
                modules.setdefault(stack[-1], ModuleMemory()).self_saved_bytes += n
        return t

    try:
        with running_as(model, train=True), \
                module_hooks(model, lambda name, args: stack.append(name), lambda name, out: stack.pop()), \
                torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                MetaShortcuts():
            model(*inputs)
        return total
    finally:
        saved.clear()


def measure(model: nn.Module, inputs: Tuple[torch.Tensor, ...], scratch: bool = True) -> MemoryResult:
    """``peak`` and ``saved`` passes; ``scratch``: the peak with kernels' scratch (CPU, meta)."""
    modules: Dict[str, ModuleMemory] = {}
    peak, scratch = peak_detail(model, inputs, modules, scratch)
    saved = saved_pass(model, inputs, modules)
    return MemoryResult(peak, saved, modules, scratch)


def train_bytes(param_bytes: int, buffer_bytes: int, trainable_bytes: int, saved_bytes: int,
                optimizer: str = "sgd") -> int:
    """Weights and buffers + one gradient per trainable parameter + the optimizer's state
    (plain SGD none, momentum one buffer, Adam two) + the activations saved for backward."""
    return param_bytes + buffer_bytes + trainable_bytes * (1 + OPTIMIZER_STATE[optimizer]) + saved_bytes
