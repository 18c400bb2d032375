"""Per-layer views that add up: container rows' activations at ``--depth``, and rows that
share parameters (tied weights).

At ``--depth N`` a container row stands for its whole subtree. Its own output is just its
last child's (already counted), so its ``activations`` become the sum over its leaf
layers that are not aliased (each storage once, as the model total counts them): the
rows at the cut then add up to the total, like params, MACs and saved bytes.

A parameter held by two modules (tied weights: ``dec.weight = enc.weight``) is in both
rows' ``params`` but once in the model total; ``shared_params`` says how many of a row's
parameter elements some module outside that row also holds, so the reader can see why the
rows sum to more than the total.
"""

import pandas as pd


def _inside(name: str, container: str) -> bool:
    return container in ("", "(model)") or name == container or name.startswith(container + ".")


def container_activations(rows: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (a depth cut) with each container row's activations summed over its
    non-aliased leaves; ``activation_note`` says so on those rows."""
    leaves = layers[layers["is_leaf"] & ~layers["aliased"].astype(bool)]
    out = rows.copy()
    note = [""] * len(out)
    for i, rec in enumerate(out.to_dict("records")):
        if rec["is_leaf"] or rec["layer"].endswith("[own ops]"):
            continue
        sub = leaves[[_inside(n, rec["layer"]) for n in leaves["layer"]]]
        out.iat[i, out.columns.get_loc("activations")] = int(sub["activations"].sum())
        out.iat[i, out.columns.get_loc("activation_bytes")] = int(sub["activation_bytes"].sum())
        out.iat[i, out.columns.get_loc("aliased")] = False
        note[i] = f"activations: sum of its {len(sub)} leaf layers' outputs"
    out["activation_note"] = note
    return out


def mark_shared(layers: pd.DataFrame, model) -> None:
    """Add ``shared_params`` to ``layers`` (in place): per row, the parameter elements that
    a module outside the row also holds (0 for most rows)."""
    owners = {}  # id(param) -> (param, {module paths that hold it directly})
    for path, mod in model.named_modules(remove_duplicate=False):
        for p in mod._parameters.values():
            if p is not None:
                owners.setdefault(id(p), (p, set()))[1].add(path)
    shared = [(p, paths) for p, paths in owners.values() if len(paths) > 1]
    counts = []
    for name in layers["layer"]:
        row = "" if name == "(model)" else name
        counts.append(sum(p.numel() for p, paths in shared
                          if any(_inside(q, row) for q in paths) and not all(_inside(q, row) for q in paths)))
    layers["shared_params"] = counts
