"""Memory budgets: '16GiB', '16GB', '80G', or a known accelerator's memory by name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict

GIB = 2**30


@dataclass(frozen=True)
class DeviceMemory:
    name: str
    gib: float  # nominal capacity; memory chips come in powers of two, so the vendors' "GB" are GiB
    source: str


# Nominal capacities. What a program can allocate is less: ECC reservation, the CUDA
# context (a few hundred MiB) and the caching allocator's rounding come off it, so a fit
# with little headroom may still fail: pass an explicit budget below the card's size.
DEVICES: Dict[str, DeviceMemory] = {d.name: d for d in [
    DeviceMemory("a100-40gb", 40, "NVIDIA A100 Tensor Core GPU datasheet (2021): 40GB HBM2"),
    DeviceMemory("a100-80gb", 80, "NVIDIA A100 Tensor Core GPU datasheet (2021): 80GB HBM2e"),
    DeviceMemory("a100", 80, "NVIDIA A100 Tensor Core GPU datasheet (2021): 80GB HBM2e (the larger model)"),
    DeviceMemory("h100", 80, "NVIDIA H100 Tensor Core GPU datasheet (2023): H100 SXM and PCIe, 80GB"),
    DeviceMemory("h100-nvl", 94, "NVIDIA H100 Tensor Core GPU datasheet (2023): H100 NVL, 94GB"),
    DeviceMemory("h200", 141, "NVIDIA H200 Tensor Core GPU datasheet (2024): 141GB HBM3e"),
    DeviceMemory("v100-16gb", 16, "NVIDIA Tesla V100 GPU datasheet (2020): 16GB HBM2"),
    DeviceMemory("v100-32gb", 32, "NVIDIA Tesla V100 GPU datasheet (2020): 32GB HBM2"),
    DeviceMemory("t4", 16, "NVIDIA T4 Tensor Core GPU datasheet (2019): 16GB GDDR6"),
    DeviceMemory("l4", 24, "NVIDIA L4 Tensor Core GPU datasheet (2023): 24GB GDDR6"),
    DeviceMemory("a10", 24, "NVIDIA A10 Tensor Core GPU datasheet (2021): 24GB GDDR6"),
    DeviceMemory("l40s", 48, "NVIDIA L40S datasheet (2023): 48GB GDDR6"),
    DeviceMemory("rtx-a6000", 48, "NVIDIA RTX A6000 datasheet (2021): 48GB GDDR6"),
    DeviceMemory("rtx2080ti", 11, "NVIDIA GeForce RTX 2080 Ti specifications: 11GB GDDR6"),
    DeviceMemory("rtx3060", 12, "NVIDIA GeForce RTX 3060 family specifications: 12GB GDDR6"),
    DeviceMemory("rtx3080", 10, "NVIDIA GeForce RTX 3080 family specifications: 10GB GDDR6X"),
    DeviceMemory("rtx3090", 24, "NVIDIA GeForce RTX 3090 family specifications: 24GB GDDR6X"),
    DeviceMemory("rtx4070", 12, "NVIDIA GeForce RTX 4070 family specifications: 12GB GDDR6X"),
    DeviceMemory("rtx4080", 16, "NVIDIA GeForce RTX 4080 family specifications: 16GB GDDR6X"),
    DeviceMemory("rtx4090", 24, "NVIDIA GeForce RTX 4090 specifications: 24GB GDDR6X"),
    DeviceMemory("rtx5090", 32, "NVIDIA GeForce RTX 5090 specifications: 32GB GDDR7"),
    DeviceMemory("gtx1080ti", 11, "NVIDIA GeForce GTX 1080 Ti specifications: 11GB GDDR5X"),
]}

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,  # bare K/M/G/T: binary, as Slurm's --mem
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "b": 1}
_AMOUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$", re.I)


def parse_memory(text: str) -> int:
    """'16GiB' -> 16 * 2**30; '16GB' -> 16 * 10**9; '80G' -> 80 * 2**30 (a bare K/M/G/T is
    binary, as in Slurm and coreutils); 'rtx4090' -> its nominal memory. Raises ValueError
    with what would work."""
    key = text.strip().lower()
    squashed = {re.sub(r"[^a-z0-9]", "", k): d for k, d in DEVICES.items()}
    device = DEVICES.get(key) or squashed.get(re.sub(r"[^a-z0-9]", "", key))  # rtx-4090 = rtx4090
    if device is not None:
        return int(device.gib * GIB)
    m = _AMOUNT.match(key)
    hint = ("give a size (16GiB, 16GB, 80G, 512MiB; a bare number is bytes) or a device name: "
            + ", ".join(DEVICES))
    if text.strip().startswith("-"):
        raise ValueError(f"memory budget {text!r} is negative; {hint}")
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"memory budget {text!r} is not understood; {hint}")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise ValueError(f"memory budget {text!r} is zero; {hint}")
    return value


def describe(text: str) -> str:
    """Where a budget came from, for the notes: the device and its datasheet, or the amount."""
    d = DEVICES.get(text.strip().lower())
    return f"{d.name}: {d.gib:g} GiB nominal ({d.source})" if d else text.strip()
