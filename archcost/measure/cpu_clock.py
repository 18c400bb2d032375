"""CPU time of a call: what a single-threaded run takes on a quiet machine, measured on a busy one.

On a shared machine the wall clock of a forward counts the time other jobs held the core
(at load 5 on 2 cores a 100 ms forward takes 2-3x longer, and no repetition escapes it, since
each spans many scheduler slices). The process's CPU time (``time.process_time``,
CLOCK_PROCESS_CPUTIME_ID) counts only the time it ran. With one torch thread, that is the
forward's wall time on a quiet machine, up to what sharing the caches and the memory bus
with other jobs costs (not removed: it can still read high). With more threads it sums the
threads' time (spin-waits included), so it is not a wall time: use it with one thread only.
"""

from __future__ import annotations

import time
from typing import Callable, List


def cpu_ms_calls(fn: Callable[[], object], repeats: int, warmup: int) -> List[float]:
    """CPU milliseconds of the process for each of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        out.append((time.process_time() - t0) * 1e3)
    return out
