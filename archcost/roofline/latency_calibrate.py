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
a 10 us operator counts as much as a 10 ms one), each operator's fresh-page cost
(``latency.op_fresh_s``) taken off its time first. A class with at least ``MIN_SAMPLES``
operators on each side of the cache tier is fitted on each side apart (the cache side under
``class + CACHE_TIER``). A class with fewer than ``MIN_SAMPLES`` operators in the
calibration takes the element-wise fit. What a plain forward takes beyond
its fitted operators (module calls, functional wrappers, views: Python's time) is spread
over its kernels: ``python_s``, the median over the batch-1 passes, per kernel.

Clock: with one torch thread the calling thread's CPU time (other jobs preempting it do not
count), else wall time; the fastest of the repeats (other jobs only ever slow a call down,
though on a busy machine they also evict the caches, which the CPU-time clock cannot undo).
The fit, its samples and their RMS relative error are stored with the result, which is
cached beside the roof (``calibrate``: keyed by machine and torch, validated on read, not
cached when the roof itself did not settle). Two rounds over the networks, about 40 s on a
quiet 2-core machine.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

from . import calibrate as cc
from .latency import CACHE_TIER, CLASSES, Efficiencies, Rates, op_class, op_fresh_s, op_in_cache, op_times_s

OVERHEAD_US = (0, 0.5, 1, 2, 3, 5, 8, 12, 20, 30, 50, 80)  # per-kernel overheads tried per class
EFFICIENCY_GRID = tuple(10 ** (-2.5 * i / 60) for i in range(61))  # 1 down to 0.0032, 61 steps: largest first
BATCHES = (1, 16)
REPEATS = {1: 5, 16: 2}
ROUNDS = 2  # the calibration networks are timed this many times over; each operator's fastest is kept
MIN_SAMPLES = 3  # a class with fewer operators in the calibration takes the element-wise fit
FRESH_FLOOR = 0.1  # an operator's time less its fresh pages is kept at no less than this share of it (noise)


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


def timed_passes(batches=BATCHES, log=None, rounds: int = ROUNDS) -> list:
    """[(conv kinds, TimedPass, batch)] for every calibration network at ``batches``: each
    timed ``rounds`` times over the whole set, every operator's and the forward's fastest
    kept (a slow spell of a shared host lands on one round, not on all)."""
    import torch

    from . import latency_nets
    from .latency import conv_kinds
    from .op_timing import TimedPass, harness_seconds, timed_ops

    harness = harness_seconds()
    models = {name: latency_nets.build(name) for name in latency_nets.CALIBRATION_NETWORKS}
    best: Dict[tuple, TimedPass] = {}
    for r in range(max(1, rounds)):
        for name, model in models.items():
            for b in batches:
                tp = timed_ops(model, (torch.randn(b, 3, 224, 224),), REPEATS.get(b, 2), harness)
                old = best.get((name, b))
                if old is not None and len(old.seconds) == len(tp.seconds):
                    tp = TimedPass(tp.ops, [min(x, y) for x, y in zip(old.seconds, tp.seconds)],
                                   min(old.forward_s, tp.forward_s), tp.module_calls, tp.harness_s)
                best[(name, b)] = tp
                if log:
                    log(f"round {r + 1}: {name} batch {b}: forward {tp.forward_s * 1e3:.1f} ms, {len(tp.ops)} kernels "
                        f"{sum(tp.seconds) * 1e3:.1f} ms")
    return [(conv_kinds(models[name]), tp, b) for (name, b), tp in best.items()]


def fit(passes: Sequence, rates: Rates, log=None) -> Efficiencies:
    """Per class: the efficiencies and overhead that fit the timed operators best
    (``fit_class``); then ``python_s`` from the passes at the smallest batch (where it is a
    visible share). ``passes``: [(conv kinds, TimedPass, batch)]."""
    samples: Dict[str, List[Tuple[float, float, float]]] = defaultdict(list)
    for kinds, tp, _ in passes:
        for o, sec in zip(tp.ops, tp.seconds):
            # the class's curve is fitted to what the operator took beyond its fresh pages (added back on prediction)
            rest = max(sec - op_fresh_s(o, rates), FRESH_FLOOR * sec)
            samples[op_class(o.op, o.module, kinds, o.macs)].append(
                (*op_times_s(o, rates), rest, float(op_in_cache(o, rates))))
    eff, mem, over, fits = {}, {}, {}, {}
    for cls in sorted(CLASSES, key=lambda c: c != "elementwise"):  # the fallback first
        pts = samples.get(cls, [])
        if len(pts) < MIN_SAMPLES:
            eff[cls], mem[cls], over[cls] = eff["elementwise"], mem["elementwise"], over["elementwise"]
            fits[cls] = {"samples": len(pts), "rms_relative_error": None, "from": "elementwise"}
            continue
        # with enough operators on both sides of the cache tier, each side has its own fit
        # (a kernel's fixed cost and its share of the cache's rate are its own there)
        cached, rest = [p[:3] for p in pts if p[3]], [p[:3] for p in pts if not p[3]]
        split = len(cached) >= MIN_SAMPLES and len(rest) >= MIN_SAMPLES
        for key, group in ((cls, rest), (cls + CACHE_TIER, cached)) if split else ((cls, [p[:3] for p in pts]),):
            eff[key], mem[key], over[key], rms = fit_class(group)
            fits[key] = {"samples": len(group), "rms_relative_error": rms, "points": [list(p) for p in group]}
            if log:
                log(f"{key}: efficiency {eff[key]:.3f} (compute), {mem[key]:.3f} (memory), overhead "
                    f"{over[key] * 1e6:.1f} us, rms error {rms:.0%} over {len(group)} operators")
    kernel = Efficiencies(eff, over, "", fits, mem)
    smallest = min(b for _, _, b in passes)
    rest = [(tp.forward_s - sum(kernel.seconds(op_class(o.op, o.module, kinds, o.macs), *op_times_s(o, rates),
                                               op_in_cache(o, rates))
                                + op_fresh_s(o, rates) for o in tp.ops)) / max(1, len(tp.ops))
            for kinds, tp, b in passes if b == smallest]
    python_s = max(0.0, statistics.median(rest))
    if log:
        log(f"Python's time outside the kernels: {python_s * 1e6:.1f} us per kernel")
    return Efficiencies(eff, over, f"fitted on this CPU on the operators of {len(passes)} calibration passes "
                        f"(archcost/roofline/latency_calibrate.py); Python's time {python_s * 1e6:.1f} us per kernel",
                        fits, mem, python_s)


def calibrate(rates: Rates, batches=BATCHES, log=None) -> Efficiencies:
    """Time the calibration networks' operators and fit every class (about 40 s on 2 cores)."""
    return fit(timed_passes(batches, log), rates, log)


def _valid(d: dict) -> bool:
    keys = set(CLASSES) | {c + CACHE_TIER for c in CLASSES}
    return (all(set(CLASSES) <= set(d[k]) <= keys and all(isinstance(v, (int, float)) and 0 < v <= 1
                                                          for v in d[k].values())
                for k in ("efficiency", "memory_efficiency"))
            and set(d["overhead_s"]) == set(d["efficiency"])
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
                 cache_bytes=cal.cache_bytes, fresh_bandwidth=cal.fresh_bandwidth, fresh_bytes=cal.fresh_bytes)
