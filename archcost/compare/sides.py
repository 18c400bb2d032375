"""The two sides of ``archcost diff``: a model analysed now, or a baseline CSV's row
(``path/baseline.csv:MODEL``) with the layer rows stored there."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from archcost.analysis.analyze import analyze
from archcost.compare.check import BaselineError, layer_rows, model_rows, read_baseline, stored_ref


@dataclass
class Side:
    label: str
    layers: Optional[pd.DataFrame]  # rows partitioning the model, or None (totals only)
    summary: dict
    note: str = ""


def _split(ref: str):
    """'dir/base.csv:MODEL' -> ('dir/base.csv', 'MODEL'); MODEL may hold ':' itself
    (a file.py:builder row). None when ``ref`` names no CSV."""
    m = re.match(r"^(.+?\.csv):(.+)$", str(ref), re.I)
    return (m.group(1), m.group(2)) if m else None


def is_baseline_ref(ref: str) -> bool:
    return _split(ref) is not None


def baseline_side(ref: str) -> Side:
    path, model = _split(ref)
    frame = read_baseline(path)
    tops = model_rows(frame)
    row = tops[tops["model"] == model]
    if not len(row):  # a model file named from here: the baseline stores it relative to its folder
        model = stored_ref(model, os.path.dirname(os.path.abspath(path)))
        row = tops[tops["model"] == model]
    if not len(row):
        known = ", ".join(tops["model"].head(8))
        raise BaselineError(f"baseline {path!r} has no model {model!r}; it holds {known}"
                            + (" ..." if len(tops) > 8 else ""))
    r = row.iloc[0].to_dict()
    summary = {"params": r["params"], "macs": r["macs"], "input_shape": r["input_shape"]}
    if "activation_bytes" in r and r["activation_bytes"] == r["activation_bytes"]:
        summary["activation_bytes"] = r["activation_bytes"]
    layers = layer_rows(frame, model)
    note = "" if layers is not None else (
        f"{ref} stores no layer rows (make them with `archcost check --update --layers`): totals only")
    return Side(ref, layers, summary, note)


def model_side(ref, input_size=None, batch_size=1, memory=True) -> Side:
    a = analyze(ref, input_size=input_size, batch_size=batch_size, memory=memory)
    return Side(str(ref), a.breakdown(), a.row)


def input_of(side: Side):
    """(input size without batch, batch) recorded in a baseline side, for the other side."""
    shapes = [tuple(int(d) for d in s.split("x")) for s in str(side.summary["input_shape"]).split(",")]
    sizes = [s[1:] for s in shapes]
    return (sizes[0] if len(sizes) == 1 else sizes), shapes[0][0]
