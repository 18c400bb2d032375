"""Latency of a forward, measured.

CUDA: after warm-up, each repetition is bracketed by its own pair of CUDA events and the
device is synchronized once at the end; the events' elapsed times are the GPU's own
clock, free of Python and launch jitter between repetitions. CPU: the same loop timed
with ``time.perf_counter`` (the forward is synchronous), with the thread count stated.

Per-layer times put an event pair (CUDA) or two clock reads (CPU) around each leaf
module through forward hooks. Hooks cost time and, on CUDA, break the stream of
launches, so the per-layer figures come with their measured overhead: the hooked
forward's median minus the plain forward's median.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn


@dataclass
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    repeats: int
    warmup: int
    clock: str  # "cuda events" or "perf_counter"
    threads: int

    def row(self, batch_size: int) -> dict:
        return {"latency_ms": self.median_ms, "latency_p20_ms": self.p20_ms,
                "latency_p80_ms": self.p80_ms, "images_per_s": batch_size / (self.median_ms / 1e3),
                "repeats": self.repeats, "warmup": self.warmup, "clock": self.clock,
                "threads": self.threads}


def quantile(values, q: float) -> float:
    """Linear-interpolation quantile (numpy's default), q in [0, 1]."""
    xs = sorted(values)
    if not xs:
        raise ValueError("no values")
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(samples_ms, warmup: int, clock: str) -> Timing:
    return Timing(statistics.median(samples_ms), quantile(samples_ms, 0.2), quantile(samples_ms, 0.8),
                  len(samples_ms), warmup, clock, torch.get_num_threads())


def _context(device: str, amp_dtype: Optional[torch.dtype]):
    grad = torch.inference_mode()
    if amp_dtype is None:
        return grad
    stack = contextlib.ExitStack()
    stack.enter_context(grad)
    stack.enter_context(torch.autocast(device_type=device, dtype=amp_dtype))
    return stack


MIN_REPEATS = 3  # a time budget never times fewer calls: a median and p20/p80 need a few


def time_calls(fn: Callable[[], object], device: str, repeats: int, warmup: int,
               budget_s: Optional[float] = None) -> list:
    """Milliseconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones.

    ``budget_s`` (autorange, as ``timeit``'s): time calls until the budget is spent, at least
    ``MIN_REPEATS`` (or ``repeats`` if fewer) and at most ``repeats``; the warm-up stops
    after one call once a fifth of the budget is spent. A slow model then gets a few calls,
    a fast one ``repeats``: the row's ``repeats`` says how many."""
    t_start = time.perf_counter()
    for i in range(warmup):
        if budget_s is not None and i and time.perf_counter() - t_start > budget_s / 5:
            break
        fn()
    least = min(MIN_REPEATS, repeats)
    samples = []
    t_start = time.perf_counter()

    def spent():
        return (budget_s is not None and len(samples) >= least
                and time.perf_counter() - t_start >= budget_s)

    if device == "cuda" and budget_s is None:  # queued back to back, read after one sync
        torch.cuda.synchronize()
        pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                 for _ in range(repeats)]
        for start, end in pairs:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) for s, e in pairs]
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()  # each pair read at once: the budget is checked on wall time
            samples.append(start.elapsed_time(end))
            if spent():
                break
        return samples
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if spent():
            break
    return samples


def time_forward(model: nn.Module, inputs: Tuple[torch.Tensor, ...], device: str, repeats: int = 20,
                 warmup: int = 5, amp_dtype: Optional[torch.dtype] = None, budget_s: Optional[float] = None) -> Timing:
    model.eval()
    with _context(device, amp_dtype):
        samples = time_calls(lambda: model(*inputs), device, repeats, warmup, budget_s)
    return summarize(samples, warmup, "cuda events" if device == "cuda" else "perf_counter")


def _layer_clocks(model: nn.Module, device: str, samples: Dict[str, list]):
    """Hooks around each leaf module: a CUDA event pair, or two perf_counter reads."""
    from archcost.count.engine import module_hooks

    open_ = {}

    def enter(name, args):
        if device == "cuda":
            open_[name] = torch.cuda.Event(enable_timing=True)
            open_[name].record()
        else:
            open_[name] = time.perf_counter()

    def leave(name, out):
        start = open_.pop(name)
        if device == "cuda":
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            samples.setdefault(name, []).append((start, end))
        else:
            samples.setdefault(name, []).append((time.perf_counter() - start) * 1e3)

    return module_hooks(model, enter, leave, leaves_only=True)


def time_layers(model: nn.Module, inputs: Tuple[torch.Tensor, ...], device: str, repeats: int = 20,
                warmup: int = 5, amp_dtype: Optional[torch.dtype] = None):
    """Median ms per leaf module (summed over its calls in one forward), the plain and
    hooked whole-forward timings, and the overhead the hooks add (ms per forward)."""
    model.eval()
    plain = time_forward(model, inputs, device, repeats, warmup, amp_dtype)
    samples: Dict[str, list] = {}
    with _context(device, amp_dtype), _layer_clocks(model, device, samples):
        hooked_ms = time_calls(lambda: model(*inputs), device, repeats, warmup)
        if device == "cuda":
            torch.cuda.synchronize()
    per_layer = {}
    for name, vals in samples.items():
        if device == "cuda":
            vals = [s.elapsed_time(e) for s, e in vals]
        calls = len(vals) // (repeats + warmup)
        timed = vals[warmup * calls:]  # drop the warm-up forwards
        per_forward = [sum(timed[i:i + calls]) for i in range(0, len(timed), calls)] if calls else []
        per_layer[name] = statistics.median(per_forward) if per_forward else float("nan")
    hooked = summarize(hooked_ms, warmup, plain.clock)
    return per_layer, plain, hooked, hooked.median_ms - plain.median_ms
