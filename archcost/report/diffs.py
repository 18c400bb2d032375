"""Text, markdown, CSV and strict JSON for ``archcost diff`` and ``archcost check``'s
drift. Text and markdown use human units (deltas exact, with thousands separators);
CSV and JSON carry raw integers, and a missing value is empty (CSV) or null (JSON)."""

from __future__ import annotations

import io
import json

import pandas as pd

from .tables import markdown_cell, printable
from .units import si

MARKS = {"added": "+", "removed": "-", "changed": "~", "same": " ", "": " "}


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def _plain(v):
    if _missing(v):
        return None
    if hasattr(v, "item"):
        v = v.item()
    return v


def records(frame: pd.DataFrame) -> list:
    return [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]


def to_json(frame: pd.DataFrame) -> str:
    return json.dumps(records(frame), indent=1, allow_nan=False) + "\n"


def to_csv(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue()


def exact(v, sign=False) -> str:
    if _missing(v):
        return "-"
    return f"{int(v):+,}" if sign else f"{int(v):,}"


def count(v) -> str:
    return "-" if _missing(v) else si(v)


def nbytes(v, sign=False) -> str:
    """Bytes in the largest unit that keeps the value >= 1 (B, KiB, MiB, GiB)."""
    if _missing(v):
        return "-"
    v = int(v)
    s = "+" if sign and v > 0 else "-" if v < 0 else ""
    a = abs(v)
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if a >= scale:
            return f"{s}{a / scale:.1f} {unit}"
    return f"{s}{a} B" if a else "0"


def _table(header, rows, fmt) -> str:
    if fmt == "markdown":
        out = ["| " + " | ".join(header) + " |", "|" + "|".join(":---" if i < 2 else "---:" for i in range(len(header))) + "|"]
        out += ["| " + " | ".join(markdown_cell(c) for c in r) + " |" for r in rows]
        return "\n".join(out)
    rows = [[printable(c) for c in r] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    just = lambda i, x: str(x).ljust(widths[i]) if i < 2 else str(x).rjust(widths[i])  # noqa: E731
    return "\n".join("  ".join(just(i, x) for i, x in enumerate(r)).rstrip() for r in [header] + rows)


# --- check --------------------------------------------------------------------------------

def drift_lines(drift: pd.DataFrame) -> list:
    """'model  layer: +1,024 params, +3,211,264 MACs' for every changed layer."""
    out = []
    layers = drift[drift["layer"] != "(total)"]
    status = layers["status"] if "status" in layers else pd.Series("changed", index=layers.index)
    for (model, layer, kind, st), g in layers.assign(status=status).groupby(["model", "layer", "type", "status"],
                                                                            sort=False):
        parts = [f"{exact(r.delta, sign=True)} {'params' if r.column == 'params' else 'MACs'}"
                 for r in g.itertuples()]
        out.append(printable(f"  {model}  {layer}" + (f" ({st})" if st != "changed" else "") + ": " + ", ".join(parts)
                             + (f"  ({kind})" if kind else "")))
    return out


def drift_report(drift: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return to_csv(drift)
    if fmt == "json":
        return to_json(drift)
    if not len(drift):
        return ""
    totals = drift[drift["layer"] == "(total)"]
    rows = [[r.model, r.column, exact(r.baseline), exact(r.now), exact(r.delta, sign=True)]
            for r in totals.itertuples()]
    text = _table(["model", "column", "baseline", "now", "delta"], rows, fmt)
    lines = drift_lines(drift)
    if lines:
        head = "layers that changed (baseline's layer rows against now):"
        text += ("\n\n**" + head + "**\n\n" + "\n".join("- " + markdown_cell(ln.strip()) for ln in lines)) \
            if fmt == "markdown" \
            else "\n\n" + head + "\n" + "\n".join(lines)
    elif fmt == "text":
        text += ("\n\n(the baseline stores no layer rows; `archcost check --update --layers` adds them, "
                 "so a drift names the layers that changed)")
    return text + "\n"


# --- diff ---------------------------------------------------------------------------------

def diff_report(frame: pd.DataFrame, fmt: str, name_a: str, name_b: str, show_all=False, notes=()) -> str:
    """``frame`` from ``analysis.diff.diff``; text/markdown show the rows that differ
    (every row with ``show_all``) and the totals."""
    shown = frame if show_all else frame[(frame["status"] != "same") | (frame["layer"] == "(total)")]
    if fmt == "csv":
        return to_csv(shown)
    if fmt == "json":
        return to_json(shown)
    mem = [q for q in ("activation_bytes", "saved_bytes") if shown[f"{q}_delta"].notna().any()]
    header = ["layer", "type", "params A", "params B", "delta params", "MACs A", "MACs B", "delta MACs"] + [
        {"activation_bytes": "delta act. mem", "saved_bytes": "delta saved"}[q] for q in mem]
    rows = []
    for r in shown.to_dict("records"):
        is_total = r["layer"] == "(total)"
        name = r["layer"] if is_total else f"{MARKS[r['status']]} {r['layer']}"
        if r["matched_by"] == "order" and r["layer_b"] != r["layer"]:
            name += f" -> {r['layer_b']}"
        rows.append([name, r["type"], count(r["params_a"]), count(r["params_b"]), exact(r["params_delta"], True),
                     count(r["macs_a"]), count(r["macs_b"]), exact(r["macs_delta"], True)]
                    + [nbytes(r[f"{q}_delta"], True) for q in mem])
    if len(rows) > 1 and fmt == "text":  # a rule above the totals
        rows.insert(len(rows) - 1, ["-" * 5] + [""] * (len(header) - 1))
    text = (f"A = {printable(name_a)}, B = {printable(name_b)}\n\n" if fmt == "text"
            else f"**A = {markdown_cell(name_a)}, B = {markdown_cell(name_b)}**\n\n")
    text += _table(header, rows, fmt)
    layer_rows = frame[frame["layer"] != "(total)"]
    counts = layer_rows["status"].value_counts()
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("changed", "added", "removed", "same"))
    legend = [f"rows: {summary}" + ("" if show_all else " (same rows not shown; --all shows them)"),
              "marks: + only in B (added), - only in A (removed), ~ changed; delta = B - A",
              "rows aligned by module name; 'a -> b' rows were paired by execution order (names differ)",
              "params: parameters; MACs: multiply-adds, one fused multiply-add = 1; act. mem: bytes of the "
              "layer's output; saved: bytes a training step keeps for backward (KiB/MiB = 2^10/2^20)",
              "(total) comes from each whole model (a shared weight once), not from summing rows"]
    legend += [n for n in notes if n]
    if fmt == "markdown":
        return text + "\n\n" + "\n".join(f"- {x}" for x in legend) + "\n"
    return text + "\n\n" + "\n".join(legend) + "\n"
