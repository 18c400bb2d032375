"""Frames to text / markdown / CSV / JSON. Text and markdown use human units and a
legend stating each column's convention; CSV and JSON carry raw integers."""

import io
import json

import pandas as pd

from .units import mib, si

FORMATS = ("text", "csv", "json", "markdown")

# column -> (title, formatter, convention shown in the legend)
COLUMNS = {
    "model": ("model", str, None),
    "column": ("column", str, None),
    "baseline": ("baseline", str, None),
    "now": ("now", str, None),
    "delta": ("delta", lambda v: f"{v:+d}", None),
    "layer": ("layer", str, None),
    "type": ("type", str, None),
    "family": ("family", str, None),
    "input_shape": ("input", str, "NxCxHxW"),
    "output_shape": ("output", str, "NxCxHxW"),
    "params": ("params", si, "parameters (K/M = 10^3/10^6)"),
    "macs": ("MACs", si, "multiply-adds, one fused multiply-add = 1 (fvcore's 'flops')"),
    "flops": ("FLOPs", si, "2 x MACs"),
    "activations": ("activations", si, "elements of the forward outputs of leaf modules, each storage once"),
    "activation_bytes": ("act. mem", mib, "activations x bytes per element (MiB = 2^20 bytes)"),
    "param_bytes": ("weights", mib, "parameter memory (MiB)"),
    "saved_bytes": ("saved", mib, "activation memory a training step keeps for backward (MiB)"),
    "peak_bytes": ("peak", mib, "peak live tensor memory of an inference forward, beyond weights and input (MiB)"),
    "train_bytes": ("train", mib, "weights and buffers + grads + optimizer state + saved activations (MiB)"),
    "backward_macs": ("bwd MACs", si, "multiply-adds of the gradients autograd computes in one backward "
                      "(input gradients skipped where none is needed, frozen weights get none)"),
    "train_macs": ("train MACs", si, "MACs + bwd MACs: one training step's forward and backward"),
    "recompute_macs": ("recompute", si, "MACs the checkpointed segments' forward costs again in backward (measured)"),
    "train_latency_ms": ("step time", lambda v: f"{v:.2f} ms", "median time of one training step: zero_grad, "
                         "forward, loss, backward, optimizer step (ms)"),
    "train_images_per_s": ("train img/s", lambda v: f"{v:.1f}", "batch size / median step time"),
    "trainable_params": ("trainable", si, "parameters that get a gradient (requires_grad, after --freeze)"),
    "train_peak_bytes": ("train peak", mib, "most tensor memory alive during one training step: weights, buffers, "
                         "grads, optimizer state, activations and temporaries, input excluded (MiB)"),
    "train_peak_phase": ("at", str, "phase of the step where the train peak occurs (forward, backward, step)"),
    "batch": ("batch", lambda v: str(int(v)), "largest batch that fits (0: not even batch 1)"),
    "needed_bytes": ("needed", mib, "memory at that batch: peak of the step (or forward) + input batch (MiB)"),
    "headroom_bytes": ("headroom", mib, "budget - needed (MiB; negative: over the budget at batch 1)"),
    "weight_bytes": ("weights", mib, "parameters and buffers (MiB)"),
    "optimizer_state_bytes": ("opt. state", mib, "optimizer state: momentum / Adam moments (MiB)"),
    "gradients_at_peak": ("grads", mib, "parameter gradients alive at the peak (MiB)"),
    "activations_at_peak": ("activations", mib, "forward tensors alive at the peak: saved for backward, output (MiB)"),
    "transient_at_peak": ("transient", mib, "backward's activation gradients and the step's temporaries alive at the peak (MiB)"),
    "input_bytes": ("input", mib, "the input batch (MiB)"),
    "peak_phase": ("at", str, "phase of the peak: forward, backward or (optimizer) step"),
    "peak_bytes_allocator": ("peak (alloc.)", mib, "the CUDA caching allocator's max_memory_allocated "
                             "during the forward, beyond what was allocated before (MiB)"),
    "latency_ms": ("latency", lambda v: f"{v:.2f} ms", "median time of one forward of the batch (ms)"),
    "latency_p20_ms": ("p20", lambda v: f"{v:.2f}", "20th percentile of the forward time (ms)"),
    "latency_p80_ms": ("p80", lambda v: f"{v:.2f}", "80th percentile of the forward time (ms)"),
    "images_per_s": ("img/s", lambda v: f"{v:.1f}", "batch size / median latency"),
    "achieved_tflops": ("TFLOP/s", lambda v: f"{v:.3f}", "FLOPs (2 x MACs) / median latency, 10^12 per second"),
    "peak_fraction": ("of peak", lambda v: f"{v:.1%}", "achieved TFLOP/s / the device's datasheet peak for the dtype"),
    "batch_size": ("batch", str, None),
    "experiment": ("experiment", str, None),
    "variant": ("variant", str, None),
    "note": ("note", str, None),
    "ratio_params": ("params ratio", lambda v: f"{v:.3f}", "params / the experiment's first variant's (gap-vs-fc's VGG16 row: share of the model)"),
    "ratio_macs": ("MACs ratio", lambda v: f"{v:.3f}", "MACs / the experiment's first variant's"),
    "source": ("source", str, None),
    "claim": ("claim", str, None),
    "claimed": ("claimed", lambda v: f"{int(v):,}" if float(v).is_integer() else f"{v:.3g}", None),
    "measured": ("measured", lambda v: f"{int(v):,}" if float(v).is_integer() else f"{v:.3g}", "archcost's measurement"),
    "relative_error": ("error", lambda v: f"{v:+.1%}", "(measured - claimed) / claimed"),
    "verdict": ("verdict", str, "holds: within the claim's rounding (exact counts: 0%; 'about' figures: 5%)"),
    "explanation": ("explanation", str, None),
    "quantity": ("quantity", str, None),
    "archcost": ("archcost", lambda v: f"{v:,}", "bytes, archcost's dispatch-level tracker / saved-tensor hooks"),
    "independent": ("independent", lambda v: f"{v:,}", "bytes, measured by the mechanism named in 'by'"),
    "by": ("by", str, None),
    "relative_difference": ("diff", lambda v: f"{v:+.2%}", "(archcost - independent) / independent"),
    "why": ("why", str, None),
    "aliased": ("reused", lambda v: "yes" if v else "", "output is an earlier tensor (in-place op, view, or a "
                "container passing on its child's output): not added to the total"),
}

from .roofline_columns import ROOFLINE_COLUMNS  # noqa: E402  (roofline columns kept in their own file)

COLUMNS.update({k: v for k, v in ROOFLINE_COLUMNS.items() if k not in COLUMNS})


def _fmt(col, v):
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    spec = COLUMNS.get(col)
    return spec[1](v) if spec else str(v)


def human_frame(frame: pd.DataFrame, columns):
    cols = [c for c in columns if c in frame.columns]
    out = pd.DataFrame({COLUMNS.get(c, (c,))[0]: [_fmt(c, v) for v in frame[c]] for c in cols})
    return out, cols


def legend(cols) -> str:
    lines = [f"  {COLUMNS[c][0]}: {COLUMNS[c][2]}" for c in cols if c in COLUMNS and COLUMNS[c][2]]
    return "\n".join(lines)


def render(frame: pd.DataFrame, fmt: str, columns=None, title: str = "", notes=()) -> str:
    """Render a frame. ``columns`` chooses the human view's columns (text/markdown)."""
    if fmt == "csv":
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        return buf.getvalue()
    if fmt == "json":
        return json.dumps(frame.to_dict(orient="records"), indent=1, default=_json_default) + "\n"
    human, cols = human_frame(frame, columns or list(frame.columns))
    if fmt == "markdown":
        header = "| " + " | ".join(human.columns) + " |"
        sep = "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(human.columns))) + "|"
        rows = ["| " + " | ".join(str(v) for v in r) + " |" for r in human.itertuples(index=False)]
        text = "\n".join(([f"**{title}**", ""] if title else []) + [header, sep] + rows)
        leg = legend(cols)
        return text + ("\n\n" + leg.replace("  ", "- ", 1).replace("\n  ", "\n- ") if leg else "") + "\n"
    text = human.to_string(index=False, justify="right")
    parts = ([title] if title else []) + [text, "", "columns:", legend(cols)] + [n for n in notes if n]
    return "\n".join(parts) + "\n"


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    return str(o)
