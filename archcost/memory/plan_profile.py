"""What checkpointing each module would save, and when: one profiled training step.

``plan`` ranks checkpoint sets with an estimate built from one measured step without
checkpointing (the same step and tracker as ``train_peak_bytes``); every set it reports is
then measured exactly. The profile records:

- the live bytes after every allocation of the step (``curve``; its maximum plus weights,
  buffers and optimizer state is ``train_peak_bytes``);
- for every module: the recompute MACs of checkpointing it, estimated as the MACs of its
  forward's operators up to the last one whose output an operator inside it saves
  (non-reentrant checkpointing stops recomputing once every tensor the segment saved is
  back: an MLP block's last linear layer, whose output only the next block saves, is not
  run again; a ResNet block, whose last ReLU saves its result, is run whole); the bytes
  it would free, ``saving_bytes``: the storages its forward creates that autograd saves,
  when every operator saving them is inside the module (a storage also saved outside, as
  a block's output saved by the next block, stays), over an interval of the step: from
  the end of its forward (``start``, an index into ``curve``) to the first backward
  operator of a node its forward created (``end``), when the recomputation brings them
  back; and ``kept``, its inputs that no operator saves (DenseNet's earlier feature maps,
  which a dense layer only concatenates), which a checkpoint keeps until its backward
  though the step without it frees them earlier (``death``).

The estimate of a set's peak is then ``curve[t]`` less the savings of the modules whose
interval covers ``t``, plus each kept input from its death to the last ``end`` of the
chosen modules that keep it (once: the dense layers of one block share their inputs, so
a kept input is not a per-module cost), maximised over ``t``. What it leaves out: the
lower live total inside a checkpointed forward (it overestimates there) and the
recomputation's transient tensors (it can underestimate by those, usually one feature
map); ``plan`` corrects for both by measuring.

The profiled step is itself a full measured step without checkpointing (``train_peak_bytes``
and its phase, and the backward's MACs, counted as ``backward_pass`` counts them):
``plan`` reports it as the no-checkpointing reference, with no second pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from archcost.count import rules as ops
from archcost.count.engine import CountingMode, module_hooks, module_records
from archcost.count.storage import StorageTracker
from archcost.memory.backward import _NodeLabels, _scopes
from archcost.memory.forward import running_as
from archcost.memory.training import PHASES, StepLive, StepMemory, TrainingStep, _nbytes_unique, _state_tensors


Ident = Tuple[str, int]  # a storage of the step: (phase made in, sequence number), as StepLive.made


@dataclass
class ModuleCost:
    name: str
    macs: int  # recompute MACs if checkpointed (its train-mode forward's MACs)
    saving_bytes: int  # saved storages freed from the end of its forward to its backward
    start: int  # first index of ``curve`` at which the saving holds
    end: int  # first index at which it no longer holds (the recomputation)
    kept: Tuple[Ident, ...] = ()  # its inputs that nothing saves: kept alive by its checkpoint


@dataclass
class Profile:
    curve: np.ndarray  # live bytes after each allocation, beyond ``base_bytes``
    phase: List[str]  # the phase of each point of ``curve``
    base_bytes: int  # weights + buffers + optimizer state
    modules: Dict[str, ModuleCost] = field(default_factory=dict)  # candidates, execution order
    forward_macs: int = 0  # the whole train-mode forward
    kept_bytes: Dict[Ident, int] = field(default_factory=dict)  # the inputs some checkpoint would keep
    death: Dict[Ident, int] = field(default_factory=dict)  # index of ``curve`` where each dies unchecked
    step: Optional[StepMemory] = None  # the profiled step's own measurement (no checkpointing)

    @property
    def peak_bytes(self) -> int:
        return self.base_bytes + int(self.curve.max(initial=0))

    def floor_bytes(self, phase: str) -> int:
        """The highest live total in ``phase`` plus the base: in 'step' (no checkpoint's
        interval reaches it) a floor under any checkpoint set."""
        live = [v for v, p in zip(self.curve.tolist(), self.phase) if p == phase]
        return self.base_bytes + max(live, default=0)

    def estimate(self, names) -> int:
        """Estimated ``train_peak_bytes`` with ``names`` checkpointed (see the module doc)."""
        live = self.curve.astype(np.int64).copy()
        until: Dict[Ident, int] = {}
        for n in names:
            m = self.modules[n]
            live[m.start:m.end] -= m.saving_bytes
            for k in m.kept:
                until[k] = max(until.get(k, 0), m.end)
        for k, end in until.items():  # each kept input once, however many checkpoints keep it
            live[self.death.get(k, len(live)):end] += self.kept_bytes[k]
        return self.base_bytes + int(live.max(initial=0))


class CountingStep(StepLive):
    """``StepLive`` that also sums the MACs of the backward's operators by the rules
    ``backward_pass`` counts with (``ops.ATEN_RULES``): a checkpoint's recomputation runs
    in the backward, so the backward MACs of a step with a set less those without are the
    set's recompute MACs, measured by the same pass that measures its peak."""

    def __init__(self, exclude=(), scratch=None):
        super().__init__(exclude, scratch)
        self.backward_macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if self.phase == "backward":
            self.backward_macs += _macs(func, args, kwargs, out)
        return out


def _macs(func, args, kwargs, out) -> int:
    """An operator's MACs as ``CountingMode`` counts them (0 without a rule)."""
    packet = func._overloadpacket.__name__
    rule = None if packet in ops.ATEN_NO_COST else ops.ATEN_RULES.get(packet)
    macs = rule(args, kwargs or {}, out) if rule is not None else 0
    return sum(macs.values()) if isinstance(macs, dict) else int(macs or 0)


class _Trace(CountingStep):
    """``CountingStep`` that also keeps the live total after each allocation, which module
    created each storage in the forward, and where each storage died."""

    def __init__(self, exclude, stack: List[str]):
        super().__init__(exclude)
        self.stack = stack
        self.curve: List[int] = []
        self.phases: List[str] = []
        self.creator: Dict[Ident, str] = {}
        self.death: Dict[Ident, int] = {}
        self.ops: List[Tuple[int, str, List[Ident]]] = []  # forward: (MACs, module running, output storages)
        free = self.tracker._free

        def dying(k):  # the tracker's finalizer, told which storage died (the index it died at)
            if k in self.tracker.live and k in self.made:
                self.death[self.made[k]] = len(self.curve)
            free(k)

        self.tracker._free = dying  # looked up as each storage is tracked

    def ident(self, t: torch.Tensor):
        """The identity of ``t``'s storage if the step made it and it is alive, else None
        (an address is reused once freed: the class labels the loss makes outside the
        tracker can sit where a freed feature map was)."""
        k = StorageTracker.key(t)
        return self.made.get(k) if k in self.tracker.live else None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        seq = self.seq
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if self.phase == "forward":
            owner = self.stack[-1] if self.stack else ""
            keys = [self.ident(t) for t in _flat(out) if isinstance(t, torch.Tensor)]
            self.ops.append((_macs(func, args, kwargs, out), owner, keys))
            for k in keys:
                if k is not None and k[1] > seq:
                    self.creator[k] = owner
        if self.seq == seq:
            return out
        if not self._engine_accumulation(func, args, kwargs):  # as StepLive: not a peak
            self.curve.append(self.current)
            self.phases.append(self.phase)
        return out


def _flat(out):
    """The leaves of an operator's output (a tensor or a tuple of them, usually)."""
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, (tuple, list)) and all(isinstance(t, torch.Tensor) or t is None for t in out):
        return out
    return tree_flatten(out)[0]


def forward_macs(model: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> int:
    """MACs of one train-mode forward with gradients on (as a recomputation runs it)."""
    counter = CountingMode([], module_records(model))
    with running_as(model, train=True), torch.enable_grad(), counter:
        out = model(*inputs)
    del out
    return counter.total


def _scopes_of(name: str) -> List[str]:
    """'a.b' -> ['', 'a', 'a.b']: the module and every module around it."""
    parts = name.split(".") if name else []
    return [".".join(parts[:i]) for i in range(len(parts) + 1)]


def _common(names) -> str:
    """The innermost module around all of ``names``."""
    split = [n.split(".") if n else [] for n in names]
    out = []
    for parts in zip(*split):
        if any(p != parts[0] for p in parts):
            break
        out.append(parts[0])
    return ".".join(out)


def _freed_bytes(creator: Dict[Ident, str], savers: Dict[Ident, Set[str]], saved_bytes: Dict[Ident, int]):
    """Per module: the bytes of the saved storages created inside it and saved only inside
    it (they go when it is checkpointed). Such a module is around the storage's creator
    and all its savers: the innermost common one and those around it."""
    freed: Dict[str, int] = {}
    for k, who in savers.items():
        made_in = creator.get(k)
        if made_in is None:
            continue
        for m in _scopes_of(_common([made_in, *who])):
            freed[m] = freed.get(m, 0) + saved_bytes[k]
    return freed


def _recompute_macs(ops_: List[Tuple[int, str, List[Ident]]], savers: Dict[Ident, Set[str]],
                    ranges: Dict[str, List[int]]) -> Dict[str, int]:
    """Per module: the MACs of its forward's operators (``ranges``: its slice of
    ``ops_``) up to the last whose output an operator inside it saves (for each module,
    the latest operator whose output is saved inside it; a module run once saves nothing
    after its forward returns, so that operator is in its slice, or before it: nothing)."""
    last: Dict[str, int] = {}
    for i, (_, _, keys) in enumerate(ops_):
        for k in keys:
            for w in savers.get(k, ()):
                for m in _scopes_of(w):
                    last[m] = i  # ops run in order: the latest is the last
    prefix = np.concatenate([[0], np.cumsum([m for m, _, _ in ops_], dtype=np.int64)])
    out = {}
    for name, (lo, hi) in ranges.items():
        i = last.get(name, -1)
        out[name] = int(prefix[i + 1] - prefix[lo]) if lo <= i < hi else 0
    return out


def profile(step: TrainingStep, inputs: Tuple[torch.Tensor, ...]) -> Profile:
    """One measured step of ``step`` (no checkpointing) with the records above."""
    model = step.model
    buffers = list({id(b): b for b in model.buffers()}.values())
    state = _state_tensors(step.opt, step.device)
    stack: List[str] = []
    trace = _Trace((StorageTracker.key(t) for t in [*step.params, *buffers, *state, *inputs]), stack)
    labels = _NodeLabels(stack)
    savers: Dict[Ident, Set[str]] = {}  # storages by identity: an address is reused once freed
    saved_bytes: Dict[Ident, int] = {}
    fwd_end: Dict[str, int] = {}
    inputs_of: Dict[str, Dict[Ident, int]] = {}
    calls: Dict[str, int] = {}
    bwd_first: Dict[str, int] = {}
    op_range: Dict[str, List[int]] = {}
    inplace: Set[str] = set()
    handles = []

    def enter(name, args):
        stack.append(name)
        calls[name] = calls.get(name, 0) + 1
        op_range[name] = [len(trace.ops), None]
        inputs_of[name] = {trace.ident(t): t.untyped_storage().nbytes()
                           for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)}

    def leave(name, out):
        stack.pop()
        fwd_end[name] = len(trace.curve)
        op_range[name][1] = len(trace.ops)
        outs = {trace.ident(t) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)}
        if outs & set(inputs_of[name]) - {None}:
            inplace.add(name)  # writes into its input, which a checkpoint keeps to recompute from

    def pack(t):
        if trace.phase == "forward":
            k = trace.ident(t)
            if k is not None:  # weights, buffers, the input and the labels are not the step's to free
                savers.setdefault(k, set()).add(stack[-1] if stack else "")
                saved_bytes[k] = t.untyped_storage().nbytes()
        return t

    def first_backward(names):
        def hook(grad_outputs):
            for n in names:
                bwd_first.setdefault(n, len(trace.curve))
        return hook

    forward_bytes = []

    def on_phase(phase):
        if phase == "backward":
            forward_bytes.append(trace.current)
            for node, name in labels.labels.items():
                if name:
                    handles.append(node.register_prehook(first_backward(_scopes(name)[1:])))
        if phase in PHASES:
            trace.enter(phase)

    class _Within:  # the tracker, the labels, the hooks and the saved-tensor hooks, together
        def __enter__(self):
            self.ctx = [module_hooks(model, enter, leave), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
                        trace, labels]
            for c in self.ctx:
                c.__enter__()

        def __exit__(self, *exc):
            for c in reversed(self.ctx):
                c.__exit__(*exc)

    try:
        grads = step.run(inputs, on_phase, within=_Within())
    finally:
        for h in handles:
            h.remove()
    measured = step.result(trace, grads, forward_bytes[0])
    del grads
    base = _nbytes_unique(step.params) + _nbytes_unique(buffers) + _nbytes_unique(state)
    prof = Profile(np.asarray(trace.curve, dtype=np.int64), trace.phases, base,
                   forward_macs=sum(m for m, _, _ in trace.ops), death=trace.death, step=measured)
    freed = _freed_bytes(trace.creator, savers, saved_bytes)
    macs = _recompute_macs(trace.ops, savers, {n: r for n, r in op_range.items() if n in fwd_end})
    for name, end in fwd_end.items():
        if not name or calls.get(name) != 1 or name not in bwd_first or name in inplace:
            continue  # shared modules (one segment per call), no backward, in-place (ReLU(inplace=True))
        kept = tuple(k for k in inputs_of[name] if k is not None and k not in savers)
        for k in kept:
            prof.kept_bytes[k] = inputs_of[name][k]
        prof.modules[name] = ModuleCost(name, macs[name], freed.get(name, 0), end, bwd_first[name], kept)
    return prof
