"""Bytes of the attention kernel the device runs, not of meta's decomposition.

On meta tensors ``F.scaled_dot_product_attention`` runs its math decomposition: it writes
the L x S score matrix, reads it back for the softmax, writes the probabilities and reads
them for the product with V. The kernels eager PyTorch dispatches to on the roofline's
targets never materialise it: FlashAttention (CUDA, sm80+, float16/bfloat16), the
memory-efficient kernel (CUDA, float32 and older GPUs) and the CPU's flash kernel
(``_scaled_dot_product_flash_attention_for_cpu``). Their traffic, with each operand
crossing DRAM once (the rest of the roofline's convention):

- forward (FlashAttention-2, Dao 2023, Algorithm 1): read Q, K, V (and a mask tensor when
  given); write O and one float32 log-sum-exp per row (B x H x L x 4 bytes), kept for the
  backward;
- backward (Algorithm 2, with its pre-processing step): read Q, K, V, O, dO and the
  log-sum-exp; D = rowsum(dO * O) is written (float32 per row) and read back; write dQ, dK,
  dV.

The re-reads of K and V once per block of queries (the paper's Theta(N^2 d^2 / M) term)
are not counted, as the roofline counts no re-reads inside any kernel. MACs stay as counted
(Q K^T plus P V: ``ops.attention_macs``).

Other places where meta's decomposition and the device's kernel move different bytes
(found by counting the same layers on meta and on real CPU tensors,
``tests/test_attention_bytes.py``): ``nn.MultiheadAttention`` with ``need_weights=False``
and ``nn.TransformerEncoderLayer`` (they call the fused SDPA kernel on a device, the
decomposition on meta), the recurrent layers (``nn.LSTM``/``GRU``/``RNN``: one fused kernel on
a device, per-step operators on meta) and eval-mode batch norm (meta also writes the two
per-channel statistics; 2 x C x 4 bytes). Only ``F.scaled_dot_product_attention`` calls are
rewritten here; the others keep their decomposition's bytes, and the roofline says so in
its notes (``engine.DEVICE_PATHS`` names them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import List, Sequence, Tuple

import torch
from torch.overrides import TorchFunctionMode

ATTENTION = "scaled_dot_product_attention"
ROW_STAT_BYTES = 4  # the log-sum-exp (and the backward's D) are float32 whatever the dtype


@dataclass(frozen=True)
class AttentionCall:
    """The shapes of one SDPA call: (..., L, E) queries, (..., S, E) keys, (..., S, Ev) values."""

    q_shape: Tuple[int, ...]
    k_shape: Tuple[int, ...]
    v_shape: Tuple[int, ...]
    element_bytes: int
    mask_bytes: int = 0

    @property
    def rows(self) -> int:
        """B x H x L: one log-sum-exp per query row."""
        return math.prod(self.q_shape[:-1])

    @property
    def out_shape(self) -> Tuple[int, ...]:
        return tuple(self.q_shape[:-1]) + (self.v_shape[-1],)

    def macs(self) -> int:
        """Q K^T plus P V (``ops.attention_macs``): B*H*L*S*E + B*H*L*S*Ev."""
        from archcost.analysis.ops import attention_macs  # the one rule, where the engine keeps it

        return int(attention_macs(self.q_shape, self.k_shape, self.v_shape))


def _numel(shape) -> int:
    return math.prod(shape)


def forward_bytes(call: AttentionCall) -> Tuple[int, int]:
    """(read, written) of a fused SDPA forward: Q, K, V (and the mask) in; O and the
    float32 log-sum-exp per row out."""
    e = call.element_bytes
    read = (_numel(call.q_shape) + _numel(call.k_shape) + _numel(call.v_shape)) * e + call.mask_bytes
    written = _numel(call.out_shape) * e + call.rows * ROW_STAT_BYTES
    return read, written


def backward_bytes(call: AttentionCall) -> Tuple[int, int]:
    """(read, written) of a fused SDPA backward: Q, K, V, O, dO and the log-sum-exp in,
    D = rowsum(dO * O) written and read back, dQ, dK, dV out."""
    e = call.element_bytes
    q, k, v, o = (_numel(s) for s in (call.q_shape, call.k_shape, call.v_shape, call.out_shape))
    stats = call.rows * ROW_STAT_BYTES
    read = (q + k + v + 2 * o) * e + stats + stats + call.mask_bytes  # ..., log-sum-exp, D
    written = (q + k + v) * e + stats  # dQ, dK, dV, D
    return read, written


class AttentionCalls(TorchFunctionMode):
    """Records the shapes of every ``F.scaled_dot_product_attention`` call, in order.
    Enter it around the counting pass (outside it): the calls it sees are the ones the
    counting engine names ``scaled_dot_product_attention`` as a whole."""

    def __init__(self):
        super().__init__()
        self.calls: List[AttentionCall] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") == ATTENTION and len(args) >= 3:
            q, k, v = args[:3]
            mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
            mask_bytes = mask.numel() * mask.element_size() if isinstance(mask, torch.Tensor) else 0
            self.calls.append(AttentionCall(tuple(q.shape), tuple(k.shape), tuple(v.shape), q.element_size(),
                                            mask_bytes))
        return func(*args, **kwargs)


def groups(ops: Sequence) -> List[Tuple[int, int]]:
    """[start, end) spans of the records of one SDPA call: consecutive records named
    ``scaled_dot_product_attention`` in one module, closed by the one that carries the
    call's MACs (the engine puts a whole-call rule's MACs on its last operator)."""
    spans, start = [], None
    for i, o in enumerate(ops):
        if o.op != ATTENTION or (start is not None and ops[start].module != o.module):
            start = None
            if o.op != ATTENTION:
                continue
        if start is None:
            start = i
        if o.macs:
            spans.append((start, i + 1))
            start = None
    return spans


def fuse(ops: Sequence, calls: Sequence[AttentionCall]) -> Tuple[list, int]:
    """``ops`` with each SDPA call's records replaced by one record of the fused kernel's
    bytes (same module, same MACs). A span is paired with the next recorded call whose MACs
    it carries; spans without one (attention products relabelled inside
    ``nn.MultiheadAttention``'s math path) are left as they are. -> (records, calls fused)."""
    out, done, pending, last = [], 0, list(calls), 0
    for start, end in groups(ops):
        span = ops[start:end]
        macs = sum(int(o.macs) for o in span)
        match = next((i for i, c in enumerate(pending[:1]) if c.macs() == macs), None)
        if match is None:
            continue
        call = pending.pop(match)
        read, written = forward_bytes(call)
        out.extend(ops[last:start])
        out.append(replace(span[-1], macs=macs, bytes_read=read, bytes_written=written, inplace=False))
        last, done = end, done + 1
    out.extend(ops[last:])
    return out, done

