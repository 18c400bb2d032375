"""Peak dense throughput of known accelerators, from their vendors' datasheets, to put an
achieved TFLOP/s in proportion. Figures without sparsity; ``float32`` is the non-tensor-core
FP32 rate (cuDNN may still run float32 convolutions as TF32 when
``torch.backends.cudnn.allow_tf32`` is on, its default; the ``tf32`` figure is given too)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Dict, Optional


@dataclass(frozen=True)
class DevicePeak:
    name: str
    tflops: Dict[str, float]  # dtype -> dense TFLOP/s
    source: str


# Matched against torch.cuda.get_device_name() in order: the first pattern that occurs wins.
KNOWN = [
    ("H100 PCIe", DevicePeak("NVIDIA H100 PCIe", {"float32": 51.0, "tf32": 378.0, "float16": 756.5, "bfloat16": 756.5},
                             "NVIDIA H100 Tensor Core GPU datasheet (2023), H100 PCIe column, dense = half the sparsity figure")),
    ("H100 NVL", DevicePeak("NVIDIA H100 NVL", {"float32": 60.0, "tf32": 417.5, "float16": 835.5, "bfloat16": 835.5},
                            "NVIDIA H100 Tensor Core GPU datasheet (2023), H100 NVL column, dense")),
    ("H100", DevicePeak("NVIDIA H100 SXM5", {"float32": 67.0, "tf32": 494.5, "float16": 989.5, "bfloat16": 989.5},
                        "NVIDIA H100 Tensor Core GPU datasheet (2023), H100 SXM column, dense = half the sparsity figure")),
    ("H200", DevicePeak("NVIDIA H200 SXM", {"float32": 67.0, "tf32": 494.5, "float16": 989.5, "bfloat16": 989.5},
                        "NVIDIA H200 Tensor Core GPU datasheet (2024), H200 SXM column, dense")),
    ("A100", DevicePeak("NVIDIA A100", {"float32": 19.5, "tf32": 156.0, "float16": 312.0, "bfloat16": 312.0},
                        "NVIDIA A100 Tensor Core GPU datasheet (2021), dense")),
    ("L40S", DevicePeak("NVIDIA L40S", {"float32": 91.6, "tf32": 183.0, "float16": 362.05, "bfloat16": 362.05},
                        "NVIDIA L40S datasheet (2023), dense")),
    ("A10", DevicePeak("NVIDIA A10", {"float32": 31.2, "tf32": 62.5, "float16": 125.0, "bfloat16": 125.0},
                       "NVIDIA A10 Tensor Core GPU datasheet (2021), dense")),
    ("L4", DevicePeak("NVIDIA L4", {"float32": 30.3, "tf32": 60.0, "float16": 121.0, "bfloat16": 121.0},
                      "NVIDIA L4 Tensor Core GPU datasheet (2023), dense = half the sparsity figure")),
    ("V100", DevicePeak("NVIDIA V100 SXM2", {"float32": 15.7, "float16": 125.0},
                        "NVIDIA Tesla V100 GPU datasheet (2020), SXM2 column")),
    ("T4", DevicePeak("NVIDIA T4", {"float32": 8.1, "float16": 65.0},
                      "NVIDIA T4 Tensor Core GPU datasheet (2019)")),
]


def find_peak(device_name: str) -> Optional[DevicePeak]:
    for pattern, peak in KNOWN:
        if pattern in device_name:
            return peak
    return None


def peak_key(dtype: str, device: str, cudnn_tf32: bool) -> str:
    """Which datasheet column an achieved rate compares with. float32 convolutions on a GPU
    run as TF32 on tensor cores while ``torch.backends.cudnn.allow_tf32`` is on (PyTorch's
    default), so their ceiling is the TF32 figure, not the plain FP32 one."""
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
