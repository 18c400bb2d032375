"""``archcost check``: recompute a baseline's models and compare params (exact) and MACs
(exact unless a tolerance is given).

The baseline is a CSV with one row per model: ``model, input_shape, params, macs``;
input_shape is NxCxHxW (several inputs joined by ','). With ``--layers`` it also holds
per-layer rows: the same model and input_shape, a ``layer`` name (empty on the model's
own row), its ``type``, ``params``, ``macs`` and ``activation_bytes``: the rows of
``Analysis.breakdown()``, which partition the model. When such a model drifts, the
layers that changed are named (``diff`` of the stored rows against now).

A ``file.py:builder`` model in a baseline is relative to the baseline's folder, so a
check gives the same answer from any working directory; so is the config of an
``hf:path/config.json`` model (a config is data: it may lie outside the folder).

A baseline is data, and data must not name code to run: its rows hold zoo names and
``file.py:builder`` paths inside the baseline's folder. A file outside it needs
``allow_outside`` (``--allow-outside``), a ``package.module:callable`` row needs
``allow_modules`` (``--allow-module-refs``); without them the row is refused before
anything is imported. Columns a user added to the file are kept by an update."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import pandas as pd

from archcost.analysis.analyze import analyze
from archcost.compare.diff import diff_layers
from archcost.errors import AnalysisError
from archcost.files import unsafe_undone
from archcost.zoo.sources import is_source

REQUIRED = ["model", "input_shape", "params", "macs"]
LAYER_FIELDS = ["layer", "type", "activation_bytes"]
DRIFT_COLUMNS = ["model", "layer", "type", "status", "column", "baseline", "now", "delta"]  # status as diff's
TOTAL = "(total)"


class BaselineError(AnalysisError):
    pass


@dataclasses.dataclass(frozen=True)
class Trust:
    """What a baseline's rows may run beyond zoo models and files inside its folder."""
    allow_outside: bool = False  # file.py:builder paths outside the baseline's folder
    allow_modules: bool = False  # package.module:callable rows (imported and called)


# --- model references ------------------------------------------------------------------

def _file_ref(model: str):
    """(path, attr) when ``model`` is a ``path/file.py:builder`` reference, else None."""
    target, sep, attr = str(model).rpartition(":")
    if sep and target and (target.endswith(".py") or "/" in target or os.sep in target):
        return target, attr
    return None


def _hf_path(model: str, folder=".") -> str | None:
    """The config path of an ``hf:path/config.json`` (or ``hf:folder/``) reference, as the
    ``hf:`` source reads it (a name ending .json, holding a '/', or naming a path that exists
    from ``folder``); None for ``hf:TYPE`` and other references."""
    model = str(model)
    if not model.startswith("hf:"):
        return None
    spec = model[3:]
    if spec.endswith(".json") or "/" in spec or os.sep in spec or os.path.exists(os.path.join(folder, spec)):
        return spec
    return None


def stored_ref(model: str, base_dir) -> str:
    """The name a model gets in a baseline in ``base_dir``: a file path, relative (from the
    current directory) or absolute, is rewritten relative to the baseline's folder, so one
    model is one row however it was named, and the baseline works on another machine
    (``file.py:builder`` and ``hf:path/config.json`` alike)."""
    config = _hf_path(model)
    if config is not None:
        rel = pathlib.PurePath(os.path.relpath(os.path.abspath(config), os.path.abspath(base_dir or "."))).as_posix()
        if not (rel.endswith(".json") or "/" in rel):
            rel += "/"  # a folder holding config.json: the '/' keeps it a path, not a model type
        return f"hf:{rel}"
    ref = _file_ref(model)
    if ref is None:
        return model
    rel = os.path.relpath(os.path.abspath(ref[0]), os.path.abspath(base_dir or "."))
    return f"{pathlib.PurePath(rel).as_posix()}:{ref[1]}"


def vet(model: str, base_dir, trust: Trust = Trust()) -> None:
    """Refuse a baseline row that names code the baseline may not run (module docstring)."""
    if ":" not in str(model):
        return  # a zoo name
    if is_source(model):
        return  # a library's model (a config is data, not code)
    ref = _file_ref(model)
    if ref is None:
        if not trust.allow_modules:
            raise BaselineError(f"baseline row {model!r} names Python code to import and call "
                                "(package.module:callable); a baseline holds zoo names and file.py:builder "
                                "paths: pass --allow-module-refs if you trust this baseline")
        return
    folder = os.path.realpath(base_dir or ".")
    path = os.path.realpath(os.path.join(folder, ref[0]))
    if not trust.allow_outside and os.path.commonpath([folder, path]) != folder:
        raise BaselineError(f"baseline row {model!r} names a model file outside the baseline's folder "
                            f"({folder!r}); move it there, or pass --allow-outside if you trust this baseline")


def runnable_ref(model: str, base_dir) -> str:
    """The reference to build a baseline row's model: file paths resolved against the
    baseline's folder, not the current directory."""
    config = _hf_path(model, base_dir or ".")
    if config is not None:
        return model if os.path.isabs(config) else f"hf:{os.path.normpath(os.path.join(base_dir or '.', config))}"
    ref = _file_ref(model)
    if ref is None or os.path.isabs(ref[0]):
        return model
    return f"{os.path.normpath(os.path.join(base_dir or '.', ref[0]))}:{ref[1]}"


# --- reading ---------------------------------------------------------------------------

def read_baseline(path) -> pd.DataFrame:
    """All rows (model rows and, when stored, layer rows with a non-empty ``layer``)."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise BaselineError(f"baseline {str(p)!r} does not exist: create it with "
                            f"`archcost check --update --baseline {p} MODEL ...`")
    try:
        frame = pd.read_csv(p, dtype={"layer": str, "type": str}, keep_default_na=False,
                            na_values={"activation_bytes": [""]})
    except Exception as exc:
        raise BaselineError(f"baseline {str(p)!r} is not a readable CSV: {exc}") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise BaselineError(f"baseline {str(p)!r} lacks column(s) {', '.join(missing)}; "
                            f"expected {', '.join(REQUIRED)}")
    if not len(frame):
        raise BaselineError(f"baseline {str(p)!r} has no rows: add models with "
                            f"`archcost check --update --baseline {p} MODEL ...`")
    for col in ("params", "macs"):
        if not pd.api.types.is_integer_dtype(frame[col]):
            raise BaselineError(f"baseline {str(p)!r}: column {col!r} must hold integers")
    if "layer" not in frame:
        frame["layer"] = ""
    frame["model"] = frame["model"].astype(str)
    for col in ("model", "layer", "type"):  # written spreadsheet-safe: read back as named
        if col in frame:
            frame[col] = frame[col].map(unsafe_undone)
    models = model_rows(frame)
    if models["model"].duplicated().any():
        dup = models.loc[models["model"].duplicated(), "model"].iloc[0]
        raise BaselineError(f"baseline {str(p)!r} lists model {dup!r} twice")
    orphans = set(frame.loc[frame["layer"] != "", "model"]) - set(models["model"])
    if orphans:
        raise BaselineError(f"baseline {str(p)!r} has layer rows but no model row for {sorted(orphans)[0]!r}")
    return frame


def model_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["layer"] == ""] if "layer" in frame else frame


def layer_rows(frame: pd.DataFrame, model: str):
    """The stored layer rows of ``model`` (execution order), or None when none are stored."""
    if "layer" not in frame:
        return None
    rows = frame[(frame["model"] == model) & (frame["layer"] != "")]
    return rows.reset_index(drop=True) if len(rows) else None


# --- measuring -------------------------------------------------------------------------

def _shape_args(input_shape: str):
    shapes = [tuple(int(d) for d in s.split("x")) for s in str(input_shape).split(",")]
    batch = shapes[0][0]
    sizes = [s[1:] for s in shapes]
    return (sizes[0] if len(sizes) == 1 else sizes), batch


def measure_analysis(model: str, input_shape: str | None = None, base_dir=None, input_sizes=None,
                     batch_size=1, trust: Trust = Trust()):
    """``analyze`` of a baseline row's model at its recorded input (counts only)."""
    vet(model, base_dir, trust)
    ref = runnable_ref(model, base_dir)
    path = _file_ref(ref)
    if path is not None and not os.path.isfile(path[0]):
        raise BaselineError(f"baseline row {model!r}: no file {path[0]!r}; a file.py:builder path in a baseline "
                            f"is relative to the baseline's folder ({str(base_dir or '.')!r}): fix the row or "
                            "re-create it with --update from the folder you named the model in")
    if input_shape:
        try:
            input_sizes, batch_size = _shape_args(input_shape)
        except ValueError:
            raise BaselineError(f"baseline row {model!r}: input_shape {input_shape!r} is not NxCxHxW") from None
    return analyze(ref, input_size=input_sizes, batch_size=batch_size, memory=False)


def measure(model: str, input_shape: str | None = None, base_dir=None, trust: Trust = Trust()) -> dict:
    row = measure_analysis(model, input_shape, base_dir, trust=trust).row
    return {c: row[c] for c in REQUIRED[1:]} | {"model": model}


def rows_of(model: str, a, layers: bool) -> pd.DataFrame:
    """Baseline rows for one analysed model: its model row, then (``layers``) one row per
    layer of ``breakdown()``."""
    s = a.row
    top = {"model": model, "input_shape": s["input_shape"], "params": int(s["params"]), "macs": int(s["macs"])}
    if not layers:
        return pd.DataFrame([top], columns=REQUIRED)
    top |= {"layer": "", "type": "", "activation_bytes": int(s["activation_bytes"])}
    br = a.breakdown()
    per = pd.DataFrame({"model": model, "input_shape": s["input_shape"], "params": br["params"].astype(int),
                        "macs": br["macs"].astype(int), "layer": br["layer"], "type": br["type"],
                        "activation_bytes": br["activation_bytes"].astype(int)})
    return pd.concat([pd.DataFrame([top]), per], ignore_index=True)[REQUIRED + LAYER_FIELDS]


def measure_update(models, existing: pd.DataFrame | None, base_dir, input_sizes=None, batch_size=1,
                   layers=False, trust: Trust = Trust()) -> dict:
    """{stored model name: its new rows}. Without ``models``, every model of ``existing``
    at its recorded input; a model that already had layer rows keeps them. Every row
    stored is one a check may run (``vet``)."""
    out = {}
    if models:
        for m in models:
            vet(stored_ref(m, base_dir), base_dir, trust)
        for m in models:
            name = stored_ref(m, base_dir)
            a = analyze(m, input_size=input_sizes, batch_size=batch_size, memory=False)
            had = existing is not None and layer_rows(existing, name) is not None
            out[name] = rows_of(name, a, layers or had)
    elif existing is not None:
        for r in model_rows(existing).itertuples():
            vet(r.model, base_dir, trust)
        for r in model_rows(existing).itertuples():
            a = measure_analysis(r.model, r.input_shape, base_dir, trust=trust)
            out[r.model] = rows_of(r.model, a, layers or layer_rows(existing, r.model) is not None)
    return out


def merge(current: pd.DataFrame | None, measured: dict) -> pd.DataFrame:
    """``current`` with the rows of every measured model replaced (new models appended);
    what another process added meanwhile is kept. Read ``current`` under the lock."""
    parts, seen = [], set()
    extra = [c for c in (current.columns if current is not None else []) if c not in REQUIRED + LAYER_FIELDS]
    if current is not None:
        for model in dict.fromkeys(model_rows(current)["model"]):
            parts.append(_keep_extra(measured[model], current[current["model"] == model], extra)
                         if model in measured else current[current["model"] == model])
            seen.add(model)
    parts += [rows for model, rows in measured.items() if model not in seen]
    frame = pd.concat(parts, ignore_index=True)
    for c in extra:  # a user's own columns: kept, empty on new rows
        col = frame[c] if c in frame else pd.Series([None] * len(frame), index=frame.index)
        frame[c] = col.astype(object).where(col.notna(), "")
    if "layer" in frame and (frame["layer"].fillna("") != "").any():
        frame["layer"] = frame["layer"].fillna("")
        frame["type"] = frame["type"].fillna("")
        frame["activation_bytes"] = frame["activation_bytes"].astype("Int64")
        return frame[REQUIRED + LAYER_FIELDS + extra]
    return frame[REQUIRED + extra]


def _keep_extra(new: pd.DataFrame, old: pd.DataFrame, extra) -> pd.DataFrame:
    """``new`` rows of a model with the user's own columns of its ``old`` model row."""
    if not extra:
        return new
    new = new.copy()
    top_old = old[old["layer"] == ""] if "layer" in old else old
    top_new = (new["layer"].fillna("") == "") if "layer" in new else pd.Series(True, index=new.index)
    for c in extra:
        new[c] = None
        if len(top_old):
            new.loc[top_new, c] = top_old[c].iloc[0]
    return new


def build_baseline(models, existing: pd.DataFrame | None = None, input_sizes=None, batch_size=1,
                   base_dir=None, layers=False) -> pd.DataFrame:
    """New baseline rows for ``models`` (replacing theirs in ``existing``); without models,
    re-measure every row of ``existing`` at its recorded input."""
    return merge(existing, measure_update(models, existing, base_dir, input_sizes, batch_size, layers))


# --- comparing -------------------------------------------------------------------------

def _layer_drift(model: str, stored: pd.DataFrame, a) -> list:
    """Rows naming each layer whose params or MACs differ from the stored ones."""
    d = diff_layers(stored, a.breakdown())
    out = []
    for r in d[d["status"] != "same"].itertuples():
        layer = r.layer if r.matched_by != "order" else f"{r.layer} -> {r.layer_b}"
        for col in ("params", "macs"):
            base, now, delta = getattr(r, f"{col}_a"), getattr(r, f"{col}_b"), getattr(r, f"{col}_delta")
            if delta is not pd.NA and delta != 0:
                out.append({"model": model, "layer": layer, "type": r.type, "status": r.status, "column": col,
                            "baseline": base,
                            "now": now, "delta": delta})
    return out


def compare(baseline: pd.DataFrame, models=None, tolerance: float = 0.0, base_dir=None,
            trust: Trust = Trust()) -> pd.DataFrame:
    """Rows of drift: model, layer ('(total)' for the model, else a layer that changed,
    when the baseline stores layers), column, baseline, now, delta (empty when all hold)."""
    models = [stored_ref(m, base_dir) for m in models or []]
    tops = model_rows(baseline)
    rows = tops if not models else tops[tops["model"].isin(models)]
    unknown = sorted(set(models) - set(tops["model"]))
    if unknown:
        raise BaselineError(f"model(s) not in the baseline: {', '.join(unknown)}; add them with --update")
    for r in rows.itertuples():  # every row vetted before any is run
        vet(r.model, base_dir, trust)
    drift = []
    for r in rows.itertuples():
        a = measure_analysis(r.model, r.input_shape, base_dir, trust=trust)
        now = a.row
        found = []
        if now["params"] != r.params:
            found.append({"model": r.model, "layer": TOTAL, "type": "", "status": "changed",
                          "column": "params", "baseline": int(r.params),
                          "now": int(now["params"]), "delta": int(now["params"] - r.params)})
        if abs(now["macs"] - r.macs) > tolerance * abs(r.macs):
            found.append({"model": r.model, "layer": TOTAL, "type": "", "status": "changed",
                          "column": "macs", "baseline": int(r.macs),
                          "now": int(now["macs"]), "delta": int(now["macs"] - r.macs)})
        stored = layer_rows(baseline, r.model)
        if found and stored is not None:
            found += _layer_drift(r.model, stored, a)
        drift += found
    frame = pd.DataFrame(drift, columns=DRIFT_COLUMNS)
    for c in ("baseline", "now", "delta"):
        frame[c] = frame[c].astype("Int64")
    return frame
