"""``fit`` against a GPU's ledger: the largest batch whose training step (or forward) the
caching allocator can serve within the GPU's usable memory, less the CUDA context and the
user's reserve; every smaller batch fits too (``batch_search``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Sequence

import torch.nn as nn

from .batch_search import AFFINE_AT, Search, affine, search
from .ledger import Gpu, Ledger, budget_of, fits, ledger_of, record, requested_peak

MAX_BATCH = 1 << 20


@dataclass
class GpuFit:
    target: Gpu
    mode: str  # train | inference
    batch: int  # 0 when batch 1 does not fit
    search: Search
    ledger: Ledger  # at ``batch`` (at 1 when nothing fits)
    reserve_bytes: int
    curve: Dict[int, Ledger] = field(default_factory=dict)  # batch -> ledger, for the plot
    model: str = ""

    @property
    def budget_bytes(self) -> int:
        return budget_of(self.target, self.reserve_bytes)


def fit_gpu(model: nn.Module, make_inputs: Callable[[int], tuple], target: Gpu, train: bool = True,
            optimizer: str = "adam", reserve_bytes: int = 0, cudnn_workspace_bytes: int = 0,
            checkpoint: Sequence[str] = (), max_batch: int = MAX_BATCH, curve_points: bool = False) -> GpuFit:
    """``model`` on meta; ``make_inputs(batch)``: its meta inputs at a batch."""
    budget = budget_of(target, reserve_bytes)
    recorded = {}

    def rec(b):
        if b not in recorded:
            recorded[b] = record(model, make_inputs(b), target, train, optimizer, cudnn_workspace_bytes, checkpoint)
        return recorded[b]

    s = search(rec, lambda r: fits(r, budget), lambda r: requested_peak(r) > budget, max_batch)
    at = max(s.batch, 1)
    result = GpuFit(target, "train" if train else "inference", s.batch, s,
                    ledger_of(rec(at), target, train, cudnn_workspace_bytes > 0, reserve_bytes), reserve_bytes)
    if curve_points:  # every 4x up to twice the answer, derived where the search could derive
        derive = affine({b: rec(b) for b in AFFINE_AT}) if s.derived else None
        b = 1
        while b <= min(2 * at, max_batch):
            result.curve[b] = ledger_of((derive or rec)(b), target, train, cudnn_workspace_bytes > 0, reserve_bytes)
            b *= 4
        result.curve[at] = result.ledger
    return result


def fit_gpu_named(name: str, target: Gpu, train: bool = True, optimizer: str = "adam", dtype="float32",
                  input_size=None, freeze: Sequence[str] = (), reserve_bytes: int = 0, cudnn_workspace_bytes: int = 0,
                  checkpoint: Sequence[str] = (), max_batch: int = MAX_BATCH, curve_points: bool = False) -> GpuFit:
    """``fit_gpu`` for a zoo name or file.py:builder, resolved as ``fit.fit`` resolves it."""
    from archcost.count.build import build
    from archcost.count.inputs import input_shapes, make_inputs
    from archcost.errors import AnalysisError
    from archcost.memory.fit import resolved

    name, dtype, builder, default = resolved(name, dtype, freeze, train, checkpoint)
    model = build(builder, "meta", dtype)

    def inputs(batch):
        try:
            return make_inputs(input_shapes(input_size, default, batch, name=name, model=model), "meta", dtype)
        except (RuntimeError, ValueError) as exc:
            raise AnalysisError(f"{name}: no input at batch {batch}: {str(exc).strip().splitlines()[0]}") from None

    try:
        result = fit_gpu(model, inputs, target, train, optimizer, reserve_bytes, cudnn_workspace_bytes, checkpoint,
                         max_batch, curve_points)
        result.model = name
        return result
    except AnalysisError:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalysisError(f"{name} cannot run a {'training step' if train else 'forward'} on meta: {msg}") from None
