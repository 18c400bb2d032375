"""Frames to text / markdown / CSV / JSON. Text and markdown use human units and a
legend stating each column's convention; CSV and JSON carry raw integers."""

import pandas as pd

from .clean import to_csv, to_json
from .spread import SPREAD_LIMIT, spread_cell
from .units import human_bytes as mib, si

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
    "activation_bytes": ("act. mem", mib, "activations x bytes per element (B, KiB, MiB, GiB: powers of 1024)"),
    "param_bytes": ("weights", mib, "parameter memory"),
    "saved_bytes": ("saved", mib, "activation memory a training step keeps for backward"),
    "peak_bytes": ("peak", mib, "peak memory of an inference forward, beyond weights and input: live tensors and "
                   "the scratch of the kernel running then"),
    "peak_scratch_bytes": ("scratch", mib, "kernel scratch in the inference peak: what the operator running at it "
                           "allocated and freed inside itself, measured on this CPU"),
    "scratch_at_peak": ("scratch", mib, "what the operator running at the peak allocated and freed inside itself "
                        "(oneDNN reorders, im2col, convolution_backward's buffers), measured on this CPU"),
    "train_bytes": ("train", mib, "weights and buffers + grads + optimizer state + saved activations"),
    "backward_macs": ("bwd MACs", si, "multiply-adds of the gradients autograd computes in one backward "
                      "(input gradients skipped where none is needed, frozen weights get none)"),
    "train_macs": ("train MACs", si, "MACs + bwd MACs: one training step's forward and backward"),
    "recompute_macs": ("recompute", si, "MACs the checkpointed segments' forward costs again in backward (measured)"),
    "train_latency_ms": ("step time", lambda v: f"{v:.2f} ms", "median time of one training step: zero_grad, "
                         "forward, loss, backward, optimizer step (ms)"),
    "train_images_per_s": ("train img/s", lambda v: f"{v:.1f}", "batch size / median step time"),
    "trainable_params": ("trainable", si, "parameters that get a gradient (requires_grad, after --freeze)"),
    "train_peak_bytes": ("train peak", mib, "most memory alive during one training step: weights, buffers, "
                         "grads, optimizer state, activations, temporaries and the running kernel's scratch, "
                         "input excluded"),
    "train_peak_phase": ("at", str, "phase of the step where the train peak occurs (forward, backward, step)"),
    "batch": ("batch", lambda v: str(int(v)), "largest batch that fits (0: not even batch 1)"),
    "needed_bytes": ("needed", mib, "memory at that batch: peak of the step (or forward) + input batch"),
    "headroom_bytes": ("headroom", mib, "budget - needed (negative: over the budget at batch 1)"),
    "weight_bytes": ("weights", mib, "parameters and buffers"),
    "optimizer_state_bytes": ("opt. state", mib, "optimizer state: momentum / Adam moments"),
    "gradients_at_peak": ("grads", mib, "parameter gradients alive at the peak"),
    "activations_at_peak": ("activations", mib, "forward tensors alive at the peak: saved for backward, output"),
    "transient_at_peak": ("transient", mib, "backward's activation gradients and the step's temporaries alive at the peak"),
    "input_bytes": ("input", mib, "the input batch"),
    "peak_phase": ("at", str, "phase of the peak: forward, backward or (optimizer) step"),
    "peak_bytes_allocator": ("peak (alloc.)", mib, "the CUDA caching allocator's max_memory_allocated "
                             "during the forward, beyond what was allocated before"),
    "latency_ms": ("latency", lambda v: f"{v:.2f} ms", "median time of one forward of the batch (ms)"),
    "latency_p20_ms": ("p20", lambda v: f"{v:.2f}", "20th percentile of the forward time (ms)"),
    "latency_p80_ms": ("p80", lambda v: f"{v:.2f}", "80th percentile of the forward time (ms)"),
    "latency_spread": ("p80/p20", spread_cell, f"spread of the forward times; '!' above {SPREAD_LIMIT}: "
                       "unreliable median"),
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
    "shared_params": ("shared", si, "parameters this row shares with a module outside it (tied weights): "
                      "in both rows' params, once in the total"),
    "aliased": ("reused", lambda v: "yes" if v else "", "output is an earlier tensor (in-place op, view, or a "
                "container passing on its child's output): not added to the total"),
}

from .roofline_columns import ROOFLINE_COLUMNS  # noqa: E402  (roofline columns kept in their own file)

COLUMNS.update({k: v for k, v in ROOFLINE_COLUMNS.items() if k not in COLUMNS})
from .ledger_columns import LEDGER_COLUMNS  # noqa: E402  (the device ledger's, likewise)

COLUMNS.update({k: v for k, v in LEDGER_COLUMNS.items() if k not in COLUMNS})

from .decode import DECODE_COLUMNS  # noqa: E402  (the --decode columns)

COLUMNS.update({k: v for k, v in DECODE_COLUMNS.items() if k not in COLUMNS})


def _fmt(col, v):
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return "-"
    spec = COLUMNS.get(col)
    return spec[1](v) if spec else str(v)


def human_frame(frame: pd.DataFrame, columns):
    cols = [c for c in columns if c in frame.columns]
    out = pd.DataFrame({COLUMNS.get(c, (c,))[0]: [printable(_fmt(c, v)) for v in frame[c]] for c in cols})
    return out, cols


def printable(text) -> str:
    """A cell for a terminal: line breaks and tabs become spaces, other control characters
    (escape sequences, bells, carriage returns) are dropped."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(" " if ch in "\n\t\v\f" else ch for ch in text if ch.isprintable() or ch in "\n\t\v\f")


def markdown_cell(text) -> str:
    """A cell for a markdown table: ``|`` escaped, HTML shown as text, one line."""
    import html

    return html.escape(printable(text), quote=False).replace("|", "\\|")


def legend(cols) -> str:
    lines = [f"  {COLUMNS[c][0]}: {COLUMNS[c][2]}" for c in cols if c in COLUMNS and COLUMNS[c][2]]
    return "\n".join(lines)


def render(frame: pd.DataFrame, fmt: str, columns=None, title: str = "", notes=()) -> str:
    """Render a frame. ``columns`` chooses the human view's columns (text/markdown)."""
    if fmt == "csv":
        return to_csv(frame)
    if fmt == "json":
        return to_json(frame)
    human, cols = human_frame(frame, columns or list(frame.columns))
    if fmt == "markdown":
        header = "| " + " | ".join(markdown_cell(c) for c in human.columns) + " |"
        sep = "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(human.columns))) + "|"
        rows = ["| " + " | ".join(markdown_cell(v) for v in r) + " |" for r in human.itertuples(index=False)]
        text = "\n".join(([f"**{markdown_cell(title)}**", ""] if title else []) + [header, sep] + rows)
        leg = legend(cols)
        return text + ("\n\n" + leg.replace("  ", "- ", 1).replace("\n  ", "\n- ") if leg else "") + "\n"
    width = terminal_width()
    text = text_table(human, width)
    notes = [_fill(printable(n), width) for n in notes if n]
    parts = ([printable(title)] if title else []) + [text, "", "columns:", _fill(legend(cols), width, "    ")] + notes
    return "\n".join(parts) + "\n"


MIN_WRAP = 12  # a text column is never wrapped narrower than this


def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else 120 (output to a file or pipe)."""
    import shutil

    return max(40, shutil.get_terminal_size((120, 24)).columns)


def _fill(text: str, width: int, indent: str = "  ") -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width, subsequent_indent=indent if line.startswith("  ") else indent[:2],
                                    break_on_hyphens=False) if len(line) > width else line
                     for line in text.split("\n"))


def text_table(human: pd.DataFrame, width: int) -> str:
    """Right-aligned columns, as pandas prints them; when the table is wider than
    ``width``, the widest text columns (notes, explanations) wrap onto more lines,
    left-aligned. Numbers never wrap."""
    import textwrap

    cols = list(human.columns)
    cells = [[str(v) for v in human[c]] for c in cols]
    widths = [max([len(str(c))] + [len(v) for v in vals]) for c, vals in zip(cols, cells)]
    wrap = {}
    excess = sum(widths) + len(cols) - 1 - width
    textual = sorted((i for i, vals in enumerate(cells) if widths[i] > MIN_WRAP and
                      any(" " in v for v in vals)), key=lambda i: -widths[i])
    while excess > 0:  # narrow the widest text column, one character at a time
        i = max(textual, key=lambda j: wrap.get(j, widths[j]), default=None)
        if i is None or wrap.get(i, widths[i]) <= MIN_WRAP:
            break
        wrap[i] = wrap.get(i, widths[i]) - 1
        excess -= 1
    lines = [" ".join((str(c).ljust if i in wrap else str(c).rjust)(wrap.get(i, widths[i])) for i, c in enumerate(cols))]
    for r in range(len(human)):
        parts = [textwrap.wrap(cells[i][r], wrap[i], break_on_hyphens=False) or [""] if i in wrap else [cells[i][r]]
                 for i in range(len(cols))]
        for k in range(max(len(p) for p in parts)):
            lines.append(" ".join(((p[k] if k < len(p) else "").ljust(wrap[i]) if i in wrap
                                   else (p[k] if k < len(p) else "").rjust(widths[i])) for i, p in enumerate(parts)))
    return "\n".join(line.rstrip() for line in lines)
