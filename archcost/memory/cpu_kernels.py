"""The CPU's own kernels on meta tensors, where meta would run another one.

On meta, ``F.scaled_dot_product_attention`` runs its math decomposition (the full attention
matrix and its softmax, saved for backward): meta's backend choice
(``_fused_sdp_choice_meta``) answers "math" for every device but CUDA. On the CPU PyTorch
picks flash attention (``_scaled_dot_product_flash_attention_for_cpu``: the output and a
float32 log-sum-exp per query, no attention matrix) whenever its conditions hold
(``sdp_utils_cpp.cpp``: no dropout, 4-d inputs, equal head sizes, a mask of a usable
shape, ...). A meta pass standing for the CPU that keeps the matrix is high: ViT-B/16's
training step by 22 MB a sample (12 layers x 12 heads x 197^2 floats), and ``fit`` then
answers a batch too small.

``CpuKernels`` asks the CPU's own choice function (``torch._fused_sdp_choice`` on CPU
stand-ins of the same shapes, strides, dtypes and ``requires_grad``, made outside the
memory passes) and, where it answers flash, runs that kernel on meta (its meta function
allocates what the CPU kernel returns). A boolean mask is turned into a float one first,
as the CPU's ``scaled_dot_product_attention`` does (``convert_boolean_attn_mask``). The
kernel's own scratch is measured like every kernel's (``scratch.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

from .device_events import _SDPA, DeviceKernels

_aten = torch.ops.aten
FLASH = int(SDPBackend.FLASH_ATTENTION.value)


def cpu_sdpa_choice(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False) -> int:
    """The backend the CPU would pick for these inputs (``SDPBackend`` as an int), asked of
    PyTorch itself on uninitialised CPU stand-ins, outside every mode (they are not the
    pass's memory)."""
    from torch.utils._python_dispatch import _disable_current_modes

    with _disable_current_modes(), torch._C.DisableTorchFunction():
        def stand_in(t):
            if t is None:
                return None
            s = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cpu")
            return s.requires_grad_(t.requires_grad) if s.is_floating_point() else s

        return int(torch._fused_sdp_choice(stand_in(q), stand_in(k), stand_in(v), stand_in(attn_mask), dropout_p,
                                           is_causal, scale=scale, enable_gqa=enable_gqa))


class CpuKernels(DeviceKernels):
    """Runs on meta tensors the attention kernel the CPU would run (see the module)."""

    def __init__(self):
        super().__init__((0, 0))

    def _sdpa(self, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if q.device.type == "meta" and cpu_sdpa_choice(q, k, v, attn_mask, dropout_p, is_causal, scale,
                                                       enable_gqa) == FLASH:
            self.notes["sdpa"] = ("scaled_dot_product_attention: the CPU's flash-attention kernel (output and "
                                  "log-sum-exp), as the CPU runs it, not meta's math decomposition")
            if attn_mask is not None and attn_mask.dtype == torch.bool:
                attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(
                    attn_mask.logical_not(), float("-inf"))
            return _aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal,
                                                                      attn_mask=attn_mask, scale=scale)[0]
        return _SDPA(q, k, v, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)

    def _dropout(self, input, p=0.5, training=True, inplace=False):
        return F.dropout(input, p, training, inplace)  # the CPU, like meta, multiplies by a float noise tensor
