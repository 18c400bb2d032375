"""Each operator of a real forward, timed: what the CPU's latency fit is made of.

``timed_ops`` runs a model on real tensors under archcost's counting mode (the same
per-operator records a prediction is made from: operator name, module, MACs, bytes) and
times every operator's kernel as it runs inside the network (its operands where the layer
before left them, in cache or not). Each operator's time is the fastest of ``repeats``
passes (other jobs only ever slow a call down). The plain forward (no hooks, no modes) is
timed the same way; what it takes beyond the operators' sum is Python's: module calls,
functional wrappers, views and dispatch above the kernels. Timing an operator from the mode
costs time of its own (the mode's Python around the call, the clock's reads: ``harness_s``,
measured on a one-element operator as the timed call's time less a direct call's); it is
taken off every operator's time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional

import torch

from archcost.count.engine import CountingMode, OpRecord, run_pass


class _TimedCounting(CountingMode):
    """``CountingMode`` that also keeps the wall time of each recorded operator's call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds: List[float] = []
        self._last = 0.0
        self.clock = op_clock()

    def call(self, func, args, kwargs):
        t0 = self.clock()
        out = super().call(func, args, kwargs)
        self._last = self.clock() - t0
        return out

    def _record(self, label, macs, args, out):
        super()._record(label, macs, args, out)
        self.seconds.append(self._last)


@dataclass
class TimedPass:
    ops: List[OpRecord]  # as a counting pass on real tensors records them
    seconds: List[float]  # per operator: its fastest call
    forward_s: float  # the fastest plain forward
    module_calls: int  # module forwards in one pass
    harness_s: float = 0.0  # taken off each operator's time: what timing it from the mode costs

    @property
    def python_s(self) -> float:
        """The forward's time outside the operators' kernels (never negative)."""
        return max(0.0, self.forward_s - sum(self.seconds))


def op_clock():
    """The calling thread's CPU time with one torch thread (the kernels run on it; other jobs
    preempting it do not count), else wall time."""
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


def forward_seconds(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls after one warm-up, on ``op_clock``."""
    clock = op_clock()
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def harness_seconds(calls: int = 200) -> float:
    """What timing one operator from the mode adds to it: a one-element ``add`` timed through
    the mode, less the same call made directly (the fastest of five rounds each)."""
    a, b = torch.ones(1), torch.ones(1)
    mode = _TimedCounting([], {}, True)
    clock = op_clock()

    def direct():
        t0 = clock()
        for _ in range(calls):
            torch.add(a, b)
        return (clock() - t0) / calls

    def timed():
        mode.seconds.clear()
        with torch.no_grad(), mode:
            for _ in range(calls):
                torch.add(a, b)
        return min(mode.seconds)

    return max(0.0, min(timed() for _ in range(5)) - min(direct() for _ in range(5)))


def timed_ops(model, inputs, repeats: int = 3, harness_s: Optional[float] = None) -> TimedPass:
    """Time every operator of ``model(*inputs)`` (real tensors, eval, no grad) and the plain
    forward; ``harness_s`` (measured when None) is taken off each operator's time."""
    model.eval()
    harness_s = harness_seconds() if harness_s is None else harness_s
    modes: List[_TimedCounting] = []

    def counting(*args):
        modes.append(_TimedCounting(*args))
        return modes[-1]

    with torch.inference_mode():
        forward_s = forward_seconds(lambda: model(*inputs), repeats)
    passes = []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first is a warm-up (oneDNN primitives are made on first use)
            res = run_pass(model, tuple(inputs), record_ops=True, counter_cls=counting)
            passes.append((res, modes[-1].seconds))
    res, first = passes[-1]
    runs = [s for _, s in passes[1:] if len(s) == len(first)]
    seconds = [max(0.0, min(r[i] for r in runs) - harness_s) for i in range(len(first))]
    calls = sum(r.calls for r in res.records.values())
    return TimedPass(list(res.ops), seconds, forward_s, calls, harness_s)
