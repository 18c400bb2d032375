"""This CPU's roof, measured: achievable FLOP/s per dtype from a large matrix product, and
memory bandwidth from a large copy. No datasheet says what a shared, virtualised CPU
delivers, so ``--target cpu`` measures it once and caches the result per machine.

- FLOP/s: an n x n by n x n ``torch.mm`` (2 n^3 FLOPs) in each dtype, best of a few runs
  after a warm-up, with torch's thread count.
- Bandwidth: ``dst.copy_(src)`` of a 64 MiB buffer, far larger than the caches (one copy
  moves 2 x 64 MiB, read + write), and ``src.sum()`` of it (64 MiB read); the roof is the
  faster of the two, since a layer such as an FC at batch 1 streams its weights read-only.

Best-of rather than median: the question is what the machine can attain, and other load
only ever slows a run down. The cache lives in ``$ARCHCOST_CACHE_DIR`` or the user's cache
folder (``$XDG_CACHE_HOME/archcost`` or ``~/.cache/archcost``), one JSON file per machine
(CPU model, logical cores, threads, torch version). Everything takes about a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional

GEMM_SIZES = {"float32": 1024, "bfloat16": 512, "float16": 256}  # CPUs without fp16 units are slow at it
COPY_BYTES = 64 * 2**20
REPEATS = 5
VERSION = 2


@dataclass
class Calibration:
    machine: str  # the CPU's model and logical cores
    threads: int
    torch_version: str
    flops: Dict[str, float]  # dtype -> FLOP/s attained by the GEMM
    gemm_sizes: Dict[str, int]
    bandwidth: float  # bytes/s: the faster of the copy and the read-only sum
    copy_bandwidth: float  # bytes/s attained by the copy (read + write)
    read_bandwidth: float  # bytes/s attained by the sum (read only)
    copy_bytes: int
    measured_at: str  # UTC, ISO 8601
    seconds: float  # how long the calibration took
    version: int = VERSION
    path: str = field(default="", compare=False)  # where it is cached ('' = not cached)

    def describe(self) -> str:
        rates = ", ".join(f"{d} {f / 1e9:.1f} GFLOP/s" for d, f in self.flops.items())
        return (f"calibrated on {self.machine}, {self.threads} threads, torch {self.torch_version}, "
                f"{self.measured_at}: {rates} ({'/'.join(str(n) for n in self.gemm_sizes.values())}-square "
                f"matrix products); bandwidth {self.bandwidth / 1e9:.1f} GB/s (the faster of a "
                f"{self.copy_bytes // 2**20} MiB copy, read + write, {self.copy_bandwidth / 1e9:.1f} GB/s, and a "
                f"read-only sum of it, {self.read_bandwidth / 1e9:.1f} GB/s); best of {REPEATS} each"
                + (f"; cached in {self.path}" if self.path else ""))


def cache_dir() -> pathlib.Path:
    env = os.environ.get("ARCHCOST_CACHE_DIR")
    if env:
        return pathlib.Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "archcost"


def machine_key() -> str:
    import torch

    from archcost.devices.table import device_name

    text = f"{device_name('cpu')}|{torch.get_num_threads()}|{torch.__version__}|{VERSION}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _best_seconds(fn, repeats=REPEATS) -> float:
    fn()  # warm-up: first-touch page faults, library initialisation
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(gemm_sizes: Optional[Dict[str, int]] = None, copy_bytes: int = COPY_BYTES) -> Calibration:
    """Measure now (no cache)."""
    import datetime

    import torch

    from archcost.devices.table import device_name

    start = time.perf_counter()
    sizes = dict(gemm_sizes or GEMM_SIZES)
    flops = {}
    with torch.inference_mode():
        for dtype, n in sizes.items():
            a = torch.randn(n, n).to(getattr(torch, dtype))
            b = torch.randn(n, n).to(getattr(torch, dtype))
            out = torch.empty(n, n, dtype=a.dtype)
            flops[dtype] = 2 * n ** 3 / _best_seconds(lambda: torch.mm(a, b, out=out))
        elems = copy_bytes // 4
        src = torch.ones(elems, dtype=torch.float32)
        dst = torch.empty_like(src)
        copy_bw = 2 * elems * 4 / _best_seconds(lambda: dst.copy_(src))
        read_bw = elems * 4 / _best_seconds(lambda: src.sum())
    return Calibration(device_name("cpu"), torch.get_num_threads(), torch.__version__, flops, sizes,
                       max(copy_bw, read_bw), copy_bw, read_bw, elems * 4, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       time.perf_counter() - start)


def load(path) -> Optional[Calibration]:
    try:
        data = json.loads(pathlib.Path(path).read_text())
        if data.get("version") != VERSION:
            return None
        data["path"] = str(path)
        return Calibration(**data)
    except (OSError, ValueError, TypeError):
        return None  # missing, unreadable or from another version: measure again


def save(cal: Calibration, path) -> Calibration:
    from archcost.files import atomic_path  # an atomic write; no formatting involved

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in asdict(cal).items() if k != "path"}
    with atomic_path(path) as tmp:
        pathlib.Path(tmp).write_text(json.dumps(data, indent=1) + "\n")
    cal.path = str(path)
    return cal


def calibration(refresh: bool = False) -> Calibration:
    """This machine's calibration: from the cache, or measured now and cached (a cache
    folder that cannot be written is not an error: the result is just not kept)."""
    path = cache_dir() / f"cpu-{machine_key()}.json"
    if not refresh:
        cached = load(path)
        if cached is not None:
            return cached
    cal = measure()
    try:
        return save(cal, path)
    except OSError:
        return cal


def cpu_roof(dtype: str, cal: Calibration, launch_overhead_s: float = 0.0):
    from archcost.roofline.bounds import Roof

    if dtype not in cal.flops:
        raise ValueError(f"no calibration for {dtype} on this CPU (have {', '.join(cal.flops)})")
    return Roof(f"this CPU ({cal.machine}, {cal.threads} threads)", dtype, cal.flops[dtype], cal.bandwidth,
                "measured: " + cal.describe(), launch_overhead_s)
