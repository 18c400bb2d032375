"""This CPU's roof, measured until it is stable, with its spread, and cached safely.

What is measured (each a best-of-``BEST_OF`` inside one round):

- FLOP/s per dtype: ``torch.mm`` of n x n matrices (2 n^3 FLOPs), the best of the sizes in
  ``GEMM_SIZES`` (a 1024-square product reaches about two thirds of what a larger one does
  on a wide-vector CPU);
- bandwidth: ``dst.copy_(src)`` of a 64 MiB buffer (2 x 64 MiB moved), ``src.sum()`` of it
  (64 MiB read) and a matrix-vector product over a 64 MiB matrix (what a batch-1 classifier
  does: its weights read once, as a stream); the roof is the fastest;
- cache bandwidth: the same copy of a buffer a quarter of one core's L2 cache (so source and
  destination stay in L2): the second tier of a cache-aware roofline (Ilic, Pratas, Sousa,
  "Cache-aware Roofline model", IEEE CAL 2014). An operator whose bytes fit in the L2 of the
  cores it runs on is bounded by it; larger ones by the first;
- fresh pages: what writing an output into newly allocated memory costs beyond writing it
  into memory already in use. glibc's ``malloc`` serves a request of at least
  ``FRESH_BYTES`` (32 MiB on 64-bit: ``DEFAULT_MMAP_THRESHOLD_MAX``, the most its dynamic
  mmap threshold rises to; mallopt(3)) with a new ``mmap`` and unmaps it on free, so each
  such output's pages are faulted in and zeroed by the kernel as the kernel writes them:
  a batch-16 activation of 50 MB pays it at every layer. Measured as a ``FRESH_BYTES * 2``
  ReLU into a new tensor less the same ReLU into a kept one; ``fresh_bandwidth`` is bytes
  per second of that difference (0 where there is none: another allocator that keeps its
  memory). It is kept as the best of the rounds but does not decide when they have settled
  (page faults vary with the kernel's state more than the other figures).

**Until stable.** Rounds repeat until the last ``WINDOW`` rounds agree within ``TOLERANCE``
on every figure (max / min - 1), at most ``MAX_ROUNDS``. The figure kept is the best over
all rounds (other jobs only ever slow a run down; a quiet moment shows what the machine
attains), and its *spread* over the final window is stored and shown. When the rounds never
settle the machine is too busy: the result carries a warning and is **not cached**, so the
next run measures again. The load average before and after is recorded.

**Cache.** One JSON file per machine (CPU model, logical cores, threads, torch version and
this format's version) in ``$ARCHCOST_CACHE_DIR`` or the user's cache folder. On read it is
validated: the right format, this machine and torch, finite positive figures, a stable run;
anything else (zeros, a JSON list, a truncated file) is measured again, never a crash.

Beside the calibrated roof, the hardware peak modelled from the CPU's own facts
(``archcost/devices/cpu_facts.py``): a kernel can beat the calibrated GEMM (oneDNN's
convolutions do) but not the hardware peak.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import pathlib
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

GEMM_SIZES = {"float32": (1024, 2048), "bfloat16": (1024,), "float16": (256,)}  # fp16 is slow without units
COPY_BYTES = 64 * 2**20
FRESH_BYTES = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit (4 * 1024 * 1024 * sizeof(long))
UNSETTLED = ("fresh",)  # figures kept as their best but not waited for
BEST_OF = 3
WINDOW = 3
TOLERANCE = 0.05
MAX_ROUNDS = 8
VERSION = 4


@dataclass
class Calibration:
    machine: str
    threads: int
    torch_version: str
    flops: Dict[str, float]  # dtype -> FLOP/s, best GEMM
    gemm_sizes: Dict[str, List[int]]
    bandwidth: float  # bytes/s: the faster of copy and read
    copy_bandwidth: float
    read_bandwidth: float
    copy_bytes: int
    cache_bandwidth: float  # bytes/s: a copy that stays in L2
    cache_bytes: int  # operators moving at most this many bytes are bounded by cache_bandwidth (L2 x threads)
    spread: Dict[str, float]  # figure -> (max - min) / max over the final window of rounds
    rounds: int
    stable: bool
    load_before: List[float]  # 1, 5, 15 minute load averages
    load_after: List[float]
    peak_flops: Optional[float]  # the hardware peak (float32) from the CPU's facts
    peak_source: str
    measured_at: str
    seconds: float
    matvec_bandwidth: float = 0.0  # bytes/s: a matrix-vector product's read of its 64 MiB matrix
    fresh_bandwidth: float = 0.0  # bytes/s: the extra cost of an output written into fresh pages (0: none)
    fresh_bytes: int = FRESH_BYTES  # outputs of at least this many bytes get fresh pages (glibc's mmap threshold)
    version: int = VERSION
    path: str = field(default="", compare=False)

    @property
    def warning(self) -> str:
        if self.stable:
            return ""
        worst = max(self.spread, key=self.spread.get)
        return (f"the CPU calibration did not settle in {self.rounds} rounds ({worst} varied by "
                f"{self.spread[worst]:.0%}; load average {self.load_before[0]:.2f} -> {self.load_after[0]:.2f} on "
                f"{os.cpu_count()} CPUs): the machine is busy, so the roof is uncertain and was not cached")

    def describe(self) -> str:
        rates = ", ".join(f"{d} {f / 1e9:.1f} GFLOP/s (+-{self.spread.get(d, 0) / 2:.0%})" for d, f in self.flops.items())
        peak = f"; hardware peak {self.peak_flops / 1e9:.1f} GFLOP/s float32 ({self.peak_source})" if self.peak_flops else ""
        return (f"calibrated on {self.machine}, {self.threads} threads, torch {self.torch_version}, {self.measured_at}: "
                f"{rates} (best square matrix product of sizes "
                f"{'/'.join(str(n) for n in self.gemm_sizes.get('float32', []))}); bandwidth "
                f"{self.bandwidth / 1e9:.1f} GB/s (+-{self.spread.get('bandwidth', 0) / 2:.0%}; the faster of a "
                f"{self.copy_bytes // 2**20} MiB copy, {self.copy_bandwidth / 1e9:.1f} GB/s, a read-only sum, "
                f"{self.read_bandwidth / 1e9:.1f} GB/s, and a matrix-vector product's read, "
                f"{self.matvec_bandwidth / 1e9:.1f} GB/s); operators moving at most {self.cache_bytes // 2**10} KiB: "
                f"{self.cache_bandwidth / 1e9:.1f} GB/s (a copy within L2); "
                + (f"outputs of at least {self.fresh_bytes // 2**20} MiB written into fresh pages: "
                   f"{self.fresh_bandwidth / 1e9:.2f} GB/s more (glibc's mmap threshold); " if self.fresh_bandwidth else "")
                + f"{self.rounds} rounds"
                + ("" if self.stable else " (did not settle: not cached)") + peak
                + (f"; cached in {self.path}" if self.path else ""))


def cache_dir() -> pathlib.Path:
    env = os.environ.get("ARCHCOST_CACHE_DIR")
    if env:
        return pathlib.Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "archcost"


def machine() -> dict:
    """What a cached figure is valid for."""
    import torch

    from archcost.devices import device_name

    return {"machine": device_name("cpu"), "threads": torch.get_num_threads(), "torch_version": torch.__version__}


def cache_path(kind: str) -> pathlib.Path:
    m = machine()
    text = f"{m['machine']}|{m['threads']}|{m['torch_version']}|{VERSION}"
    return cache_dir() / f"{kind}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.json"


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def read_valid(path, check: Callable[[dict], bool]) -> Optional[dict]:
    """The cached dict at ``path`` when it is this format and machine and ``check`` passes; else None."""
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return None
    if any(data.get(k) != v for k, v in machine().items()):
        return None
    try:
        return data if check(data) else None
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def write_cache(data: dict, path) -> Optional[str]:
    """Write atomically; a folder that cannot be written is not an error (returns None)."""
    from archcost.files import atomic_path

    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pathlib.Path(tmp).write_text(json.dumps(data, indent=1) + "\n")
    except OSError:
        return None
    return str(path)


def _valid_calibration(d: dict) -> bool:
    flops = d["flops"]
    return (isinstance(flops, dict) and flops and all(_positive(v) for v in flops.values())
            and all(_positive(d[k]) for k in ("bandwidth", "copy_bandwidth", "read_bandwidth", "cache_bandwidth"))
            and d["stable"] is True and isinstance(d["spread"], dict)
            and isinstance(d.get("fresh_bandwidth"), (int, float)) and math.isfinite(d["fresh_bandwidth"])
            and d["fresh_bandwidth"] >= 0 and isinstance(d.get("fresh_bytes"), int) and d["fresh_bytes"] > 0)


def best_seconds(fn, best_of: int = BEST_OF) -> float:
    fn()  # warm-up: page faults, library initialisation
    best = float("inf")
    for _ in range(best_of):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def one_round(sizes, copy_bytes: int, l2: int = 0) -> Dict[str, float]:
    import torch

    out = {}
    with torch.inference_mode():
        for dtype, ns in sizes.items():
            best = 0.0
            for n in ns:
                a = torch.randn(n, n).to(getattr(torch, dtype))
                b = torch.randn(n, n).to(getattr(torch, dtype))
                c = torch.empty(n, n, dtype=a.dtype)
                best = max(best, 2 * n ** 3 / best_seconds(lambda: torch.mm(a, b, out=c)))
            out[dtype] = best
        elems = copy_bytes // 4
        src = torch.ones(elems)
        dst = torch.empty_like(src)
        out["copy"] = 2 * elems * 4 / best_seconds(lambda: dst.copy_(src))
        out["read"] = elems * 4 / best_seconds(lambda: src.sum())
        rows = 1024 if elems % 1024 == 0 else 1
        matrix, vector = src.view(rows, elems // rows), torch.ones(elems // rows)
        out["matvec"] = elems * 4 / best_seconds(lambda: torch.mv(matrix, vector))
        small = max(l2 // 4, 2**16) // 4
        s_src, s_dst = torch.ones(small), torch.empty(small)

        def copies():
            for _ in range(64):
                s_dst.copy_(s_src)
        out["cache"] = 64 * 2 * small * 4 / best_seconds(copies)
        big = torch.ones(2 * FRESH_BYTES // 4)
        kept = torch.empty_like(big)
        fresh_s = best_seconds(lambda: torch.relu(big))  # a new output each call: fresh pages
        kept_s = best_seconds(lambda: torch.clamp_min(big, 0, out=kept))
        extra = fresh_s - kept_s
        out["fresh"] = big.numel() * 4 / extra if extra > 0.1 * kept_s else 0.0
    out["bandwidth"] = max(out["copy"], out["read"], out["matvec"])
    return out


def settle(measure_round: Callable[[], Dict[str, float]], window: int = WINDOW, tolerance: float = TOLERANCE,
           max_rounds: int = MAX_ROUNDS):
    """Rounds until the last ``window`` agree within ``tolerance`` on every figure.
    -> (best per figure, spread per figure over the final window, rounds, stable)."""
    rounds: List[Dict[str, float]] = []
    while True:
        rounds.append(measure_round())
        last = rounds[-window:]
        spread = {k: (max(r[k] for r in last) - min(r[k] for r in last)) / (max(r[k] for r in last) or 1.0)
                  for k in last[0]}
        stable = len(last) == window and all(s <= tolerance for k, s in spread.items() if k not in UNSETTLED)
        if stable or len(rounds) >= max_rounds:
            best = {k: max(r[k] for r in rounds) for k in rounds[0]}
            return best, spread, len(rounds), stable


def measure(sizes=None, copy_bytes: int = COPY_BYTES, **settle_kw) -> Calibration:
    """Measure now (no cache)."""
    from archcost.devices.cpu_facts import read_facts

    sizes = {k: list(v) for k, v in (sizes or GEMM_SIZES).items()}
    start, load_before = time.perf_counter(), list(os.getloadavg())
    facts = read_facts()
    best, spread, rounds, stable = settle(lambda: one_round(sizes, copy_bytes, facts.l2_bytes), **settle_kw)
    m = machine()
    flops = {d: best[d] for d in sizes}
    peak, peak_source = facts.peak_flops("float32", m["threads"]), facts.describe("float32", m["threads"])
    if peak and flops.get("float32", 0) > peak:
        # the GEMM beat the modelled peak: the cores run above the clock the OS states (turbo)
        hz = flops["float32"] / (peak / facts.clock_hz)
        peak_source += (f"; the GEMM attained more, so the cores run above that clock (turbo): at least "
                        f"{hz / 1e9:.2f} GHz, and the peak is taken as the GEMM's rate")
        peak = flops["float32"]
    return Calibration(m["machine"], m["threads"], m["torch_version"], flops, sizes, best["bandwidth"], best["copy"],
                       best["read"], copy_bytes // 4 * 4, max(best["cache"], best["bandwidth"]),
                       facts.l2_bytes * min(m["threads"], facts.cores), spread, rounds, stable, load_before, list(os.getloadavg()),
                       peak, peak_source,
                       datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       time.perf_counter() - start, best.get("matvec", 0.0), best.get("fresh", 0.0), FRESH_BYTES)


def cached() -> Optional[Calibration]:
    """This machine's valid cached calibration, or None (nothing is measured)."""
    path = cache_path("cpu")
    data = read_valid(path, _valid_calibration)
    if data is None:
        return None
    data = {k: v for k, v in data.items() if k in Calibration.__dataclass_fields__}
    data["path"] = str(path)
    try:
        return Calibration(**data)
    except TypeError:
        return None


def calibration(refresh: bool = False, measure_fn: Optional[Callable[[], Calibration]] = None) -> Calibration:
    """This machine's calibration: a valid cached one, or measured now (and cached when stable)."""
    path = cache_path("cpu")
    if not refresh:
        found = cached()
        if found is not None:
            return found
    cal = (measure_fn or measure)()
    if cal.stable:
        cal.path = write_cache({k: v for k, v in asdict(cal).items() if k != "path"}, path) or ""
    return cal


def cpu_roof(dtype: str, cal: Calibration, launch_overhead_s: float = 0.0):
    """The roofline's roof for this CPU: the calibrated GEMM rate and bandwidth. Its source
    names the hardware peak beside it: a kernel can beat the GEMM, never the peak."""
    from .bounds import Roof

    if dtype not in cal.flops:
        raise ValueError(f"no calibration for {dtype} on this CPU (have {', '.join(cal.flops)})")
    return Roof(f"this CPU ({cal.machine}, {cal.threads} threads)", dtype, cal.flops[dtype], cal.bandwidth,
                "measured: " + cal.describe() + (f"; WARNING: {cal.warning}" if cal.warning else ""),
                launch_overhead_s)
