"""What a GPU's memory really offers a PyTorch program, with sources: facts only.

Three different totals exist for one card, and the vendors' "GB" is none of them:

- ``driver_total_bytes``: what the CUDA runtime reports as total (``cudaMemGetInfo``,
  ``torch.cuda.mem_get_info()[1]``, deviceQuery's "Total amount of global memory"). This is
  what the program's allocations and the CUDA context share: the usable memory.
- ``nvml_total_bytes``: what NVML / ``nvidia-smi`` reports as total. It is larger than the
  driver's total on every card where both are known (T4: 15,360 vs 15,110 MiB; A100 40GB:
  40,960 vs 40,441 MiB; H200: 143,771 vs 143,072 MiB; ...), so where only it is known it is an
  upper bound of the usable memory, 250-762 MiB too high on the nine cards below with both.
- the nominal size of the datasheet (``table.py``'s ``memory_gib``).

Where a figure could not be sourced it is ``None`` (unknown), never guessed;
``usable_bytes`` then falls back, and says so.

The CUDA context (the driver's own memory, loaded kernels, cuBLAS/cuDNN libraries' device
code) takes memory outside PyTorch's allocator. It depends on the CUDA version, the
libraries loaded and the GPU; see ``CONTEXT``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

MiB = 1 << 20

_MODAL = ("Modal, 'Why does an NVIDIA H100 80GB card offer 85.52 GB?' "
          "(thundergolfer.com/blog/nvidia-gpu-memory-capacity): total reported by NVML (nvidia-smi)")
_CC = "NVIDIA, CUDA GPUs compute capability table (developer.nvidia.com/cuda-gpus)"  # compute_capability


@dataclass(frozen=True)
class MemoryFacts:
    key: str  # the device's key in the one device table (table.py)
    compute_capability: Tuple[int, int]
    driver_total_bytes: Optional[int] = None  # cudaMemGetInfo's total; None: unknown
    driver_total_source: str = ""
    nvml_total_bytes: Optional[int] = None  # nvidia-smi's total; None: unknown
    nvml_total_source: str = ""

    def usable_bytes(self, nominal_bytes: int) -> Tuple[int, str, str]:
        """(bytes, how sure, note): the driver's total when known (exact for that card and
        driver); else NVML's total (an upper bound); else the nominal size (an upper bound)."""
        if self.driver_total_bytes is not None:
            return (self.driver_total_bytes, "exact",
                    f"total reported by the CUDA driver ({self.driver_total_source}); exact for that driver, other "
                    "drivers report up to ~100 MiB more or less")
        if self.nvml_total_bytes is not None:
            return (self.nvml_total_bytes, "upper bound",
                    f"the CUDA driver's total is unknown for {self.key}; NVML's total ({self.nvml_total_source}) "
                    "is used, which was 250-762 MiB above the driver's on the nine cards where both are known")
        return (nominal_bytes, "upper bound",
                f"no reported total is known for {self.key}; the nominal size is used, which is above what "
                "the driver reports (T4: 16 GiB nominal, 14.76 GiB reported)")


def _dq(repo: str, commit: str, path: str, card: str, driver: str, line: str) -> str:
    """A deviceQuery capture in a public repository: where, on which card and driver, what it says."""
    return (f"deviceQuery on {card}, CUDA driver {driver}: 'Total amount of global memory: {line}' "
            f"(github.com/{repo}/blob/{commit}/{path})")


_NVSMI = "thamada/nvidia-smi"  # captured deviceQuery outputs of real machines, one file per card
_NVSMI_GLS = "b09ef139265ffc7e3c78006346981de8e4d70499"
_GLS = "thamada/gls"

FACTS: Dict[str, MemoryFacts] = {f.key: f for f in [
    MemoryFacts("t4", (7, 5), 15_843_721_216,
                "deviceQuery on a Tesla T4, CUDA 11.0 driver: 'Total amount of global memory: 15110 MBytes "
                "(15843721216 bytes)' (chiemon.github.io/2024/12/25, NVIDIA 显卡信息)",
                15_360 * MiB, _MODAL),
    MemoryFacts("a100-40gb", (8, 0), 42_405_855_232,
                "deviceQuery on an A100 40GB: 'Total amount of global memory: 40441 MBytes (42405855232 bytes)' "
                "(Paderborn PC2 documentation, 'NVIDIA A100 40GB with NVLINK')",
                40_960 * MiB, _MODAL),
    MemoryFacts("a100-80gb", (8, 0), 85_100_068_864,
                _dq(_NVSMI, _NVSMI_GLS, "gls/A100SXMx4_deviceQuery.py", "NVIDIA A100-SXM4-80GB", "12.5",
                    "81158 MBytes (85100068864 bytes)") + "; the PCIe card may differ",
                81_920 * MiB, _MODAL),
    MemoryFacts("h100-sxm", (9, 0), 85_045_477_376,
                _dq(_NVSMI, "03fbe6e68c0bb4c28b72d5da786a9712a33cf408", "nvsim/H100SXMx8_deviceQuery.py",
                    "NVIDIA H100 80GB HBM3", "12.7", "81106 MBytes (85045477376 bytes)"),
                81_559 * MiB, _MODAL + " (its 'H100 80 GB'; the same figure is taken for the SXM card only)"),
    MemoryFacts("h100-pcie", (9, 0)),
    MemoryFacts("h100-nvl", (9, 0), 99_861_594_112,
                _dq(_NVSMI, _NVSMI_GLS, "gls/H100NVLx2_deviceQuery.py", "NVIDIA H100 NVL", "12.4",
                    "95235 MBytes (99861594112 bytes)")),
    MemoryFacts("h200", (9, 0), 150_021_734_400,
                _dq(_GLS, "c0bed08d0e20bb1abccfee5aeedb80bc63b493a6", "gls/H200_deviceQuery.py", "NVIDIA H200",
                    "12.4", "143072 MBytes (150021734400 bytes)"),
                143_771 * MiB, _MODAL),
    MemoryFacts("v100-16gb", (7, 0), 16_928_342_016,
                _dq(_GLS, "5b0ef6cbf13815ba81660ecae60f8b29ca38a86d", "gls/V100_x8_deviceQuery.py",
                    "Tesla V100-SXM2-16GB", "12.4", "16144 MBytes (16928342016 bytes)")),
    MemoryFacts("v100-32gb", (7, 0)),
    MemoryFacts("v100-pcie", (7, 0)),
    MemoryFacts("v100-sxm2", (7, 0)),
    MemoryFacts("l4", (8, 9), 23_570_219_008,
                _dq(_NVSMI, _NVSMI_GLS, "gls/L4_deviceQuery.py", "NVIDIA L4", "12.4",
                    "22478 MBytes (23570219008 bytes)"),
                23_034 * MiB, _MODAL),
    MemoryFacts("a10", (8, 6), 23_595_909_120,
                _dq(_GLS, "b99e2ecde923177a3f6635c678a7fd3796517cde", "gls/A10_deviceQuery.py", "NVIDIA A10", "12.4",
                    "22503 MBytes (23595909120 bytes)"),
                23_028 * MiB, _MODAL),
    MemoryFacts("l40s", (8, 9), 47_803_596_800,
                _dq(_NVSMI, "c768aedc1e0bf705fc91b08e8d9403bf53760365", "nvsim/L40S_deviceQuery.py", "NVIDIA L40S",
                    "12.4", "45589 MBytes (47803596800 bytes)"),
                46_068 * MiB, _MODAL),
    MemoryFacts("rtx-a6000", (8, 6), 47_834_660_864,
                _dq(_GLS, "ecc9fb580a9542c249e51fec30eba202cef7eba3", "gls/RTX_A6000_x9_deviceQuery.py",
                    "NVIDIA RTX A6000", "12.4", "45619 MBytes (47834660864 bytes)")),
    MemoryFacts("rtx2080ti", (7, 5)),
    MemoryFacts("rtx3060", (8, 6)),
    MemoryFacts("rtx3080", (8, 6), 10_485_956_608,
                _dq(_GLS, "0aa17a6491a0dbb77cf21651c43876cd8bf6cc3f", "gls/RTX3080_deviceQuery.py",
                    "NVIDIA GeForce RTX 3080", "12.4", "10000 MBytes (10485956608 bytes)")),
    MemoryFacts("rtx3090", (8, 6), 25_327_697_920,
                _dq(_NVSMI, _NVSMI_GLS, "gls/RTX3090_deviceQuery.py", "NVIDIA GeForce RTX 3090", "12.6",
                    "24154 MBytes (25327697920 bytes)"),
                24_576 * MiB, "nvidia-smi on an RTX 3090, driver 580.142: '15005MiB /  24576MiB' "
                "(github.com/noonghunna/club-3090/issues/390)"),
    MemoryFacts("rtx4070", (8, 9)),
    MemoryFacts("rtx4080", (8, 9)),
    MemoryFacts("rtx-4090", (8, 9), 25_386_352_640,
                _dq(_NVSMI, _NVSMI_GLS, "gls/RTX4090_deviceQuery.py", "NVIDIA GeForce RTX 4090", "12.4",
                    "24210 MBytes (25386352640 bytes)")),
    MemoryFacts("rtx5090", (12, 0), 33_680_457_728,
                _dq(_GLS, "5d64b880942758ed4de2b107422a3f31bb609fac", "gls/RTX5090_deviceQuery.py",
                    "NVIDIA GeForce RTX 5090", "12.8", "32120 MBytes (33680457728 bytes)")),
    MemoryFacts("gtx1080ti", (6, 1)),
]}
# The driver's total is exact for the card and driver it was read on; other drivers report a
# little more or less (the ECC and driver reservations change): A100 40GB 40,441 MiB above,
# 40,339 MiB under driver 12.2 (deviceQuery in bottlerocket-os/bottlerocket PR #3873); H100
# 80GB HBM3 81,106 MiB above, 81,082, 81,089 and 81,090 MiB in torch.cuda.get_device_properties
# printouts under other drivers (public notes and logs found by text search, torch 2.0-2.7); V100-SXM2-16GB 16,128,
# 16,144 and 16,160 MiB under CUDA 11.0, 12.4 and 9.0. So a sourced total carries up to
# DRIVER_SPREAD_BYTES of error on another machine.
DRIVER_SPREAD_BYTES = 102 * MiB
COMPUTE_CAPABILITY_SOURCE = _CC


@dataclass(frozen=True)
class ContextEstimate:
    bytes: int
    low_bytes: int
    high_bytes: int
    how: str


# The CUDA context: an estimate, not a fact about one card. Measured figures, each with its
# source (nvidia-smi or cudaMemGetInfo, after the first CUDA work, before any tensor of size):
#   287,047,680 bytes with CUDA_MODULE_LOADING=LAZY (PyTorch's default since 1.13, CUDA >= 11.7),
#   666,632,192 bytes without (pytorch/pytorch PR #86509, a 6.4 MB tensor included);
#   "~300 MB" and "around 400 MB" with lazy loading, ">1000 MB" before CUDA 11.7
#   (ptrblck, pytorch/pytorch issues #107667 and #109888);
#   426 MiB on an RTX 6000 Ada, PyTorch 2.10 + CUDA 13.0 (unslothai/unsloth-zoo PR #1053).
# cuDNN and cuBLAS load more device code at their first call (lazily), so a network that
# uses them holds more than the bare context; no source gives that per library.
CONTEXT = ContextEstimate(
    bytes=450 * MiB, low_bytes=280 * MiB, high_bytes=1024 * MiB,
    how=("estimated: the middle of the measured contexts with lazy module loading (287 MB, ~300 MB, ~400 MB, "
         "426 MiB; pytorch/pytorch #86509, #107667, #109888; unsloth-zoo #1053) plus room for cuDNN/cuBLAS "
         "device code loaded on first use; 280 MiB to 1 GiB (without lazy loading: 666 MB to over 1 GB)"))


def facts(key: str) -> Optional[MemoryFacts]:
    return FACTS.get(key)


# cuBLAS workspace per (handle, stream), allocated through PyTorch's caching allocator on a
# handle's first use (aten/src/ATen/cuda/CublasHandlePool.cpp, parseChosenWorkspaceSize):
# ":4096:2:16:8" (2 x 4096 KiB + 8 x 16 KiB) by default; 4096 KiB x 8 = 32 MiB on Hopper
# (compute capability 9.0; later sources extend it to 10.x and 12.x). CUBLAS_WORKSPACE_CONFIG
# overrides it. The autograd engine runs a CUDA backward on its own thread, which takes its
# own handle: a training step holds two.
CUBLAS_WORKSPACE_DEFAULT_BYTES = 4096 * 1024 * 2 + 16 * 1024 * 8  # 8,519,680: before Hopper
CUBLAS_WORKSPACE_HOPPER_BYTES = 4096 * 8 * 1024  # 33,554,432: compute capability 9.0 and later
CUBLAS_WORKSPACE_SOURCE = ("pytorch/pytorch aten/src/ATen/cuda/CublasHandlePool.cpp, parseChosenWorkspaceSize: "
                           "':4096:2:16:8 default, 32MiB for Hopper'")


def cublas_workspace_bytes(cc: Tuple[int, int]) -> int:
    return CUBLAS_WORKSPACE_HOPPER_BYTES if cc >= (9, 0) else CUBLAS_WORKSPACE_DEFAULT_BYTES
