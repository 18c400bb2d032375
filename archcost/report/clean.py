"""The output edge: every value that leaves in a CSV or JSON file is a plain Python
int, float, str, bool or None (never a tensor or a numpy scalar), count columns stay
integers, and JSON is strict (a missing value is ``null``, never ``NaN``)."""

import json
import math
import numbers

import pandas as pd

from archcost.files import spreadsheet_safe, unsafe_undone  # noqa: F401  (cells of our CSVs)

# Columns that hold exact counts: written as integers even when a row leaves them empty
# (pandas would otherwise turn the whole column into floats, ``1792.0``).
_COUNT_NAMES = {"params", "self_params", "trainable_params", "macs", "self_macs", "flops", "activations",
                "calls", "batch_size", "depth", "repeats", "warmup", "threads", "archcost", "independent",
                "torch_macs", "difference", "calls_uncounted", "baseline", "now", "delta", "shared_params",
                "year"}


def is_count_column(name) -> bool:
    name = str(name)
    return name in _COUNT_NAMES or name.endswith("_bytes") or name.endswith("_bytes_allocator")


def plain(v):
    """One value as a plain Python scalar; missing (None, NaN, pd.NA, NaT) -> None."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if hasattr(v, "numel") and hasattr(v, "item"):  # a torch tensor (imported by whoever made it)
        if v.numel() != 1:
            return str(v.tolist())
        v = v.item()
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return bool(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        v = float(v)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, str):
        return v
    if hasattr(v, "item"):  # other numpy scalars
        return plain(v.item())
    return str(v)


def _integral(v) -> bool:
    return v is None or isinstance(v, bool) or isinstance(v, int) or (isinstance(v, float) and v.is_integer())


def plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose cells are plain values; count columns whose values are
    all whole numbers become nullable integers (``Int64``: empty in CSV, null in JSON)."""
    out = {}
    for col in frame.columns:
        values = [plain(v) for v in frame[col].tolist()]
        present = [v for v in values if v is not None]
        if present and is_count_column(col) and all(_integral(v) and not isinstance(v, bool) for v in present):
            out[col] = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
        elif present and all(isinstance(v, bool) for v in present):
            out[col] = pd.array(values, dtype="boolean") if len(present) < len(values) else pd.array(values, dtype=bool)
        elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            if all(isinstance(v, int) for v in present) and len(present) == len(values):
                out[col] = pd.array(values, dtype="int64")
            elif all(isinstance(v, int) for v in present):
                out[col] = pd.array(values, dtype="Int64")
            else:
                out[col] = pd.array([float("nan") if v is None else float(v) for v in values], dtype="float64")
        else:
            out[col] = pd.Series(values, dtype=object)
    return pd.DataFrame(out, columns=list(frame.columns), index=range(len(frame)))


def records(frame: pd.DataFrame) -> list:
    """Rows as dicts of plain values (what JSON gets)."""
    clean = plain_frame(frame)
    cols = list(clean.columns)
    return [{c: plain(v) for c, v in zip(cols, row)} for row in clean.itertuples(index=False, name=None)]


def to_json(frame: pd.DataFrame) -> str:
    """Strict JSON (``allow_nan=False``): a list of row objects."""
    return json.dumps(records(frame), indent=1, allow_nan=False) + "\n"


def to_csv(frame: pd.DataFrame, path_or_buf=None):
    """CSV of plain values; text cells are spreadsheet-safe (:func:`spreadsheet_safe`)."""
    clean = plain_frame(frame)
    for col in clean.columns:
        if clean[col].dtype == object:
            clean[col] = clean[col].map(spreadsheet_safe)
    return clean.to_csv(path_or_buf, index=False)


def strict_json(obj) -> str:
    """JSON without NaN (null instead) and with numpy scalars as plain numbers."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if v is not None and not isinstance(v, (str, int, float, bool)):
            try:
                if v != v:  # pd.NA and friends
                    return None
            except TypeError:
                return None
            return str(v)
        return v

    return json.dumps(clean(obj), indent=1, allow_nan=False) + "\n"
