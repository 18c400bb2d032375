"""The roofline of generating tokens: a decode step at context N against the prefill of N
tokens, on a target's roof.

Each forward counted by ``archcost.count.decode`` becomes one row, bounded by the roofline
code every model uses (``bounds.bound_layer``): ``flops`` = 2 x MACs,
``arithmetic_intensity`` = flops / ``bytes_moved``, ``step_bound_ms`` = the larger of
flops / peak and bytes / bandwidth, and ``bound`` names it; ``bound_per_token_ms`` divides it
by the tokens the forward processes (batch x new tokens). Bytes are the floor of
``count.decode`` (weights once, the KV cache read once, the new keys and values written
once; activations kept on chip), so ``step_bound_ms`` is the least time a fused decoder
could take on the target's datasheet rates. Beside it, ``unfused_*`` bound the eager run as
``archcost roofline`` bounds any model, per module from the engine's per-operator bytes
(the cache concatenated anew each step, attention in its math decomposition, embedding
tables read whole): how far an unfused implementation sits above the floor.

Decode at batch 1 reads every weight and the whole cache for one token: one MAC (2 FLOPs) per
weight read, so its intensity is at most about 1 FLOP/byte in bfloat16 (0.5 in float32), two
orders of magnitude below a GPU's ridge, so it is memory-bound; a prefill reuses each weight over N
tokens and turns compute-bound.
"""

from __future__ import annotations

from archcost.count.decode import TokenCost
from archcost.roofline import bounds

COLUMNS = ["model", "phase", "context", "batch_size", "new_tokens", "dtype", "macs", "attention_macs", "flops",
           "weight_bytes_read", "kv_cache_bytes", "kv_read_bytes", "kv_written_bytes", "bytes_moved",
           "arithmetic_intensity", "target", "peak_dtype", "ridge_flop_per_byte", "time_compute_ms",
           "time_memory_ms", "step_bound_ms", "bound", "bound_per_token_ms", "unfused_bytes_moved",
           "unfused_bound_ms"]


def bound_cost(cost: TokenCost, roof: bounds.Roof) -> dict:
    """One forward's row: its counts and its bound on ``roof`` (floor bytes), with the
    unfused eager run's bytes and bound beside them."""
    row = bounds.bound_layer({"macs": cost.macs, "bytes_read": cost.bytes_read,
                              "bytes_written": cost.bytes_written, "kernels": 0}, roof)
    eager = bounds.bound_layers(bounds.aggregate(cost.ops), roof)
    tokens = cost.batch_size * cost.new_tokens
    return {"phase": cost.phase, "context": cost.context, "batch_size": cost.batch_size,
            "new_tokens": cost.new_tokens, "macs": cost.macs, "attention_macs": cost.attention_macs,
            "flops": row["flops"], "weight_bytes_read": cost.weight_bytes_read, "kv_cache_bytes": cost.kv_cache_bytes,
            "kv_read_bytes": cost.kv_read_bytes, "kv_written_bytes": cost.kv_written_bytes,
            "bytes_moved": cost.bytes_read + cost.bytes_written,
            "arithmetic_intensity": row["arithmetic_intensity"], "target": roof.device, "peak_dtype": roof.dtype,
            "ridge_flop_per_byte": roof.ridge, "time_compute_ms": row["time_compute_ms"],
            "time_memory_ms": row["time_memory_ms"], "step_bound_ms": row["time_bound_ms"], "bound": row["bound"],
            "bound_per_token_ms": row["time_bound_ms"] / tokens,
            "unfused_bytes_moved": sum(r["bytes_read"] + r["bytes_written"] for r in eager),
            "unfused_bound_ms": sum(r["time_bound_ms"] for r in eager)}
