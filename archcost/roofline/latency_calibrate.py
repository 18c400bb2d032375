"""Fit this CPU's efficiency and per-kernel overhead per operator class.

Each class is timed on layers of the shapes real networks have (the ``SHAPES`` below: VGG
and ResNet convolutions, MobileNet depthwise ones, ViT's products and attention, norms,
pooling, element-wise operators), at batch 1 and 4, as ``nn.Module`` calls (what a model's
forward runs, module-call cost included). Each layer's bound comes from the same records and
rates as a prediction (``latency.op_bound_s``); per class a least-squares line through log time against log bound gives

    time = kernels x overhead + 1 ms x (bound / 1 ms) ** exponent / efficiency

(an efficiency stated at a 1 ms bound, and how it changes with size: small layers reach a
smaller share of the roof than large ones), never below the bound. The overhead per kernel
is a multiple (1 to 64) of the dispatch cost measured once (a module call on a one-element
tensor), the one whose fit has the least error: some kernels cost more than dispatch before
any work (a oneDNN primitive's set-up).
Time per layer: the fastest of ``REPEATS`` calls after a warm-up. The fastest, not the
median: on a shared machine other jobs preempt calls (a 2-core machine at load 5 makes
most calls last a whole scheduler slice, ~28 ms), and only ever slow them down; the fastest
call is the layer's time on a quiet machine, which is what the prediction is for. With one
torch thread the clock is the process's CPU time, which preemption does not inflate. The
fit, its samples and their RMS relative error are stored with the result, which is cached
beside the roof (``calibrate``: keyed by machine and torch, validated on read, not
cached when the roof itself did not settle).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Dict, List, Tuple

from . import calibrate as cc
from .latency import CLASSES, REFERENCE_S, Efficiencies, Rates, op_bound_s

REPEATS = 9
OVERHEAD_STEPS = (1, 2, 4, 8, 16, 32, 64)  # multiples of the measured dispatch cost tried per class


def _shapes():
    """class -> [(builder of a module, input shape(s))]. Built lazily (imports torch)."""
    import torch.nn as nn
    import torch.nn.functional as F

    class Attn(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    class Add(nn.Module):
        def forward(self, a, b):
            return a + b

    def conv(cin, cout, k, s=1, g=1):
        return lambda: nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False)

    out: Dict[str, list] = {
        "conv_stem": [(conv(3, 64, 7, 2), (3, 224, 224)), (conv(3, 32, 3, 2), (3, 224, 224)),
                      (conv(3, 64, 3), (3, 112, 112))],
        "conv_kxk": [(conv(64, 64, 3), (64, 56, 56)), (conv(128, 128, 3), (128, 28, 28)),
                     (conv(256, 256, 3), (256, 14, 14)), (conv(512, 512, 3), (512, 7, 7)),
                     (conv(64, 192, 5), (64, 28, 28)), (conv(32, 64, 3), (32, 112, 112))],
        "conv_1x1": [(conv(64, 256, 1), (64, 56, 56)), (conv(256, 64, 1), (256, 56, 56)),
                     (conv(512, 128, 1), (512, 28, 28)), (conv(1024, 256, 1), (1024, 14, 14)),
                     (conv(512, 2048, 1), (512, 7, 7)), (conv(16, 96, 1), (16, 112, 112))],
        "conv_grouped": [(conv(128, 128, 3, 1, 32), (128, 56, 56)), (conv(256, 256, 3, 1, 32), (256, 28, 28)),
                         (conv(512, 512, 3, 1, 32), (512, 14, 14)), (conv(240, 240, 3, 1, 4), (240, 28, 28))],
        "conv_depthwise": [(conv(32, 32, 3, 1, 32), (32, 112, 112)), (conv(96, 96, 3, 2, 96), (96, 112, 112)),
                           (conv(144, 144, 3, 1, 144), (144, 56, 56)), (conv(384, 384, 3, 1, 384), (384, 14, 14)),
                           (conv(960, 960, 3, 1, 960), (960, 7, 7)), (conv(240, 240, 5, 1, 240), (240, 14, 14))],
        "matmul": [(lambda: nn.Linear(2048, 1000), (2048,)), (lambda: nn.Linear(4096, 4096), (4096,)),
                   (lambda: nn.Linear(768, 3072), (197, 768)), (lambda: nn.Linear(384, 1152), (49, 384)),
                   (lambda: nn.Linear(192, 192), (197, 192)), (lambda: nn.Linear(25088, 4096), (25088,))],
        "attention": [(Attn, [(12, 197, 64)] * 3), (Attn, [(3, 197, 64)] * 3), (Attn, [(8, 64, 32)] * 3),
                      (Attn, [(4, 256, 64)] * 3)],
        "norm_batch": [(lambda: nn.BatchNorm2d(64), (64, 112, 112)), (lambda: nn.BatchNorm2d(256), (256, 56, 56)),
                       (lambda: nn.BatchNorm2d(1024), (1024, 14, 14)), (lambda: nn.BatchNorm2d(32), (32, 28, 28)),
                       (lambda: nn.BatchNorm2d(96), (96, 56, 56))],
        "norm_layer": [(lambda: nn.LayerNorm(768), (197, 768)), (lambda: nn.LayerNorm(384), (49, 384)),
                       (lambda: nn.LayerNorm(256), (128, 256)), (lambda: nn.GroupNorm(1, 64), (64, 56, 56))],
        "pool_max": [(lambda: nn.MaxPool2d(3, 2, 1), (64, 112, 112)), (lambda: nn.MaxPool2d(2), (128, 56, 56)),
                     (lambda: nn.MaxPool2d(3, 1, 1), (192, 28, 28)), (lambda: nn.MaxPool2d(2), (512, 14, 14))],
        "pool_avg": [(lambda: nn.AdaptiveAvgPool2d(1), (2048, 7, 7)), (lambda: nn.AvgPool2d(2), (256, 28, 28)),
                     (lambda: nn.AdaptiveAvgPool2d(1), (576, 7, 7)), (lambda: nn.AvgPool2d(3, 1, 1), (256, 14, 14))],
        "elementwise": [(lambda: nn.ReLU(), (64, 112, 112)), (lambda: nn.ReLU(inplace=True), (256, 56, 56)),
                        (lambda: nn.ReLU(), (512, 7, 7)), (lambda: nn.GELU(), (197, 3072)),
                        (lambda: nn.Hardswish(), (96, 56, 56)), (lambda: nn.SiLU(), (240, 28, 28)),
                        (Add, [(256, 56, 56)] * 2), (Add, [(512, 14, 14)] * 2)],
    }
    return out


def _time_ms(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    """The fastest call: the process's CPU time with one torch thread (which preemption by
    other jobs does not inflate), else wall time."""
    import torch

    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    fn()
    fn()
    samples = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        samples.append((clock() - t0) * 1e3)
    return min(samples)


def sample(build, shapes, batch: int, rates: Rates, repeats: int = REPEATS) -> Tuple[float, int, float]:
    """(bound seconds, kernels, measured seconds) of one layer at ``batch``."""
    import torch

    from archcost.count.engine import run_pass

    from .attention_bytes import AttentionCalls, fuse

    shapes = shapes if isinstance(shapes, list) else [shapes]
    mod = build().eval()
    meta_in = tuple(torch.empty((batch,) + tuple(s), device="meta") for s in shapes)
    with AttentionCalls() as cap:
        res = run_pass(mod.to("meta"), meta_in, record_ops=True)
    ops, _ = fuse(res.ops, cap.calls)
    bound = sum(op_bound_s(o, rates) for o in ops)
    mod = build().eval()
    real_in = tuple(torch.randn((batch,) + tuple(s)) for s in shapes)
    with torch.inference_mode():
        ms = _time_ms(lambda: mod(*real_in), repeats)
    return bound, len(ops), ms / 1e3


def fit_power(samples: List[Tuple[float, int, float]], overhead_s: float) -> Tuple[float, float, float]:
    """Least squares of log(time - kernels x overhead) against log(bound) (relative error):
    time = kernels x overhead + REFERENCE_S x (bound / REFERENCE_S) ** b / e, with the
    exponent b kept in [0.5, 1.2]. -> (e, b, RMS relative error of the fitted times)."""
    pts = [(math.log(bd / REFERENCE_S), math.log(max(t - k * overhead_s, 0.05 * t) / REFERENCE_S))
           for bd, k, t in samples if bd > 0]
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx > 0 else 1.0
    slope = min(1.2, max(0.5, slope))
    e = math.exp(-(my - slope * mx))
    pred = [k * overhead_s + max(bd, REFERENCE_S * (bd / REFERENCE_S) ** slope / e) for bd, k, t in samples]
    rms = math.sqrt(sum((p / t - 1) ** 2 for p, (_, _, t) in zip(pred, samples)) / len(samples))
    return e, slope, rms


def kernel_overhead_s() -> float:
    """The fastest call of a module on a one-element tensor: what dispatching one kernel
    costs from Python, module call included."""
    import torch
    import torch.nn as nn

    relu, x = nn.ReLU(), torch.ones(1)
    with torch.inference_mode():
        return _time_ms(lambda: relu(x), 200) / 1e3


def calibrate(rates: Rates, batches=(1, 4, 16), classes=CLASSES, log=None) -> Efficiencies:
    """Time every class's layers at ``batches`` and fit it (about a minute on 2 cores)."""
    shapes = _shapes()
    overhead = kernel_overhead_s()
    eff, expo, over, fit = {}, {}, {}, {}
    for cls in classes:
        samples = []
        for build, shp in shapes[cls]:
            for b in batches:
                samples.append(sample(build, shp, b, rates, REPEATS if b < 16 else 3))
        # the overhead per kernel of this class: the measured dispatch cost or more (a oneDNN
        # primitive's set-up, a reduction's pass over its output), whichever fits best
        c = min((overhead * m for m in OVERHEAD_STEPS), key=lambda c: fit_power(samples, c)[2])
        e, x, rms = fit_power(samples, c)
        eff[cls], expo[cls], over[cls] = e, x, c
        fit[cls] = {"samples": len(samples), "rms_relative_error": rms,
                    "points": [[b, k, t] for b, k, t in samples]}
        if log:
            log(f"{cls}: efficiency {e:.2f} at a 1 ms bound, exponent {x:.2f}, overhead {c * 1e6:.0f} us, rms error "
                f"{rms:.0%} over {len(samples)} layers")
    return Efficiencies(eff, over, f"fitted on this CPU (archcost/roofline/latency_calibrate.py); per-kernel "
                        f"overhead {overhead * 1e6:.1f} us", fit, expo)


def _valid(d: dict) -> bool:
    return (set(d["efficiency"]) == set(CLASSES) and all(0 < v < 1e3 for v in d["efficiency"].values())
            and set(d["exponent"]) == set(CLASSES) and all(0.5 <= v <= 1.2 for v in d["exponent"].values())
            and all(isinstance(v, (int, float)) and v >= 0 and math.isfinite(v) for v in d["overhead_s"].values()))


def cached_efficiencies() -> "Efficiencies | None":
    """This machine's cached fit, or None."""
    path = cc.cache_path("cpu-latency")
    d = cc.read_valid(path, _valid)
    if d is None:
        return None
    return Efficiencies(d["efficiency"], d["overhead_s"], d["source"] + f"; cached in {path}", d.get("fit", {}),
                        d["exponent"])


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
                "exponent": eff.exponent, "source": eff.source, "fit": eff.fit}
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
