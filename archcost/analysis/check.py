"""``archcost check``: recompute a baseline's models and compare params (exact) and MACs
(exact unless a tolerance is given). The baseline is a CSV with one row per model:
``model, input_shape, params, macs``; input_shape is NxCxHxW (several inputs joined by ',')."""

from __future__ import annotations

import pathlib

import pandas as pd

from .analyze import analyze
from .engine import AnalysisError

REQUIRED = ["model", "input_shape", "params", "macs"]


class BaselineError(AnalysisError):
    pass


def read_baseline(path) -> pd.DataFrame:
    p = pathlib.Path(path)
    if not p.is_file():
        raise BaselineError(f"baseline {str(p)!r} does not exist: create it with "
                            f"`archcost check --update --baseline {p} MODEL ...`")
    try:
        frame = pd.read_csv(p)
    except Exception as exc:
        raise BaselineError(f"baseline {str(p)!r} is not a readable CSV: {exc}") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise BaselineError(f"baseline {str(p)!r} lacks column(s) {', '.join(missing)}; "
                            f"expected {', '.join(REQUIRED)}")
    for col in ("params", "macs"):
        if not pd.api.types.is_integer_dtype(frame[col]):
            raise BaselineError(f"baseline {str(p)!r}: column {col!r} must hold integers")
    if frame["model"].duplicated().any():
        dup = frame.loc[frame["model"].duplicated(), "model"].iloc[0]
        raise BaselineError(f"baseline {str(p)!r} lists model {dup!r} twice")
    return frame


def _shape_args(input_shape: str):
    shapes = [tuple(int(d) for d in s.split("x")) for s in str(input_shape).split(",")]
    batch = shapes[0][0]
    sizes = [s[1:] for s in shapes]
    return (sizes[0] if len(sizes) == 1 else sizes), batch


def measure(model: str, input_shape: str | None = None) -> dict:
    if input_shape:
        try:
            sizes, batch = _shape_args(input_shape)
        except ValueError:
            raise BaselineError(f"baseline row {model!r}: input_shape {input_shape!r} is not NxCxHxW") from None
        row = analyze(model, input_size=sizes, batch_size=batch).row
    else:
        row = analyze(model).row
    return {c: row[c] for c in REQUIRED}


def compare(baseline: pd.DataFrame, models=None, tolerance: float = 0.0) -> pd.DataFrame:
    """Rows of drift: model, column, baseline, now, delta (empty frame when all hold)."""
    rows = baseline if not models else baseline[baseline["model"].isin(models)]
    unknown = sorted(set(models or []) - set(baseline["model"]))
    if unknown:
        raise BaselineError(f"model(s) not in the baseline: {', '.join(unknown)}; add them with --update")
    drift = []
    for r in rows.itertuples():
        now = measure(r.model, r.input_shape)
        if now["params"] != r.params:
            drift.append({"model": r.model, "column": "params", "baseline": int(r.params),
                          "now": int(now["params"]), "delta": int(now["params"] - r.params)})
        if abs(now["macs"] - r.macs) > tolerance * abs(r.macs):
            drift.append({"model": r.model, "column": "macs", "baseline": int(r.macs),
                          "now": int(now["macs"]), "delta": int(now["macs"] - r.macs)})
    return pd.DataFrame(drift, columns=["model", "column", "baseline", "now", "delta"])


def build_baseline(models, existing: pd.DataFrame | None = None, input_sizes=None, batch_size=1) -> pd.DataFrame:
    """New baseline rows for ``models`` (replacing theirs in ``existing``); without models,
    re-measure every row of ``existing`` at its recorded input."""
    rows = {}
    if existing is not None:
        for r in existing.itertuples():
            rows[r.model] = measure(r.model, r.input_shape) if not models else {c: getattr(r, c) for c in REQUIRED}
    for m in models or []:
        row = analyze(m, input_size=input_sizes, batch_size=batch_size).row
        rows[m] = {c: row[c] for c in REQUIRED}
    return pd.DataFrame(list(rows.values()), columns=REQUIRED)
