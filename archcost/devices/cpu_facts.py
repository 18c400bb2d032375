"""This CPU's hardware peak from its own facts: cores, vector width, FMA units, clock.

    peak FLOP/s = cores x FMA units per core x (vector bits / element bits) x 2 x clock

(one fused multiply-add is 2 FLOPs). Each fact says where it came from, because on a
virtual machine some are not visible (``/proc/cpuinfo`` may name the CPU only "Intel(R)
Xeon(R) Processor" and show no frequency scaling): the clock is then the nominal one the
kernel reports (``cpu MHz``, the TSC rate), which turbo can exceed, so the peak is a
*modelled* figure, not a measured one, and it can be off by the turbo ratio (typically up to
1.5x low). The calibrated roof (``archcost.roofline.calibrate``) is what a matrix product
attains; a well-tuned kernel (oneDNN's convolutions) can exceed that but not this peak.

FMA units per core: the count of 512-bit (or 256-bit) FMA pipes, from the vendors'
optimisation manuals: Intel server cores with AVX-512 (Skylake-SP Gold/Platinum, Ice Lake-SP,
Sapphire/Emerald Rapids) have two 512-bit FMA units (Intel 64 and IA-32 Architectures
Optimization Reference Manual, ch. 2, "Sapphire Rapids"/"Skylake Server" execution units);
AMD Zen 4 executes AVX-512 on two 256-bit FMA pipes (AMD Software Optimization Guide for
Family 19h, 2.11: 512-bit ops are "double-pumped"), which is one 512-bit FMA per cycle
counted as 2 x 256 bits here; Zen 2/3 and Intel client cores with AVX2: two 256-bit FMA units.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

ELEMENT_BITS = {"float32": 32, "float64": 64, "bfloat16": 16, "float16": 16}


@dataclass(frozen=True)
class CpuFacts:
    model: str
    cores: int  # usable by this process (sched_getaffinity), one thread each
    vector_bits: int  # widest FMA-capable vector: 512 (avx512f), 256 (avx2+fma), 128 (sse)
    fma_units: int  # FMA pipes of that width per core
    clock_hz: float
    sources: Dict[str, str]  # fact -> where it came from
    l2_bytes: int = 0  # one core's L2 cache (0 = not stated)

    def flops_per_cycle(self, dtype: str = "float32") -> int:
        """FLOP per cycle per core for ``dtype``: FMA units x lanes x 2 (multiply and add)."""
        return self.fma_units * (self.vector_bits // ELEMENT_BITS[dtype]) * 2

    def peak_flops(self, dtype: str = "float32", threads: Optional[int] = None) -> Optional[float]:
        """The modelled peak FLOP/s of the usable cores (or of ``threads`` of them, one
        thread per core) for ``dtype``. Only float32 and
        float64 have a plain FMA path on every x86 CPU; bfloat16/float16 peaks depend on
        AMX/AVX512-FP16 units this model does not describe, so they are None."""
        if dtype not in ("float32", "float64"):
            return None
        cores = min(self.cores, threads) if threads else self.cores
        return cores * self.flops_per_cycle(dtype) * self.clock_hz

    def describe(self, dtype: str = "float32", threads: Optional[int] = None) -> str:
        peak = self.peak_flops(dtype, threads)
        cores = min(self.cores, threads) if threads else self.cores
        what = f"{peak / 1e9:.1f} GFLOP/s" if peak else "no modelled peak"
        return (f"{what} = {cores} cores x {self.fma_units} FMA units x {self.vector_bits}-bit vectors "
                f"({self.vector_bits // ELEMENT_BITS.get(dtype, 32)} {dtype} lanes) x 2 FLOP x "
                f"{self.clock_hz / 1e9:.2f} GHz (clock: {self.sources.get('clock', '?')}; FMA units: "
                f"{self.sources.get('fma_units', '?')})")


def _cpuinfo(text: str) -> Dict[str, str]:
    """The first processor's fields of /proc/cpuinfo."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip(), v.strip())
    return out


def vector_width(flags: set) -> Tuple[int, str]:
    if "avx512f" in flags:
        return 512, "cpuinfo flag avx512f"
    if "avx2" in flags and "fma" in flags:
        return 256, "cpuinfo flags avx2, fma"
    if "avx" in flags:
        return 256, "cpuinfo flag avx (no FMA: counted as one FMA-equivalent pipe)"
    return 128, "no AVX flag: SSE"


def fma_units(vendor: str, family: int, model_name: str, vector_bits: int) -> Tuple[int, str]:
    """FMA pipes of ``vector_bits`` width per core (see the module docstring for sources)."""
    if vector_bits == 512 and vendor == "AuthenticAMD":
        # Zen 4: AVX-512 double-pumped on two 256-bit pipes = one 512-bit FMA per cycle.
        return 1, "AMD Zen 4: AVX-512 on two 256-bit FMA pipes (one 512-bit FMA per cycle)"
    if vector_bits == 512:
        if re.search(r"Bronze|Silver", model_name):
            return 1, "Xeon Bronze/Silver: one 512-bit FMA unit (Intel optimization manual)"
        return 2, "Intel server core with AVX-512: two 512-bit FMA units (Intel optimization manual)"
    if vector_bits == 256:
        return 2, "two 256-bit FMA units (Haswell and later, Zen 2/3)"
    return 2, "two 128-bit SSE pipes (assumed)"


def clock_hz(info: Dict[str, str], sys_root: str = "/sys") -> Tuple[float, str]:
    """The highest clock the OS states: cpufreq's maximum, else '@ x.yGHz' in the model
    name, else cpuinfo's 'cpu MHz' (on a VM the nominal TSC rate; turbo can be higher)."""
    path = os.path.join(sys_root, "devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        with open(path) as f:
            return float(f.read().strip()) * 1e3, f"{path} (maximum, kHz)"
    except (OSError, ValueError):
        pass
    m = re.search(r"@\s*([0-9.]+)\s*GHz", info.get("model name", ""))
    if m:
        return float(m.group(1)) * 1e9, "the base clock in the model name (turbo can be higher)"
    try:
        return float(info["cpu MHz"]) * 1e6, "cpuinfo 'cpu MHz' (nominal; turbo can be higher)"
    except (KeyError, ValueError):
        return 2.0e9, "not stated by the OS: 2.0 GHz assumed"


def l2_bytes(sys_root: str = "/sys") -> int:
    """One core's level-2 cache from sysfs ('2048K'), 0 when not stated."""
    base = os.path.join(sys_root, "devices/system/cpu/cpu0/cache")
    try:
        for idx in sorted(os.listdir(base)):
            with open(os.path.join(base, idx, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(base, idx, "size")) as f:
                text = f.read().strip().upper()
            scale = {"K": 2**10, "M": 2**20}.get(text[-1:], 1)
            return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return 0


def read_facts(cpuinfo_text: Optional[str] = None, cores: Optional[int] = None, sys_root: str = "/sys") -> CpuFacts:
    """This CPU's facts (``cpuinfo_text``/``cores`` given: those, for tests)."""
    if cpuinfo_text is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo_text = f.read()
        except OSError:
            cpuinfo_text = ""
    info = _cpuinfo(cpuinfo_text)
    flags = set(info.get("flags", "").split())
    bits, bits_src = vector_width(flags)
    try:
        family = int(info.get("cpu family", "0"))
    except ValueError:
        family = 0
    units, units_src = fma_units(info.get("vendor_id", ""), family, info.get("model name", ""), bits)
    hz, hz_src = clock_hz(info, sys_root)
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        cores_src = "os.sched_getaffinity (logical CPUs usable by this process)"
    else:
        cores_src = "given"
    if "ht" in flags and info.get("siblings") and info.get("cpu cores") and info["siblings"] != info["cpu cores"]:
        cores_src += "; hyper-threads share their core's FMA units, so this may count a core twice"
    return CpuFacts(info.get("model name", "cpu"), int(cores), bits, units, hz,
                    {"cores": cores_src, "vector_bits": bits_src, "fma_units": units_src, "clock": hz_src},
                    l2_bytes(sys_root))
