"""Titles, conventions and notes of the decode-cost columns (``--decode``; merged into
tables.COLUMNS), and which of them the text view shows."""

from .roofline_columns import _ms
from .units import mib, si


DECODE_COLUMNS = {
    "phase": ("phase", str, "prefill: the forward of N tokens into an empty cache; decode: one new token with "
              "N cached"),
    "context": ("N", lambda v: str(int(v)), "tokens in the KV cache (after the prefill, before the decode step)"),
    "new_tokens": ("tokens", lambda v: str(int(v)), "tokens per sequence the forward processes"),
    "attention_macs": ("attn MACs", si, "MACs of the attention products, Q K^T and attention x V"),
    "weight_bytes_read": ("weights read", mib, "weights the forward reads, each once (a looked-up embedding "
                          "table: its rows)"),
    "kv_cache_bytes": ("KV cache", mib, "keys and values of the N cached tokens, every layer"),
    "kv_read_bytes": ("KV read", mib, "cache read: all of it for a decode step, none for a prefill"),
    "kv_written_bytes": ("KV written", mib, "keys and values stored: the new token's, or the N tokens' of a prefill"),
    "step_bound_ms": ("bound", _ms, "max(FLOPs / peak, bytes moved / bandwidth): the least time the forward can "
                      "take on the target, activations kept on chip (ms)"),
    "bound_per_token_ms": ("bound/token", _ms, "bound / (batch x tokens) (ms)"),
    "unfused_bytes_moved": ("eager moved", mib, "bytes of the unfused eager run: every ATen operator's operands "
                            "and outputs once (the cache concatenated anew, attention decomposed)"),
    "unfused_bound_ms": ("eager bound", _ms, "the eager run's roofline bound, summed over its modules (ms)"),
}

VIEW = ["model", "phase", "context", "macs", "attention_macs", "weight_bytes_read", "kv_cache_bytes",
        "bytes_moved", "arithmetic_intensity", "step_bound_ms", "bound", "bound_per_token_ms", "unfused_bound_ms"]


def decode_notes(tgt, frame) -> list:
    """The target, the bytes model, and the conditions of a decode run."""
    r = tgt.roof
    rows = frame[frame["phase"].notna()] if "phase" in frame else frame
    first = rows.iloc[0] if len(rows) else None
    notes = [f"target: {tgt.note}",
             f"roof: {r.peak_flops / 1e12:.4g} TFLOP/s ({r.dtype}), {r.bandwidth / 1e9:.4g} GB/s, ridge "
             f"{r.ridge:.3g} FLOP/byte",
             "counted on meta tensors by archcost's engine: the prefill of N tokens fills a Hugging Face "
             "DynamicCache, the decode step runs one token against it; the prefill's logits for its last token "
             "only (as generate does); attention over the whole N x N square (causal masking not subtracted).",
             "bytes (floor): every weight read once per forward, the cache read once by a decode step, the new "
             "keys and values written once; activations between operators kept on chip (a fused decoder). "
             "eager: the per-operator bytes of `archcost roofline` over the same forward."]
    if first is not None:
        notes.append(f"batch {int(first['batch_size'])}, {first['dtype']}.")
    stopped = frame[frame["phase"].isna()] if "phase" in frame else frame.iloc[0:0]
    notes += [f"{r['model']}: no rows from context {int(r['context'])} on: {r['note']}" for _, r in stopped.iterrows()]
    return notes


def decode_title(frame) -> str:
    rows = frame[frame["phase"].notna()]
    if not len(rows):
        return "Cost of a generated token"
    r = rows.iloc[0]
    return (f"Cost of a generated token against context ({r['target']}, {r['dtype']}, batch {int(r['batch_size'])}, "
            f"N {int(rows['context'].min())} to {int(rows['context'].max())})")
