"""``archcost diff``: two models layer by layer.

Each side is a frame of layer rows that partition its model (``Analysis.breakdown()``:
every leaf plus ``[own ops]`` rows), or the per-layer rows stored in a baseline CSV.
Rows are aligned by module name where the type agrees too (in an ``nn.Sequential`` an
inserted layer shifts every index name after it); the rows left over are then
paired in execution order where their types agree (``difflib`` on the type sequence),
so two networks that name their modules differently still line up. What remains is
``added`` (only in B) or ``removed`` (only in A). Totals come from each model's summary,
not from summing rows (a shared weight is counted once)."""

from __future__ import annotations

import difflib

import pandas as pd

QUANTITIES = ["params", "macs", "activation_bytes", "saved_bytes"]
DIFF_COLUMNS = ["layer", "layer_b", "type", "status", "matched_by"] + [
    f"{q}_{s}" for q in QUANTITIES for s in ("a", "b", "delta")]
TOTAL_LAYER = "(total)"


def side_rows(layers: pd.DataFrame) -> pd.DataFrame:
    """The columns a diff compares, one row per layer, in execution order."""
    out = pd.DataFrame({"layer": layers["layer"].astype(str),
                        "type": layers["type"].astype(str) if "type" in layers else ""})
    for q in QUANTITIES:
        out[q] = layers[q] if q in layers else float("nan")
    return out.reset_index(drop=True)


def _pairs(a: pd.DataFrame, b: pd.DataFrame):
    """[(i_a or None, i_b or None, how)] covering every row of both sides once."""
    b_index = {name: i for i, name in enumerate(b["layer"])}
    pairs, left_a, used_b = [], [], set()
    for i, name in enumerate(a["layer"]):
        j = b_index.get(name)
        if j is not None and j not in used_b and a["type"][i] == b["type"][j]:  # a name and a kind
            pairs.append((i, j, "name"))
            used_b.add(j)
        else:
            left_a.append(i)
    left_b = [j for j in range(len(b)) if j not in used_b]
    # Fall back to execution order for the rows whose names did not match.
    sm = difflib.SequenceMatcher(a=[a["type"][i] for i in left_a], b=[b["type"][j] for j in left_b],
                                 autojunk=False)
    paired_a, paired_b = set(), set()
    for block in sm.get_matching_blocks():
        for k in range(block.size):
            i, j = left_a[block.a + k], left_b[block.b + k]
            pairs.append((i, j, "order"))
            paired_a.add(i)
            paired_b.add(j)
    pairs += [(i, None, "") for i in left_a if i not in paired_a]
    pairs += [(None, j, "") for j in left_b if j not in paired_b]
    return pairs


def _position(pairs):
    """Sort key: B's execution order; a removed row goes after the B row its A
    predecessor matched (so it shows where it was)."""
    a_to_b = {i: j for i, j, _ in pairs if i is not None and j is not None}

    def key(p):
        i, j, _ = p
        if j is not None:
            return (j, 0, 0)
        prev = max((a_to_b[k] for k in a_to_b if k < i), default=-1)
        return (prev, 1, i)

    return sorted(pairs, key=key)


def _drop_memory_only(side: pd.DataFrame) -> pd.DataFrame:
    own = side["layer"].str.endswith(" [own ops]") & (side["params"] == 0) & (side["macs"] == 0)
    return side[~own].reset_index(drop=True)


def _num(v):
    return None if v is None or v != v else int(v)


def diff_layers(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Aligned rows with ``status`` same/changed/added/removed and per-quantity a, b, delta
    (b - a; missing side counts as 0 for the delta, a quantity neither side has is empty)."""
    a, b = side_rows(a), side_rows(b)
    # An '[own ops]' row exists only for a module whose own code counts params, MACs or
    # saved bytes; a side without the memory pass (a baseline) has none of the latter
    # kind, so drop them from the other side rather than call them added.
    if a["saved_bytes"].isna().all():
        b = _drop_memory_only(b)
    if b["saved_bytes"].isna().all():
        a = _drop_memory_only(a)
    rows = []
    for i, j, how in _position(_pairs(a, b)):
        ra = a.iloc[i] if i is not None else None
        rb = b.iloc[j] if j is not None else None
        row = {"layer": (ra if ra is not None else rb)["layer"],
               "layer_b": rb["layer"] if rb is not None else "",
               "type": (rb if rb is not None else ra)["type"], "matched_by": how}
        changed = False
        for q in QUANTITIES:
            va = _num(ra[q]) if ra is not None else None
            vb = _num(rb[q]) if rb is not None else None
            row[f"{q}_a"], row[f"{q}_b"] = va, vb
            if ra is not None and rb is not None:
                row[f"{q}_delta"] = vb - va if va is not None and vb is not None else None
                changed |= va is not None and vb is not None and va != vb
            else:  # added or removed: the other side holds 0
                present = vb if rb is not None else va
                row[f"{q}_delta"] = None if present is None else (vb or 0) - (va or 0)
        if ra is not None and rb is not None and ra["type"] != rb["type"]:
            changed = True
            row["type"] = f"{ra['type']} -> {rb['type']}"
        row["status"] = "added" if ra is None else "removed" if rb is None else "changed" if changed else "same"
        rows.append(row)
    return _typed(pd.DataFrame(rows, columns=DIFF_COLUMNS))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts as nullable integers: exact in CSV, empty where a side has no value."""
    for c in DIFF_COLUMNS[5:]:
        frame[c] = frame[c].astype("Int64")
    return frame


def total_row(summary_a: dict, summary_b: dict) -> dict:
    """The model totals of both sides (from their summaries) as one diff row."""
    row = {"layer": TOTAL_LAYER, "layer_b": "", "type": "", "status": "", "matched_by": ""}
    changed = False
    for q in QUANTITIES:
        va, vb = _num(summary_a.get(q)), _num(summary_b.get(q))
        row[f"{q}_a"], row[f"{q}_b"] = va, vb
        row[f"{q}_delta"] = vb - va if va is not None and vb is not None else None
        changed |= va is not None and vb is not None and va != vb
    row["status"] = "changed" if changed else "same"
    return row


def diff(layers_a, summary_a: dict, layers_b, summary_b: dict) -> pd.DataFrame:
    """Aligned layer rows followed by the totals row."""
    rows = diff_layers(layers_a, layers_b) if layers_a is not None and layers_b is not None else (
        pd.DataFrame(columns=DIFF_COLUMNS))
    total = _typed(pd.DataFrame([total_row(summary_a, summary_b)], columns=DIFF_COLUMNS))
    return _typed(pd.concat([rows, total], ignore_index=True)) if len(rows) else total
