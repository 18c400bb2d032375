"""Which arithmetic rate bounds an operator: precision as the device runs it.

A GPU runs float32 matrix products and float32 convolutions at different rates, by
PyTorch's defaults:

- ``torch.backends.cuda.matmul.allow_tf32`` is False (``torch.get_float32_matmul_precision()
  == "highest"``): ``mm``, ``addmm`` (``linear``), ``bmm``, ``matmul``, ``einsum`` run at the
  plain FP32 rate (CUDA cores), not on tensor cores;
- ``torch.backends.cudnn.allow_tf32`` is True: cuDNN runs float32 convolutions as TF32 on
  tensor cores.

(PyTorch docs, "CUDA semantics", "TensorFloat-32 (TF32) on Ampere (and later) devices".)
float16 and bfloat16 products and convolutions run on tensor cores at the dense tensor
rate. ``--tf32 on`` / ``off`` set both flags; ``torch-default`` takes the defaults above.
Attention in float32 follows the matmul flag (an assumption: the memory-efficient kernel
used for float32 does not consult it). Operators that are neither (norms with FLOPs, the
element-wise ones) are bounded at the rate of their dtype: float32 at FP32, float16/bfloat16
at the tensor rate, the highest rate the device has for them, so the bound stays a bound.

V100 and T4 have no TF32: float32 falls back to FP32 there (``DevicePeak.tflops`` has no
``tf32`` column). A CPU has one calibrated rate per dtype.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

TF32_MODES = ("torch-default", "on", "off")
# PyTorch's defaults (torch/backends/cuda/__init__.py, torch/backends/cudnn/__init__.py).
TORCH_DEFAULT_TF32 = {"matmul": False, "conv": True}

MATMUL_OPS = frozenset({"linear", "matmul", "mm", "addmm", "bmm", "baddbmm", "addbmm", "einsum", "addmv", "mv",
                        "dot", "bilinear", "scaled_dot_product_attention", "tensordot"})
CONV_PREFIXES = ("conv", "convolution", "_convolution", "cudnn_convolution", "mkldnn_convolution")


def engine_of(op: str) -> str:
    """'conv', 'matmul' or 'other': which library and flag decide the operator's rate."""
    name = op.lstrip("_")
    if name.startswith(CONV_PREFIXES) or name.startswith("conv"):
        return "conv"
    if name in MATMUL_OPS:
        return "matmul"
    return "other"


def tf32_flags(mode: str = "torch-default") -> Dict[str, bool]:
    """Whether float32 matrix products ('matmul') and convolutions ('conv') run as TF32."""
    if mode == "torch-default":
        return dict(TORCH_DEFAULT_TF32)
    if mode in ("on", "off"):
        return {"matmul": mode == "on", "conv": mode == "on"}
    raise ValueError(f"unknown --tf32 mode {mode!r}: use {', '.join(TF32_MODES)}")


def rate_column(op: str, dtype: str, columns: Mapping[str, float], tf32: str = "torch-default") -> Optional[str]:
    """The column of a device's rate table (float32, tf32, float16, bfloat16) that bounds
    ``op`` in ``dtype``; None when the table has none for it."""
    if dtype == "float32":
        kind = engine_of(op)
        if kind != "other" and tf32_flags(tf32)[kind] and "tf32" in columns:
            return "tf32"
        return "float32" if "float32" in columns else None
    return dtype if dtype in columns else None


def rates_for(columns: Mapping[str, float], dtype: str, tf32: str = "torch-default") -> Dict[str, str]:
    """engine ('conv', 'matmul', 'other') -> the column bounding it: one line per target."""
    probe = {"conv": "conv2d", "matmul": "linear", "other": "layer_norm"}
    return {k: rate_column(op, dtype, columns, tf32) for k, op in probe.items()}
