"""The largest batch that fits a memory budget, found by measuring, not extrapolating.

Every candidate batch is one meta pass: a whole training step (``training.py``) or an
inference forward (``memory.peak_pass``), so what is compared with the budget is always a
measured figure. ``needed_bytes`` = ``train_peak_bytes`` (or weights + buffers + the
inference peak) + the input batch (the class labels, 8 bytes a sample, left out). Memory
is not assumed to grow with the batch (``batch_search.search_measured``): every batch up to
16 is measured, and the answer B is the largest batch that fits with every smaller one;
above 16 the search (``largest_batch``) predicts from a line, then measures its way to the
answer, and says it assumed growth there. B is always a measured fit with B + 1 measured
not to fit (or B = ``max_batch``); larger batches that fit anyway are named (``breakers``).
This is the tensor ledger of a number budget, measured as the CPU runs: kernel scratch of
this CPU's kernels, and attention as the CPU's flash kernel where the CPU picks it
(``cpu_kernels``; meta alone would keep the attention matrix). A GPU's own ledger
(allocator, workspaces, context) is ``fit_gpu``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from archcost.errors import AnalysisError

MAX_BATCH = 1 << 20


@dataclass
class FitResult:
    model: str
    mode: str  # train | inference
    budget_bytes: int
    batch: int  # largest batch that fits; 0 when batch 1 does not
    needed_bytes: Optional[int]  # at ``batch`` (at batch 1 when nothing fits)
    breakdown: Dict[str, object]  # at ``batch`` (at 1 when nothing fits): see ``_train_row``
    curve: Dict[int, int] = field(default_factory=dict)  # batch -> needed bytes, every measured candidate
    capped: bool = False  # ``batch`` is max_batch: it may fit more
    breakers: List[int] = field(default_factory=list)  # larger batches that fit although a smaller one does not
    search_note: str = ""  # where the search assumed growth

    @property
    def headroom_bytes(self) -> int:
        return self.budget_bytes - self.needed_bytes


class _Measure:
    """needed bytes at a batch, cached; the breakdown of each measured batch kept."""

    def __init__(self, name, train, optimizer, dtype, input_size, spec_default, builder, checkpoint=()):
        from archcost.count.build import build

        self.name, self.train, self.dtype = name, train, dtype
        self.input_size, self.default = input_size, spec_default
        self.model = build(builder, "meta", dtype)
        if train:
            from archcost.memory.training import TrainingStep

            self.step = TrainingStep(self.model, optimizer, checkpoint=checkpoint)
        self.rows: Dict[int, dict] = {}

    def __call__(self, batch: int) -> int:
        if batch not in self.rows:
            self.rows[batch] = self._row(batch)
        return self.rows[batch]["needed_bytes"]

    def _row(self, batch):
        from archcost.count.inputs import input_shapes, make_inputs, tensors_in

        inputs = make_inputs(input_shapes(self.input_size, self.default, batch, name=self.name, model=self.model),
                              "meta", self.dtype)
        input_bytes = sum(t.untyped_storage().nbytes() for t in tensors_in(list(inputs)))
        shape = ",".join("x".join(str(d) for d in t.shape) for t in tensors_in(list(inputs)))  # as table's input_shape
        try:
            row = self._train_row(inputs, input_bytes) if self.train else self._inference_row(inputs, input_bytes)
            return {"input_shape": shape, **row}
        except AnalysisError:
            raise
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AnalysisError(f"{self.name} cannot run a {'training step' if self.train else 'forward'} "
                                f"at batch {batch}: {msg}") from None

    def _train_row(self, inputs, input_bytes):
        from archcost.memory.cpu_kernels import CpuKernels

        with CpuKernels():  # a size budget is the CPU's ledger: the CPU's attention kernel, not meta's
            r = self.step.measure(inputs)
        return {"needed_bytes": r.train_peak_bytes + input_bytes, "train_peak_bytes": r.train_peak_bytes,
                "peak_phase": r.peak_phase, "input_bytes": input_bytes,
                "weight_bytes": r.weight_bytes + r.buffer_bytes, "optimizer_state_bytes": r.optimizer_state_bytes,
                "gradients_at_peak": r.gradients_at_peak, "activations_at_peak": r.activations_at_peak,
                "transient_at_peak": r.backward_at_peak + r.step_at_peak, "scratch_at_peak": r.scratch_at_peak,
                "gradient_bytes": r.gradient_bytes, "step_forward_bytes": r.forward_bytes}

    def _inference_row(self, inputs, input_bytes):
        from archcost.memory.forward import peak_detail
        from archcost.memory.training import _nbytes_unique, unique_params

        from archcost.memory.cpu_kernels import CpuKernels

        with CpuKernels():
            peak, scratch = peak_detail(self.model, inputs, {})
        weights = _nbytes_unique(unique_params(self.model)) + _nbytes_unique(self.model.buffers())
        return {"needed_bytes": weights + peak + input_bytes, "inference_peak_bytes": weights + peak,
                "peak_phase": "forward", "input_bytes": input_bytes, "weight_bytes": weights,
                "optimizer_state_bytes": 0, "gradients_at_peak": 0, "activations_at_peak": peak - scratch,
                "transient_at_peak": 0, "scratch_at_peak": scratch}


def largest_batch(needed, budget: int, max_batch: int = MAX_BATCH) -> int:
    """Largest b in [1, max_batch] with needed(b) <= budget, assuming needed grows with b;
    0 when batch 1 does not fit. Evaluates ``needed`` only at measured candidates: each
    next candidate is where the line through the two nearest measured batches meets the
    budget (memory is nearly affine in the batch, so few are needed); once the answer is
    bracketed, a side that moved twice in a row is followed by a bisection step, so the
    bracket always at least halves every two candidates."""
    if needed(1) > budget:
        return 0
    lo, hi = 1, None  # needed(lo) fits; needed(hi) does not
    prev = None  # the other point of the line while unbracketed
    side, run = None, 0  # which end moved last, and how many times in a row
    while hi is None or hi - lo > 1:
        if hi is None:
            if lo >= max_batch:
                return max_batch
            if prev is None:
                guess = 2
            else:
                slope = max((needed(lo) - needed(prev)) / (lo - prev), 1e-9)
                guess = lo + int((budget - needed(lo)) // slope)
            guess = min(max(guess, lo + 1), max_batch)
        else:
            slope = (needed(hi) - needed(lo)) / (hi - lo)
            guess = lo + int((budget - needed(lo)) // slope) if slope > 0 else (lo + hi) // 2
            if run >= 2:
                guess, run = (lo + hi) // 2, 0
            guess = min(max(guess, lo + 1), hi - 1)
        fits = needed(guess) <= budget
        if fits:
            prev, lo = lo, guess
        else:
            hi = guess
        run = run + 1 if side == fits else 1
        side = fits
    return lo


def fit(name: str, budget_bytes: int, train: bool = True, optimizer: str = "adam", dtype="float32",
        input_size=None, freeze: Sequence[str] = (), max_batch: int = MAX_BATCH,
        curve_points: bool = False, checkpoint: Sequence[str] = ()) -> FitResult:
    """The largest batch of ``name`` (a zoo name or file.py:builder) whose measured memory
    fits ``budget_bytes``. ``curve_points``: also measure powers of four up to twice the
    answer, for a plot of memory against batch."""
    from archcost.memory.batch_search import search_measured

    name, dtype, builder, default = resolved(name, dtype, freeze, train, checkpoint)
    measure = _Measure(name, train, optimizer, dtype, input_size, default, builder, checkpoint)
    s = search_measured(measure, budget_bytes, max_batch, lambda: largest_batch(measure, budget_bytes, max_batch))
    batch = s.batch
    at = max(batch, 1)
    if curve_points:  # a grid for the plot, every 4x, besides the search's own candidates
        b = 1
        while b <= min(2 * at, max_batch):
            measure(b)
            b *= 4
    from archcost.memory.scratch import notes_for

    needed = measure(at)
    # what the kernel-scratch measurement could not do (a call too large to run alone here)
    scratch_note = notes_for(measure.step if train else measure.model)
    return FitResult(name, "train" if train else "inference", budget_bytes, batch, needed,
                     dict(measure.rows[at]), {b: r["needed_bytes"] for b, r in sorted(measure.rows.items())},
                     capped=batch == max_batch, breakers=s.breakers,
                     search_note="; ".join(n for n in (s.note, scratch_note) if n))


def resolved(name: str, dtype, freeze: Sequence[str] = (), train: bool = True, checkpoint: Sequence[str] = ()):
    """(name, torch dtype, builder with ``freeze`` applied, the zoo's default input size or None)
    for a zoo name or file.py:builder; the user's mistakes as AnalysisError."""
    from archcost.conditions import DTYPES
    from archcost.memory.training import frozen_builder
    from archcost.zoo.sources import resolve_model

    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise AnalysisError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    name, spec, builder, module = resolve_model(name, {})
    if module is not None:
        raise AnalysisError("fit takes a zoo name or a file.py:builder reference")
    if freeze:
        builder = frozen_builder(builder, freeze)
    if checkpoint and not train:
        raise AnalysisError("--checkpoint only changes training memory: drop it or use --train")
    return name, dtype, builder, spec.input_size if spec else None
