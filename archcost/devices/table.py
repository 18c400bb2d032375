"""Accelerators' dense datasheet figures: peak throughput per dtype and memory bandwidth,
to put an achieved TFLOP/s in proportion and to draw a roofline for a GPU the user does
not have.

Figures are without sparsity (vendor tables often headline the 2:4-sparse figure, twice
the dense one; where a datasheet gives only that, the dense figure is half of it and the
source says so). ``float32`` is the non-tensor-core FP32 rate; ``tf32`` the tensor-core
rate for float32 inputs, which cuDNN and cuBLAS use for float32 convolutions while
``torch.backends.cudnn.allow_tf32`` is on (PyTorch's default). ``float16``/``bfloat16``
are tensor-core rates with FP32 accumulation (what PyTorch requests). Bandwidth is the
datasheet's GPU memory bandwidth in GB/s (10^9 bytes per second).
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

DTYPE_KEYS = ("float32", "tf32", "float16", "bfloat16")


@dataclass(frozen=True)
class DevicePeak:
    name: str
    tflops: Dict[str, float]  # dtype -> dense TFLOP/s (10^12 FLOP/s, FLOP = 2 per MAC)
    source: str
    key: str = ""  # the --target name, e.g. "a100-80gb"
    bandwidth_gbs: Optional[float] = None  # GB/s, 10^9 bytes per second
    bandwidth_source: str = ""
    match: Tuple[str, ...] = field(default=(), compare=False)  # regexes; all must occur in torch's name
    memory_gib: Optional[float] = None  # nominal capacity; memory chips come in powers of two: vendors' "GB" are GiB
    memory_source: str = ""

    @property
    def has_peaks(self) -> bool:
        """Whether the table stores datasheet peaks and bandwidth (a roofline can be drawn)."""
        return bool(self.tflops) and self.bandwidth_gbs is not None

    @property
    def memory_bytes(self) -> Optional[int]:
        return int(self.memory_gib * 2**30) if self.memory_gib else None

    def peak_flops(self, dtype: str) -> Optional[float]:
        """FLOP/s for ``dtype`` (a DTYPE_KEYS name), or None when the datasheet gives none."""
        t = self.tflops.get(dtype)
        return t * 1e12 if t else None

    @property
    def bandwidth_bytes_per_s(self) -> Optional[float]:
        return self.bandwidth_gbs * 1e9 if self.bandwidth_gbs else None


_H100 = "NVIDIA H100 Tensor Core GPU datasheet (2023)"
_A100 = "NVIDIA A100 Tensor Core GPU datasheet (2021, nvidia-a100-datasheet-us-nvidia-1758950-r4)"

# Matched against torch.cuda.get_device_name() in order: the first entry whose ``match``
# strings all occur wins, so the more specific names come first.
DEVICES: List[DevicePeak] = [
    DevicePeak("NVIDIA H100 PCIe", {"float32": 51.0, "tf32": 378.0, "float16": 756.5, "bfloat16": 756.5},
               f"{_H100}, H100 PCIe column; tensor figures are given with sparsity, dense = half",
               "h100-pcie", 2000.0, f"{_H100}, H100 PCIe: 2 TB/s (HBM2e)", ("H100", "PCIe"),
               memory_gib=80, memory_source=_H100 + ', H100 PCIe: 80GB HBM2e'),
    DevicePeak("NVIDIA H100 NVL", {"float32": 60.0, "tf32": 417.5, "float16": 835.5, "bfloat16": 835.5},
               f"{_H100}, H100 NVL column, dense = half the sparsity figure",
               "h100-nvl", 3900.0, f"{_H100}, H100 NVL: 3.9 TB/s per GPU (HBM3)", ("H100", "NVL"),
               memory_gib=94, memory_source=_H100 + ', H100 NVL: 94GB HBM3'),
    DevicePeak("NVIDIA H100 SXM5", {"float32": 67.0, "tf32": 494.5, "float16": 989.5, "bfloat16": 989.5},
               f"{_H100}, H100 SXM column; tensor figures are given with sparsity, dense = half",
               "h100-sxm", 3350.0, f"{_H100}, H100 SXM: 3.35 TB/s (HBM3)", ("H100",),
               memory_gib=80, memory_source=_H100 + ', H100 SXM: 80GB HBM3'),
    DevicePeak("NVIDIA H200 SXM", {"float32": 67.0, "tf32": 494.5, "float16": 989.5, "bfloat16": 989.5},
               "NVIDIA H200 Tensor Core GPU datasheet (2024), H200 SXM column, dense = half the sparsity figure",
               "h200", 4800.0, "NVIDIA H200 datasheet (2024): 4.8 TB/s (HBM3e)", ("H200",),
               memory_gib=141, memory_source='NVIDIA H200 Tensor Core GPU datasheet (2024): 141GB HBM3e'),
    DevicePeak("NVIDIA A100 80GB", {"float32": 19.5, "tf32": 156.0, "float16": 312.0, "bfloat16": 312.0},
               f"{_A100}, dense (the sparse figures are 312/624)",
               "a100-80gb", 2039.0, f"{_A100}, A100 80GB SXM: 2,039 GB/s (HBM2e; the PCIe card: 1,935 GB/s)",
               ("A100", "80GB"),
               memory_gib=80, memory_source=_A100 + ': 80GB HBM2e'),
    DevicePeak("NVIDIA A100 40GB", {"float32": 19.5, "tf32": 156.0, "float16": 312.0, "bfloat16": 312.0},
               f"{_A100}, dense (the sparse figures are 312/624)",
               "a100-40gb", 1555.0, f"{_A100}, A100 40GB: 1,555 GB/s (HBM2)", ("A100",),
               memory_gib=40, memory_source=_A100 + ': 40GB HBM2'),
    DevicePeak("NVIDIA L40S", {"float32": 91.6, "tf32": 183.0, "float16": 362.05, "bfloat16": 362.05},
               "NVIDIA L40S datasheet (2023), dense = half the sparsity figure",
               "l40s", 864.0, "NVIDIA L40S datasheet (2023): 864 GB/s (GDDR6)", ("L40S",),
               memory_gib=48, memory_source='NVIDIA L40S datasheet (2023): 48GB GDDR6'),
    DevicePeak("NVIDIA A10", {"float32": 31.2, "tf32": 62.5, "float16": 125.0, "bfloat16": 125.0},
               "NVIDIA A10 Tensor Core GPU datasheet (2021), dense",
               "a10", 600.0, "NVIDIA A10 datasheet (2021): 600 GB/s (GDDR6)", ("A10",),
               memory_gib=24, memory_source='NVIDIA A10 Tensor Core GPU datasheet (2021): 24GB GDDR6'),
    DevicePeak("NVIDIA L4", {"float32": 30.3, "tf32": 60.0, "float16": 121.0, "bfloat16": 121.0},
               "NVIDIA L4 Tensor Core GPU datasheet (2023); tensor figures are given with sparsity "
               "(TF32 120, FP16 242), dense = half",
               "l4", 300.0, "NVIDIA L4 datasheet (2023): 300 GB/s (GDDR6)", (r"\bL4\b",),
               memory_gib=24, memory_source='NVIDIA L4 Tensor Core GPU datasheet (2023): 24GB GDDR6'),
    DevicePeak("NVIDIA GeForce RTX 4090", {"float32": 82.6, "tf32": 82.6, "float16": 165.2, "bfloat16": 165.2},
               "NVIDIA Ada GPU architecture whitepaper (v2.01), Appendix A, GeForce RTX 4090: dense tensor "
               "TFLOPS with FP32 accumulate (FP16 with FP16 accumulate: 330.3)",
               "rtx-4090", 1008.0, "NVIDIA Ada whitepaper, RTX 4090: 1,008 GB/s (GDDR6X, 21 Gbps x 384 bit)",
               ("4090",),
               memory_gib=24, memory_source='NVIDIA GeForce RTX 4090 specifications: 24GB GDDR6X'),
    DevicePeak("NVIDIA V100 PCIe", {"float32": 14.0, "float16": 112.0},
               "NVIDIA Tesla V100 GPU datasheet (2020), PCIe column (FP16 = tensor performance; no TF32 or "
               "bfloat16 on Volta)",
               "v100-pcie", 900.0, "NVIDIA V100 datasheet (2020): 900 GB/s (HBM2)", ("V100", "PCIE"),
               memory_gib=32, memory_source='NVIDIA Tesla V100 GPU datasheet (2020): 32/16GB HBM2 (the 32GB model; the 16GB SXM2 card is v100-16gb)'),
    DevicePeak("NVIDIA V100 SXM2", {"float32": 15.7, "float16": 125.0},
               "NVIDIA Tesla V100 GPU datasheet (2020), SXM2 column (FP16 = tensor performance; no TF32 or "
               "bfloat16 on Volta)",
               "v100-sxm2", 900.0, "NVIDIA V100 datasheet (2020): 900 GB/s (HBM2)", ("V100",),
               memory_gib=32, memory_source='NVIDIA Tesla V100 GPU datasheet (2020): 32/16GB HBM2 (the 32GB model; the 16GB SXM2 card is v100-16gb)'),
    DevicePeak("NVIDIA T4", {"float32": 8.1, "float16": 65.0},
               "NVIDIA T4 Tensor Core GPU datasheet (2019): single precision 8.1, mixed precision "
               "(FP16/FP32) 65 TFLOPS; no TF32 or bfloat16 on Turing",
               "t4", 320.0, "NVIDIA T4 datasheet (2019): 320+ GB/s (GDDR6)", (r"\bT4\b",),
               memory_gib=16, memory_source="NVIDIA T4 Tensor Core GPU datasheet (2019): 16GB GDDR6"),
]

_V100 = "NVIDIA Tesla V100 GPU datasheet (2020)"
_GEFORCE = "NVIDIA GeForce product specifications"

# The V100's two memory sizes, with the SXM2 column's figures (fit --memory v100-16gb).
DEVICES += [
    DevicePeak("NVIDIA V100 SXM2 16GB", {"float32": 15.7, "float16": 125.0},
               f"{_V100}, SXM2 column (no TF32 or bfloat16 on Volta)", "v100-16gb", 900.0,
               f"{_V100}: 900 GB/s (HBM2)", ("V100", "16GB"), 16, f"{_V100}: 16GB HBM2"),
    DevicePeak("NVIDIA V100 SXM2 32GB", {"float32": 15.7, "float16": 125.0},
               f"{_V100}, SXM2 column (no TF32 or bfloat16 on Volta)", "v100-32gb", 900.0,
               f"{_V100}: 900 GB/s (HBM2)", ("V100", "32GB"), 32, f"{_V100}: 32GB HBM2"),
]

# Cards whose memory is stored but not their dense tensor peaks (the table holds no
# sourced figure for them yet): `fit` budgets them; `roofline` says it cannot draw them.
DEVICES += [DevicePeak(name, {}, "", key, None, "", (), gib, f"{_GEFORCE if 'GeForce' in name else src}: {mem}")
            for name, key, gib, mem, src in [
    ("NVIDIA RTX A6000", "rtx-a6000", 48, "48GB GDDR6", "NVIDIA RTX A6000 datasheet (2021)"),
    ("NVIDIA GeForce RTX 2080 Ti", "rtx2080ti", 11, "GeForce RTX 2080 Ti, 11GB GDDR6", ""),
    ("NVIDIA GeForce RTX 3060", "rtx3060", 12, "GeForce RTX 3060, 12GB GDDR6", ""),
    ("NVIDIA GeForce RTX 3080", "rtx3080", 10, "GeForce RTX 3080, 10GB GDDR6X", ""),
    ("NVIDIA GeForce RTX 3090", "rtx3090", 24, "GeForce RTX 3090, 24GB GDDR6X", ""),
    ("NVIDIA GeForce RTX 4070", "rtx4070", 12, "GeForce RTX 4070, 12GB GDDR6X", ""),
    ("NVIDIA GeForce RTX 4080", "rtx4080", 16, "GeForce RTX 4080, 16GB GDDR6X", ""),
    ("NVIDIA GeForce RTX 5090", "rtx5090", 32, "GeForce RTX 5090, 32GB GDDR7", ""),
    ("NVIDIA GeForce GTX 1080 Ti", "gtx1080ti", 11, "GeForce GTX 1080 Ti, 11GB GDDR5X", ""),
]]

# Earlier callers' view: (pattern, peak) pairs in match order.
KNOWN = [(" ".join(d.match), d) for d in DEVICES]


def find_peak(device_name: str) -> Optional[DevicePeak]:
    """The table entry for a torch device name ('NVIDIA A100-SXM4-80GB'), or None."""
    for d in DEVICES:
        if all(re.search(m, device_name, re.I) for m in d.match):
            return d
    return None


# Short names users type for the table's entries (every command takes them).
ALIASES = {"h100": "h100-sxm", "a100": "a100-80gb", "v100": "v100-sxm2", "rtx4090": "rtx-4090"}


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def by_key(key: str) -> Optional[DevicePeak]:
    """The one name resolver: the entry for a device name ('a100-80gb', as `archcost
    devices` lists it); case, '_', '-' and spaces do not matter, and the short names of
    ``ALIASES`` (h100, a100, v100, rtx4090) are taken."""
    k = _squash(key)
    k = next((_squash(v) for a, v in ALIASES.items() if _squash(a) == k), k)
    return next((d for d in DEVICES if _squash(d.key) == k), None)


def names() -> List[str]:
    """Every name the resolver takes: the table's keys, then the short aliases."""
    return [d.key for d in DEVICES] + list(ALIASES)


def peak_dtype(peak: DevicePeak, dtype: str, tf32: bool = True) -> Optional[str]:
    """Which of ``peak``'s columns bounds ``dtype`` on that GPU: float32 runs on tensor
    cores as TF32 where the GPU has them and ``tf32`` is on; else its own column. None
    when the datasheet gives no figure for it (bfloat16 on V100/T4)."""
    key = peak_key(dtype, "cuda", tf32)
    if key == "tf32" and "tf32" not in peak.tflops:
        key = "float32"
    return key if key in peak.tflops else None


def peak_key(dtype: str, device: str, cudnn_tf32: bool) -> str:
    """Which datasheet column an achieved rate compares with. float32 convolutions on a GPU
    run as TF32 on tensor cores while ``torch.backends.cudnn.allow_tf32`` is on (PyTorch's
    default,
               memory_gib=16, memory_source='NVIDIA T4 Tensor Core GPU datasheet (2019): 16GB GDDR6'), so their ceiling is the TF32 figure, not the plain FP32 one."""
    if dtype == "float32" and device == "cuda" and cudnn_tf32:
        return "tf32"
    return dtype


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: str) -> str:
    """What the device is, in words: the GPU's name, or the CPU's model and core count."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    if device == "meta":
        return "meta (shape-only tensors)"
    return f"{cpu_name()} ({os.cpu_count()} logical cores)"


def slug(device: str) -> str:
    """A file-name-safe short name: 'cpu', 'meta', or the GPU's name ('nvidia-h100-80gb-hbm3')."""
    if device != "cuda":
        return device
    name = device_name(device).lower()
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-").replace("--", "-")


def rows() -> List[dict]:
    """The table as rows (what `archcost devices` prints): peaks in TFLOP/s, bandwidth in
    GB/s, memory in bytes, the float32 ridges in FLOP/byte (empty without stored peaks): for
    convolutions (TF32 where the GPU has it: cudnn.allow_tf32 is on by default) and for
    matrix products (FP32: torch's cuda.matmul.allow_tf32 is off by default); the usable
    memory (``memory_facts.py``: the total the CUDA driver reports, or its stated fallback)
    and the compute capability."""
    from .memory_facts import FACTS

    out = []
    for d in DEVICES:
        column = peak_dtype(d, "float32") if d.has_peaks else None
        facts = FACTS.get(d.key)
        usable = facts.usable_bytes(d.memory_bytes) if facts and d.memory_bytes else (None, "", "")
        out.append({"target": d.key, "name": d.name, **{f"{k}_tflops": d.tflops.get(k) for k in DTYPE_KEYS},
                    "bandwidth_gbs": d.bandwidth_gbs, "memory_bytes": d.memory_bytes,
                    "usable_bytes": usable[0], "usable_kind": usable[1],
                    "compute_capability": "%d.%d" % facts.compute_capability if facts else None,
                    "ridge_float32_conv": d.peak_flops(column) / d.bandwidth_bytes_per_s if column else None,
                    "ridge_float32_matmul": (d.peak_flops("float32") / d.bandwidth_bytes_per_s
                                             if column and d.peak_flops("float32") else None),
                    "source": d.source, "bandwidth_source": d.bandwidth_source, "memory_source": d.memory_source,
                    "usable_source": usable[2]})
    return out
