"""Kernel scratch: memory an operator allocates and frees inside itself, measured.

The memory passes see every tensor an operator returns; they cannot see what a kernel
allocates for itself and frees before it returns: oneDNN's reorders of a weight or an
activation into its blocked layout, ``convolution_backward``'s per-thread weight-gradient
buffers (38.7 MB for ConvNeXt-T's 7x7 depthwise layers at 768 channels, at any batch),
batch norm backward's copy of its input. The CPU allocator counts all of it, so a peak
that leaves it out is low (ConvNeXt-T's training peak at batch 2: by 7.2%).

It cannot be derived from shapes alone (which kernel oneDNN picks and what it reorders
depend on shapes, memory formats, the CPU and the thread count), so it is measured on
this machine's CPU kernels, under the CPU allocator's own accounting (``torch.profiler``
with ``profile_memory``). A call's scratch is the highest running sum of the allocator's
events inside the call minus the sum when it returns: what it returns is counted by the
passes already, so scratch is what is alive on top of the live tensors at the moment of
that call, and the passes add it there (``bytes``, asked for each call before it runs).

How a pass gets each call's scratch (``ScratchSource``):

1. The pass runs on meta tensors with a ``Recorder``: each call's ``signature`` (the ATen
   op, every tensor's shape, strides and dtype, every other argument); their hash keys a
   cache in the process and on disk (``$ARCHCOST_CACHE_DIR`` or ``~/.cache/archcost``,
   one file per CPU model, thread count and torch version).
2. Not cached: the same pass runs once on real CPU tensors (its values uninitialised or
   zero) under the profiler and a mode that marks each ATen call (``in_situ``), which
   gives each call's scratch in the order the pass makes them. In situ rather than call by
   call on made-up tensors, because the real kernels choose memory formats meta does not
   follow (a depthwise convolution of a channels-last input returns channels-last on CPU,
   contiguous on meta), and scratch depends on them.
3. The pass runs again on meta with ``Positional``: each call gets the figure of the real
   run's call it is matched to (``align``: in order, by op; the two runs can differ by a
   restride where a CPU kernel returns another memory format). A call left unmatched is
   measured on its own (``Direct``: zeros of its shapes, strides and dtype, once per
   signature); so is every call of a pass too large to run for real on this machine
   (more than half its free memory: a model analysed on meta because it does not fit is
   never built), or one that fails on real tensors; the pass's note says so.

Large batches (``BatchScaled``): a real pass at batch 45 costs what the step costs on this
CPU (20-40 s for ResNet-18 or VGG16 on two cores). Above ``DIRECT_MAX_BATCH`` the pass is
measured in situ at ``REFERENCE_BATCHES`` (2, 4, 8), and call k's scratch at batch B is
the line through its scratch at 4 and 8, taken only where its scratch at 2 lies on that
line too: shown linear in the batch for that call (a reorder of an activation grows with
it; a reorder of a weight, a per-thread buffer, stays). The other calls are measured on
their own (``Direct``) at B. The line is an extrapolation from batch 8: a kernel that
changes algorithm above it is not seen; ``bench/fit_cpu_check.py`` checks ``fit``'s
answers against the allocator at B and B + 1.

Not measured here: memory a library takes outside the CPU allocator (the profiler does
not see it), and a GPU's scratch (cuDNN and cuBLAS workspaces: the device ledger).
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .scratch_calls import (CALL_HEADROOM, TOO_LARGE, _cached, _recipe, _remember, affordable, in_situ, measure_calls,
                            no_scratch_by_rule, signature)

DIRECT_MAX_BATCH = 8  # up to this batch a pass is measured in situ at its own batch
REFERENCE_BATCHES = (2, 4, 8)  # above it: the line through 4 and 8, checked at 2
LINEAR_SLACK_BYTES = 4096  # allocator alignment: a point off the line by less is on it


# ---------------------------------------------------------------- providers a pass asks


class Direct:
    """Each call's scratch measured on its own, at its signature: from the caches, or 0
    and queued (``measure_pending``, then run the pass again)."""

    def __init__(self):
        self.pending: Dict[str, Tuple[object, object]] = {}
        self.index = 0  # calls asked about in this run of the pass
        self.direct_calls = 0  # of them, answered by a measurement of the call alone
        self.too_large = 0  # calls not run alone: their operands would not fit this machine (scratch 0)

    def reset(self):
        self.index = self.direct_calls = self.too_large = 0

    def bytes(self, func, args, kwargs) -> int:
        """Scratch alive inside this call, on top of what it returns; ask before it runs."""
        self.index += 1
        return self._direct(func, args, kwargs)

    def _direct(self, func, args, kwargs) -> int:
        if no_scratch_by_rule(func, args, kwargs):
            return 0
        self.direct_calls += 1
        key = signature(func, args, kwargs)
        self.too_large += key in TOO_LARGE
        n = _cached("calls", key)
        if n is None and key not in self.pending:
            self.pending[key] = (func, _recipe(args, kwargs))
        return n or 0

    def measure_pending(self) -> bool:
        """Measure what the last run queued; False when nothing was."""
        if not self.pending:
            return False
        measure_calls([(k, f, r) for k, (f, r) in self.pending.items()])
        self.pending = {}
        return True


class Recorder(Direct):
    """Answers 0 and keeps each call's op and signature (the key of an in-situ trace)."""

    def __init__(self):
        super().__init__()
        self.calls: List[Tuple[str, str]] = []

    def bytes(self, func, args, kwargs) -> int:
        self.index += 1
        self.calls.append((str(func), signature(func, args, kwargs)))
        return 0

    def key(self) -> str:
        return hashlib.sha1("\n".join(s for _, s in self.calls).encode()).hexdigest()


def align(ops: List[str], real: List[Tuple[str, int]]) -> List[Tuple[str, Optional[int]]]:
    """Each tracked call's in-situ scratch: the real run's calls matched to the tracked ones
    in order, by op (the longest matching runs, ``difflib``). The runs can differ by a call
    here and there where a CPU kernel returns another memory format than meta's and the
    next operator copies or restrides (``as_strided_``); an unmatched call gets None."""
    import difflib

    out: List[Tuple[str, Optional[int]]] = [(op, None) for op in ops]
    matcher = difflib.SequenceMatcher(None, ops, [op for op, _ in real], autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for i in range(size):
            out[a + i] = (ops[a + i], real[b + i][1])
    return out


class Positional(Direct):
    """Call k's scratch is the k-th of an in-situ trace of the same pass, where the ops
    agree; elsewhere, measured on its own."""

    def __init__(self, trace: List[Tuple[str, int]]):
        super().__init__()
        self.trace = trace

    def bytes(self, func, args, kwargs) -> int:
        k = self.index
        self.index += 1
        if k < len(self.trace) and self.trace[k][0] == str(func) and self.trace[k][1] is not None:
            return self.trace[k][1]
        return self._direct(func, args, kwargs)


class BatchScaled(Direct):
    """Call k's scratch at ``batch`` from the line through its in-situ scratch at the
    reference batches, where it is linear; elsewhere, measured on its own."""

    def __init__(self, references: Dict[int, List[Tuple[str, int]]], batch: int):
        super().__init__()
        self.references = references
        self.batch = batch

    def bytes(self, func, args, kwargs) -> int:
        k = self.index
        self.index += 1
        b0, b1, b2 = REFERENCE_BATCHES
        refs = [self.references[b] for b in REFERENCE_BATCHES]
        if all(k < len(r) and r[k][0] == str(func) and r[k][1] is not None for r in refs):
            s0, s1, s2 = (r[k][1] for r in refs)
            slope = (s2 - s1) / (b2 - b1)
            if abs(s1 - s0 - slope * (b1 - b0)) <= LINEAR_SLACK_BYTES:
                return max(0, round(s2 + slope * (self.batch - b2)))
        return self._direct(func, args, kwargs)


def _until_measured(run: Callable[[Direct], object], provider: Direct):
    """``run(provider)``, again after measuring what it queued."""
    result = run(provider)
    if provider.measure_pending():
        provider.reset()
        result = run(provider)
    return result


class ScratchSource:
    """Each call's scratch for one pass of one model, at any batch.

    ``run_meta(batch, provider)`` runs the tracked pass (asking ``provider.bytes`` for each
    call) and returns its result; ``run_real(batch, mode)`` runs the same pass on real CPU
    tensors with ``mode`` entered where the tracker is. ``at(batch)`` returns (the tracked
    pass's result with scratch, the provider it used)."""

    def __init__(self, run_meta: Callable[[int, Direct], object],
                 run_real: Callable[[int, TorchDispatchMode], None],
                 need: Callable[[object], int] = lambda result: 0):
        self.run_meta = run_meta
        self.run_real = run_real
        self.need = need  # bytes the real run would take, from the tracked pass's result
        self.references: Optional[Dict[int, List[Tuple[str, int]]]] = None
        self.notes: List[str] = []
        self.too_large_at: Dict[int, int] = {}  # batch -> calls too large to run alone there

    def trace(self, batch: Optional[int]) -> List[Tuple[str, Optional[int]]]:
        """(op, in-situ scratch) of each call of the tracked pass at ``batch``, None where
        the real run made no such call (see ``align``); cached by the pass's signatures."""
        rec = Recorder()
        result = self.run_meta(batch, rec)
        key = rec.key()
        trace = _cached("traces", key)
        if trace is not None:
            return [(op, None if n is None else int(n)) for op, n in trace]
        ops = [op for op, _ in rec.calls]
        need = self.need(result)
        if not affordable(need):
            self.notes.append(f"not run on real tensors at batch {batch} ({need / 2**30:.1f} GiB, more than half "
                              "of this machine's free memory): each call's scratch measured alone")
            return [(op, None) for op in ops]
        try:
            trace = align(ops, in_situ(lambda mode: self.run_real(batch, mode)))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            self.notes.append(f"the pass failed on real CPU tensors ({str(exc).strip().splitlines()[0][:120]}): "
                              "each call's scratch measured alone")
            return [(op, None) for op in ops]
        _remember("traces", {key: trace})
        return trace

    def at(self, batch: Optional[int]):
        """``batch`` None: the inputs have no one batch dimension; measured as they are."""
        if batch is None or batch <= DIRECT_MAX_BATCH:
            provider: Direct = Positional(self.trace(batch))
        else:
            if self.references is None:
                self.references = {b: self.trace(b) for b in REFERENCE_BATCHES}
            provider = BatchScaled(self.references, batch)
        result = _until_measured(lambda p: self.run_meta(batch, p), provider)
        if provider.too_large:
            self.too_large_at[batch] = provider.too_large
        return result, provider

    def all_notes(self) -> List[str]:
        """The notes, with the calls too large to run alone said once for every batch."""
        if not self.too_large_at:
            return list(self.notes)
        at = sorted(self.too_large_at)
        where = ", ".join(str(b) for b in at[:4]) + (f" and {len(at) - 4} more" if len(at) > 4 else "")
        return self.notes + [f"up to {max(self.too_large_at.values())} calls a pass too large to run alone on this "
                             f"machine ({CALL_HEADROOM} x their operands over half its free memory) at batch {where}: "
                             "their scratch is not measured (taken as 0), so the peak may be low by it"]


# ---------------------------------------------------------------- what a pass needs


def batch_of(inputs) -> Optional[int]:
    """The batch of a pass's inputs: the one first dimension of them all, or None."""
    if not inputs or not all(isinstance(t, torch.Tensor) and t.dim() > 0 for t in inputs):
        return None
    sizes = {t.shape[0] for t in inputs}
    return sizes.pop() if len(sizes) == 1 else None


def inputs_at(inputs, batch: Optional[int], device) -> tuple:
    """Zeros like ``inputs`` at another batch (None: the same shapes) and device; zeros are
    a valid token id and class for every input."""
    return tuple(torch.zeros(t.shape if batch is None else (batch, *t.shape[1:]), dtype=t.dtype, device=device)
                 for t in inputs)


def measurable(model, inputs) -> bool:
    """Scratch is measured for passes on the CPU or on meta (standing for the CPU), whose
    inputs are tensors; a GPU's is the device ledger's business."""
    devices = {t.device.type for t in [*model.parameters(), *model.buffers(), *inputs]
               if isinstance(t, torch.Tensor)}
    return devices <= {"cpu", "meta"} and all(isinstance(t, torch.Tensor) for t in inputs)


def cpu_twin(model):
    """``model`` itself when it is on the CPU; otherwise a copy with CPU storage: weights
    zero, floating buffers 1 (BatchNorm statistics a kernel accepts), others 0."""
    import copy

    if all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()]):
        return model
    twin = copy.deepcopy(model).to_empty(device="cpu")
    with torch.no_grad():
        for p in twin.parameters():
            p.zero_()
        for b in twin.buffers():
            b.fill_(1 if b.is_floating_point() else 0)
    return twin


_SOURCES = weakref.WeakKeyDictionary()


def source_for(owner, inputs, make: Callable[[], "ScratchSource"]) -> "ScratchSource":
    """One ``ScratchSource`` per owner (a model, a training step) and per input shape
    without the batch, kept while the owner lives (``fit`` asks at many batches)."""
    key = tuple((tuple(t.shape[1:]), t.dtype) for t in inputs)
    per_owner = _SOURCES.setdefault(owner, {})
    if key not in per_owner:
        per_owner[key] = make()
    return per_owner[key]


def notes_for(owner) -> str:
    """What the scratch sources of ``owner`` had to say (a pass not run on real tensors)."""
    notes = [n for src in _SOURCES.get(owner, {}).values() for n in src.all_notes()]
    return "; ".join(dict.fromkeys(notes))
