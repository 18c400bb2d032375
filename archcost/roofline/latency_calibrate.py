"""Fit this CPU's efficiencies and per-kernel overhead per operator class, on real operators.

The calibration networks (``latency_nets.CALIBRATION_NETWORKS``: two zoo networks and two
synthetic ones, built from torch alone) run on real tensors at batch 1 and 16 with every
operator timed inside the network (``op_timing.timed_ops``: the same records a prediction is
made from, each operator's fastest call over the repeats). Each operator's compute and
memory times come from the same rates as a prediction (``latency.op_times_s``); per class
the compute efficiency, memory efficiency (each on ``EFFICIENCY_GRID``, at most 1) and
overhead (on ``OVERHEAD_US``) of

    time = max(compute / efficiency, memory / memory_efficiency) + overhead

are the ones with the least mean squared log error over its operators (relative error:
a 10 us operator counts as much as a 10 ms one). A class with fewer than ``MIN_SAMPLES``
operators in the calibration takes the element-wise fit. What a plain forward takes beyond
its fitted operators (module calls, functional wrappers, views: Python's time) is spread
over its kernels: ``python_s``, the median over the batch-1 passes, per kernel.

Clock: with one torch thread the calling thread's CPU time (other jobs preempting it do not
count), else wall time; the fastest of the repeats (other jobs only ever slow a call down,
though on a busy machine they also evict the caches, which the CPU-time clock cannot undo).
The fit, its samples and their RMS relative error are stored with the result, which is
cached beside the roof (``calibrate``: keyed by machine and torch, validated on read, not
cached when the roof itself did not settle). About 20 s on a quiet 2-core machine.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

from . import calibrate as cc
from .latency import CLASSES, Efficiencies, Rates, op_class, op_times_s

OVERHEAD_US = (0, 0.5, 1, 2, 3, 5, 8, 12, 20, 30, 50, 80)  # per-kernel overheads tried per class
EFFICIENCY_GRID = tuple(10 ** (-2.5 * i / 60) for i in range(61))  # 1 down to 0.0032, 61 steps: largest first
BATCHES = (1, 16)
REPEATS = {1: 5, 16: 2}
MIN_SAMPLES = 3  # a class with fewer operators in the calibration takes the element-wise fit


def fit_class(points: Sequence[Tuple[float, float, float]]) -> Tuple[float, float, float, float]:
    """points: (compute s, memory s, measured s) of one class's operators. -> (efficiency,
    memory efficiency, overhead s, RMS relative error) with the least mean squared log error;
    among equal fits the largest efficiencies (an operator without FLOPs says nothing of the
    compute side) and the smallest overhead."""
    import numpy as np

    pts = np.asarray(points, dtype=float)
    comp, mem, t = pts[:, 0], pts[:, 1], np.maximum(pts[:, 2], 1e-9)
    grid = np.asarray(EFFICIENCY_GRID)
    base = np.maximum(comp[:, None, None] / grid[None, :, None], mem[:, None, None] / grid[None, None, :])
    best = None
    for c in OVERHEAD_US:
        pred = np.maximum(base + c * 1e-6, 1e-9)
        loss = (np.log(pred / t[:, None, None]) ** 2).mean(axis=0)
        i, j = np.unravel_index(np.argmin(loss), loss.shape)  # the first minimum: the largest efficiencies
        if best is None or loss[i, j] < best[0] - 1e-12:
            best = (loss[i, j], grid[i], grid[j], c * 1e-6)
    _, e, m, c = best
    pred = np.maximum(comp / e, mem / m) + c
    return float(e), float(m), float(c), float(np.sqrt(np.mean((pred / t - 1) ** 2)))


def timed_passes(batches=BATCHES, log=None) -> list:
    """[(conv kinds, TimedPass, batch)] for every calibration network at ``batches``."""
    import torch

    from . import latency_nets
    from .latency import conv_kinds
    from .op_timing import harness_seconds, timed_ops

    passes, harness = [], harness_seconds()
    for name in latency_nets.CALIBRATION_NETWORKS:
        model = latency_nets.build(name)
        for b in batches:
            tp = timed_ops(model, (torch.randn(b, 3, 224, 224),), REPEATS.get(b, 2), harness)
            passes.append((conv_kinds(model), tp, b))
            if log:
                log(f"{name} batch {b}: forward {tp.forward_s * 1e3:.1f} ms, {len(tp.ops)} kernels "
                    f"{sum(tp.seconds) * 1e3:.1f} ms")
    return passes


def fit(passes: Sequence, rates: Rates, log=None) -> Efficiencies:
    """Per class: the efficiencies and overhead that fit the timed operators best
    (``fit_class``); then ``python_s`` from the passes at the smallest batch (where it is a
    visible share). ``passes``: [(conv kinds, TimedPass, batch)]."""
    samples: Dict[str, List[Tuple[float, float, float]]] = defaultdict(list)
    for kinds, tp, _ in passes:
        for o, sec in zip(tp.ops, tp.seconds):
            samples[op_class(o.op, o.module, kinds, o.macs)].append((*op_times_s(o, rates), sec))
    eff, mem, over, fits = {}, {}, {}, {}
    for cls in sorted(CLASSES, key=lambda c: c != "elementwise"):  # the fallback first
        pts = samples.get(cls, [])
        if len(pts) < MIN_SAMPLES:
            eff[cls], mem[cls], over[cls] = eff["elementwise"], mem["elementwise"], over["elementwise"]
            fits[cls] = {"samples": len(pts), "rms_relative_error": None, "from": "elementwise"}
            continue
        eff[cls], mem[cls], over[cls], rms = fit_class(pts)
        fits[cls] = {"samples": len(pts), "rms_relative_error": rms, "points": [list(p) for p in pts]}
        if log:
            log(f"{cls}: efficiency {eff[cls]:.3f} (compute), {mem[cls]:.3f} (memory), overhead {over[cls] * 1e6:.1f} "
                f"us, rms error {rms:.0%} over {len(pts)} operators")
    kernel = Efficiencies(eff, over, "", fits, mem)
    smallest = min(b for _, _, b in passes)
    rest = [(tp.forward_s - sum(kernel.seconds(op_class(o.op, o.module, kinds, o.macs), *op_times_s(o, rates))
                                for o in tp.ops)) / max(1, len(tp.ops))
            for kinds, tp, b in passes if b == smallest]
    python_s = max(0.0, statistics.median(rest))
    if log:
        log(f"Python's time outside the kernels: {python_s * 1e6:.1f} us per kernel")
    return Efficiencies(eff, over, f"fitted on this CPU on the operators of {len(passes)} calibration passes "
                        f"(archcost/roofline/latency_calibrate.py); Python's time {python_s * 1e6:.1f} us per kernel",
                        fits, mem, python_s)


def calibrate(rates: Rates, batches=BATCHES, log=None) -> Efficiencies:
    """Time the calibration networks' operators and fit every class (about 20 s on 2 cores)."""
    return fit(timed_passes(batches, log), rates, log)


def _valid(d: dict) -> bool:
    return (all(set(d[k]) == set(CLASSES) and all(isinstance(v, (int, float)) and 0 < v <= 1 for v in d[k].values())
                for k in ("efficiency", "memory_efficiency"))
            and isinstance(d.get("python_s"), (int, float)) and 0 <= d["python_s"] < 1
            and all(isinstance(v, (int, float)) and v >= 0 and math.isfinite(v) for v in d["overhead_s"].values()))


def cached_efficiencies() -> "Efficiencies | None":
    """This machine's cached fit, or None."""
    path = cc.cache_path("cpu-latency")
    d = cc.read_valid(path, _valid)
    if d is None:
        return None
    return Efficiencies(d["efficiency"], d["overhead_s"], d["source"] + f"; cached in {path}", d.get("fit", {}),
                        d["memory_efficiency"], d["python_s"])


def cpu_efficiencies(rates: Rates, refresh: bool = False, stable: bool = True, log=None) -> Efficiencies:
    """The cached fit for this machine, or a fresh one (cached when ``stable``: the roof it
    was fitted against settled)."""
    path = cc.cache_path("cpu-latency")
    if not refresh:
        found = cached_efficiencies()
        if found is not None:
            return found
    eff = calibrate(rates, log=log)
    if stable:
        data = {**cc.machine(), "version": cc.VERSION, "efficiency": eff.efficiency, "overhead_s": eff.overhead_s,
                "memory_efficiency": eff.memory_efficiency, "python_s": eff.python_s, "source": eff.source, "fit": eff.fit}
        cc.write_cache(data, path)
    return eff


def cpu_rates(cal: cc.Calibration, dtype: str = "float32") -> Rates:
    """A CPU's rates for prediction: the hardware peak (a true ceiling: kernels beat the
    calibrated GEMM, never this) for float32, the calibrated GEMM for other dtypes; the
    calibrated bandwidth."""
    columns = dict(cal.flops)
    if cal.peak_flops and dtype == "float32":
        columns["float32"] = max(cal.peak_flops, cal.flops.get("float32", 0.0))
    return Rates("this CPU", columns, cal.bandwidth, dtype, cache_bandwidth=cal.cache_bandwidth,
                 cache_bytes=cal.cache_bytes)
