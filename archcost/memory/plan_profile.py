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
  run again; a ResNet block, whose last ReLU saves its result, is run whole); the bytes it would free, ``saving_bytes``: the storages its forward creates that
  autograd saves, when every operator saving them is inside the module (a storage also
  saved outside, as a block's output saved by the next block, stays), less those of its
  inputs that no operator saves (a checkpoint keeps its inputs until its backward);
  and the interval of the step over which they are freed: from the end of its forward
  (``start``, an index into ``curve``) to the first backward operator of a node its
  forward created (``end``), when the recomputation brings them back.

The estimate of a set's peak is then ``curve[t]`` less the savings of the modules whose
interval covers ``t``, maximised over ``t``. What it leaves out: the lower live total
inside a checkpointed forward (it overestimates there) and the recomputation's transient
tensors (it can underestimate by those, usually one feature map); ``plan`` corrects for
both by measuring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Set, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from archcost.count import rules as ops
from archcost.count.engine import CountingMode, module_hooks, module_records, within
from archcost.count.storage import StorageTracker
from archcost.memory.backward import _NodeLabels, _scopes
from archcost.memory.forward import running_as
from archcost.memory.training import PHASES, StepLive, TrainingStep, _nbytes_unique, _state_tensors


Ident = Tuple[str, int]  # a storage of the step: (phase made in, sequence number), as StepLive.made


@dataclass
class ModuleCost:
    name: str
    macs: int  # recompute MACs if checkpointed (its train-mode forward's MACs)
    saving_bytes: int  # freed from the end of its forward to its backward (may be <= 0)
    start: int  # first index of ``curve`` at which the saving holds
    end: int  # first index at which it no longer holds (the recomputation)


@dataclass
class Profile:
    curve: np.ndarray  # live bytes after each allocation, beyond ``base_bytes``
    phase: List[str]  # the phase of each point of ``curve``
    base_bytes: int  # weights + buffers + optimizer state
    modules: Dict[str, ModuleCost] = field(default_factory=dict)  # candidates, execution order
    forward_macs: int = 0  # the whole train-mode forward

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
        for n in names:
            m = self.modules[n]
            live[m.start:m.end] -= m.saving_bytes
        return self.base_bytes + int(live.max(initial=0))


class _Trace(StepLive):
    """``StepLive`` that also keeps the live total after each allocation and which module
    created each storage in the forward."""

    def __init__(self, exclude, stack: List[str]):
        super().__init__(exclude)
        self.stack = stack
        self.curve: List[int] = []
        self.phases: List[str] = []
        self.creator: Dict[Ident, str] = {}
        self.ops: List[Tuple[int, str, List[Ident]]] = []  # forward: (MACs, module running, output storages)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        seq = self.seq
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if self.phase == "forward":
            owner = self.stack[-1] if self.stack else ""
            keys = [self.made.get(StorageTracker.key(t)) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            rule = ops.ATEN_RULES.get(func._overloadpacket.__name__)
            macs = rule(args, kwargs or {}, out) if rule is not None else 0
            macs = sum(macs.values()) if isinstance(macs, dict) else int(macs or 0)
            self.ops.append((macs, owner, keys))
            for k in keys:
                if k is not None and k[1] > seq:
                    self.creator[k] = owner
        if self.seq == seq:
            return out
        if not self._engine_accumulation(func, args, kwargs):  # as StepLive: not a peak
            self.curve.append(self.current)
            self.phases.append(self.phase)
        return out


def forward_macs(model: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> int:
    """MACs of one train-mode forward with gradients on (as a recomputation runs it)."""
    counter = CountingMode([], module_records(model))
    with running_as(model, train=True), torch.enable_grad(), counter:
        out = model(*inputs)
    del out
    return counter.total


def _recompute_macs(name: str, ops_: List[Tuple[int, str, List[Ident]]], savers: Dict[Ident, Set[str]]) -> int:
    """MACs of the forward operators ``ops_`` (``name``'s) up to the last whose output is
    saved by an operator inside ``name``."""
    for last in range(len(ops_) - 1, -1, -1):
        if any(within(w, [name]) for k in ops_[last][2] for w in savers.get(k, ())):
            return sum(m for m, _, _ in ops_[:last + 1])
    return 0


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
        inputs_of[name] = {trace.made.get(StorageTracker.key(t)): t.untyped_storage().nbytes()
                           for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)}

    def leave(name, out):
        stack.pop()
        fwd_end[name] = len(trace.curve)
        op_range[name][1] = len(trace.ops)
        outs = {trace.made.get(StorageTracker.key(t)) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)}
        if outs & set(inputs_of[name]) - {None}:
            inplace.add(name)  # writes into its input, which a checkpoint keeps to recompute from

    def pack(t):
        if trace.phase == "forward":
            k = trace.made.get(StorageTracker.key(t))
            if k is not None:  # weights, buffers and the input are not the step's to free
                savers.setdefault(k, set()).add(stack[-1] if stack else "")
                saved_bytes[k] = t.untyped_storage().nbytes()
        return t

    def first_backward(names):
        def hook(grad_outputs):
            for n in names:
                bwd_first.setdefault(n, len(trace.curve))
        return hook

    def on_phase(phase):
        if phase == "backward":
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
    del grads
    base = _nbytes_unique(step.params) + _nbytes_unique(buffers) + _nbytes_unique(state)
    prof = Profile(np.asarray(trace.curve, dtype=np.int64), trace.phases, base,
                   forward_macs=sum(m for m, _, _ in trace.ops))
    for name, end in fwd_end.items():
        if not name or calls.get(name) != 1 or name not in bwd_first or name in inplace:
            continue  # shared modules (one segment per call), no backward, in-place (ReLU(inplace=True))
        freed = sum(saved_bytes[k] for k, who in savers.items()
                    if within(trace.creator.get(k, "\0"), [name]) and all(within(w, [name]) for w in who))
        kept = sum(n for k, n in inputs_of[name].items() if k is not None and k not in savers)
        prof.modules[name] = ModuleCost(name, _recompute_macs(name, trace.ops[slice(*op_range[name])], savers), freed - kept, end, bwd_first[name])
    return prof
