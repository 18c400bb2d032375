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
per-channel statistics; 2 x C x 4 bytes). ``F.scaled_dot_product_attention`` calls and the
attention of ``F.multi_head_attention_forward`` without weights are rewritten here (the
latter's head reshapes stay as meta counts them: two more copies than the CPU's fast path);
the recurrent layers and batch norm's statistics keep their decomposition's bytes
(``engine.DEVICE_PATHS`` names the operators whose kernel differs by device).
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
    fused: bool = True  # False: the device also runs the math path (need_weights=True returns the weights)

    @property
    def rows(self) -> int:
        """B x H x L: one log-sum-exp per query row."""
        return math.prod(self.q_shape[:-1])

    @property
    def out_shape(self) -> Tuple[int, ...]:
        return tuple(self.q_shape[:-1]) + (self.v_shape[-1],)

    def macs(self) -> int:
        """Q K^T plus P V (``ops.attention_macs``): B*H*L*S*E + B*H*L*S*Ev."""
        from archcost.count.rules import attention_macs  # the one rule, where the engine keeps it

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


MHA = "multi_head_attention_forward"


def _mha_call(args, kwargs) -> AttentionCall:
    """The attention inside ``F.multi_head_attention_forward``: (L, N, E) queries and (S, N, E)
    keys/values (or unbatched), ``num_heads`` heads of E / heads."""
    q, k = args[0], args[1]
    heads = int(args[4] if len(args) > 4 else kwargs["num_heads"])
    need = kwargs.get("need_weights", args[15] if len(args) > 15 else True)
    L, S, E = q.shape[0], k.shape[0], q.shape[-1]
    n = q.shape[1] if q.dim() == 3 else 1
    mask = kwargs.get("attn_mask")
    mask_bytes = mask.numel() * mask.element_size() if isinstance(mask, torch.Tensor) else 0
    return AttentionCall((n, heads, L, E // heads), (n, heads, S, E // heads), (n, heads, S, E // heads),
                         q.element_size(), mask_bytes, fused=not need)


class AttentionCalls(TorchFunctionMode):
    """Records the shapes of every ``F.scaled_dot_product_attention`` call and of every
    ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``),
    in order. Enter it around the counting pass (outside it): the calls it sees are the
    top-level ones the counting engine names as a whole."""

    def __init__(self):
        super().__init__()
        self.calls: List[AttentionCall] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == MHA and len(args) >= 3:
            try:
                self.calls.append(_mha_call(args, kwargs))
            except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError):
                pass  # an unusual call: its bytes stay as counted
        if name == ATTENTION and len(args) >= 3:
            q, k, v = args[:3]
            mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
            mask_bytes = mask.numel() * mask.element_size() if isinstance(mask, torch.Tensor) else 0
            self.calls.append(AttentionCall(tuple(q.shape), tuple(k.shape), tuple(v.shape), q.element_size(),
                                            mask_bytes))
        return func(*args, **kwargs)


def _span(ops: Sequence, start: int, macs: int):
    """[first, end) of the records carrying one call's attention MACs, searching from
    ``start``: from the first record named ``scaled_dot_product_attention`` through the one
    where the MACs add up, all in one module and named for attention or its
    ``multi_head_attention_forward`` (the softmax between the two products). None if absent."""
    first = next((i for i in range(start, len(ops)) if ops[i].op == ATTENTION), None)
    if first is None:
        return None
    total = 0
    for i in range(first, len(ops)):
        o = ops[i]
        if o.module != ops[first].module or o.op not in (ATTENTION, MHA):
            return None
        total += int(o.macs)
        if total == macs and o.op == ATTENTION:
            return first, i + 1
        if total > macs:
            return None
    return None


def fuse(ops: Sequence, calls: Sequence[AttentionCall]) -> Tuple[list, int]:
    """``ops`` with each fused attention call's records (``_span``) replaced by one record of
    the fused kernel's bytes (same module, same MACs). A call whose records are not found as
    expected, and a ``need_weights=True`` one (math path on the device too), keeps them.
    -> (records, calls fused)."""
    out, done, pos = [], 0, 0
    for call in calls:
        span = _span(ops, pos, call.macs())
        if span is None:
            continue
        first, end = span
        if call.fused:
            read, written = forward_bytes(call)
            out.extend(ops[pos:first])
            macs = sum(int(o.macs) for o in ops[first:end])
            out.append(replace(ops[end - 1], macs=macs, bytes_read=read, bytes_written=written, inplace=False))
            done += 1
        else:
            out.extend(ops[pos:end])
        pos = end
    out.extend(ops[pos:])
    return out, done
