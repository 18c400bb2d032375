"""A model's roofline on a target: the roof (datasheet or calibrated), the per-layer bounds
from the counting engine's per-operator records, the batch where the heaviest layers cross
the ridge, and, with ``latency``, measured time beside the bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from archcost.devices import table as devices

from archcost.roofline import bounds as roofline
from archcost.errors import AnalysisError


@dataclass
class Target:
    roof: roofline.Roof
    local: Optional[str]  # where it can be measured here: "cpu", "cuda", or None (a GPU not here)
    note: str  # how the roof was obtained, printed with the results
    calibration: object = None


def resolve_target(target: str, dtype: str, launch_overhead_us: float = 0.0, refresh: bool = False,
                   tf32: str = "torch-default") -> Target:
    """``target``: a device key from the table (``archcost devices``), 'cpu' (this machine,
    calibrated), or 'auto' (this machine's GPU if torch sees one, else cpu). ``tf32``: whether
    float32 products and convolutions run as TF32 on a GPU (``precision.TF32_MODES``)."""
    import torch

    overhead = launch_overhead_us * 1e-6
    name = target.lower()
    local_gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    if name == "auto":
        if local_gpu is None:
            name = "cpu"
        else:
            found = devices.find_peak(local_gpu)
            if found is None:
                raise AnalysisError(f"no datasheet figures for this GPU ({local_gpu}): use --target cpu or a "
                                    "name from `archcost devices`")
            name = found.key
    if name == "cpu":
        from archcost.roofline.calibrate import calibration, cpu_roof

        cal = calibration(refresh=refresh)
        try:
            roof = cpu_roof(dtype, cal, overhead)
        except ValueError as exc:
            raise AnalysisError(str(exc)) from None
        return Target(roof, "cpu", roof.source, cal)
    peak = devices.by_key(name)
    if peak is None:
        keys = ", ".join(d.key for d in devices.DEVICES)
        raise AnalysisError(f"unknown target {target!r}: use cpu, auto or one of {keys} (see `archcost devices`)")
    if not peak.has_peaks:
        drawn = ", ".join(d.key for d in devices.DEVICES if d.has_peaks)
        raise AnalysisError(f"{peak.key} ({peak.name}) is in the device table for its memory only: no sourced "
                            f"datasheet peaks are stored for it, so no roofline; use cpu or one of {drawn}")
    from archcost.roofline.precision import rates_for

    try:
        engines = rates_for(peak.tflops, dtype, tf32)
    except ValueError as exc:
        raise AnalysisError(str(exc)) from None
    column = engines["conv"]
    if column is None or engines["matmul"] is None:
        raise AnalysisError(f"{peak.name}'s datasheet gives no {dtype} figure (it has "
                            f"{', '.join(peak.tflops)}): choose another --dtype or --target")
    columns = tuple((k, v * 1e12) for k, v in peak.tflops.items())
    roof = roofline.Roof(peak.name, column, peak.peak_flops(column), peak.bandwidth_bytes_per_s,
                         f"{peak.source}; bandwidth: {peak.bandwidth_source}", overhead, columns, dtype, tf32)
    local = "cuda" if local_gpu and devices.find_peak(local_gpu) is peak else None
    rates = "; ".join(f"{what} at {col} {peak.tflops[col]:g} TFLOP/s" for what, col in
                      (("convolutions", engines["conv"]), ("matrix products", engines["matmul"]),
                       ("other operators", engines["other"])) if col)
    note = f"{peak.name}, {dtype} with --tf32 {tf32}: {rates} (dense); {peak.bandwidth_gbs:g} GB/s ({roof.source})"
    if dtype == "float32" and engines["matmul"] != engines["conv"]:
        note += ("; torch's defaults run float32 convolutions as TF32 (cudnn.allow_tf32) and float32 matrix "
                 "products at FP32 (cuda.matmul.allow_tf32 = False)")
    return Target(roof, local, note)


def _leaves(a):
    ly = a.layers
    keys = ["" if n == "(model)" else n for n in ly["layer"]]
    leaves = {k for k, leaf in zip(keys, ly["is_leaf"]) if leaf}
    return leaves, dict(zip(keys, ly["type"]))


def op_records(a):
    ops = getattr(a, "ops", None)
    if ops is None:
        raise AnalysisError("bytes per layer need the per-operator records of archcost's counting engine "
                            "(analyze(..., record_ops=True)); --engine fvcore does not provide them (use --engine auto)")
    return ops


def layer_rows(a, roof):
    leaves, types = _leaves(a)
    return roofline.bound_layers(roofline.aggregate(op_records(a), leaves, types, roof), roof)


def model_bound(a, roof) -> dict:
    """The model-level bound of an analysis (for ``table --target``)."""
    rows = layer_rows(a, roof)
    return roofline.summarize(rows, roof, int(a.row["batch_size"]))


def predictor(tgt, fit: bool = False):
    """(Rates, Efficiencies) to predict times on ``tgt``, or None. A GPU: its datasheet rates
    and the stated default efficiencies. This CPU: its calibration and the efficiencies fitted
    on it, from the cache, or fitted now (about 40 s on a quiet machine, once) when ``fit``."""
    from archcost.roofline import latency

    roof = tgt.roof
    if tgt.calibration is None:
        rates = latency.Rates(roof.device, dict(roof.columns) or {roof.dtype: roof.peak_flops}, roof.bandwidth,
                              roof.run_dtype or roof.dtype, roof.tf32)
        return rates, latency.GPU_DEFAULTS
    from archcost.roofline import latency_calibrate

    rates = latency_calibrate.cpu_rates(tgt.calibration, roof.dtype)
    eff = latency_calibrate.cached_efficiencies()
    if eff is None and fit:
        import sys

        print("fitting this CPU's efficiencies per operator class on the calibration networks' operators (about 40 s "
              "on a quiet machine, once; cached)", file=sys.stderr)
        eff = latency_calibrate.cpu_efficiencies(rates, refresh=True, stable=True)
    return (rates, eff) if eff is not None else None


def predict_layers(a, tgt, fit: bool = False):
    """-> ({layer: {bound_ms, predicted_ms, rate}}, model totals) of an analysis with records, or None."""
    from archcost.roofline.latency import by_layer, predict_ops, totals

    pr = predictor(tgt, fit)
    if pr is None:
        return None
    leaves, _ = _leaves(a)
    predicted = predict_ops(op_records(a), pr[0], pr[1], a.conv_kinds)
    return by_layer(predicted, leaves), totals(predicted)


def add_model_bound(a, tgt, measured_on):
    """time_bound_ms and bound_share_memory in the table row; measured / bound when the
    latency was measured on the target itself."""
    b = model_bound(a, tgt.roof)
    s = a.summary
    s["target"] = tgt.roof.device
    s["time_bound_ms"] = b["time_bound_ms"]
    s["bound_share_memory"] = b["bound_share_memory"]
    if measured_on is not None and measured_on == tgt.local:
        s["measured_over_bound"] = s["latency_ms"] / b["time_bound_ms"]
    pred = predict_layers(a, tgt, fit=measured_on is not None and measured_on == tgt.local)
    if pred is not None:
        s["predicted_ms"] = pred[1]["predicted_ms"]
        if "latency_ms" in s:
            s["predicted_over_measured"] = s["predicted_ms"] / s["latency_ms"]


def add_layer_bounds(frame, a, tgt, measured):
    """Per breakdown row: the roofline bound of the leaf layers under it (or of its own
    ops), the bound's kind for single layers, and measured / bound when timed on the target."""
    rows = layer_rows(a, tgt.roof)
    names = [n for n in frame["layer"] if n != "(total)"]
    # A container's own operators without MACs or params (ResNet's `out += identity`) have no
    # breakdown row, but they take time: add their rows, before the total.
    missing = [r for r in rows if not any(r["layer"] == n or r["layer"].startswith(n + ".") for n in names)]
    if missing:
        add = pd.DataFrame([{"layer": r["layer"], "type": "functional", "params": 0, "macs": r["macs"],
                             "is_leaf": False, "aliased": False} for r in missing])
        frame = pd.concat([frame.iloc[:-1], add, frame.iloc[-1:]], ignore_index=True)
    bounds, kinds = [], []
    for name in frame["layer"]:
        if name == "(total)":
            inside = rows
        else:
            inside = [r for r in rows if r["layer"] == name or r["layer"].startswith(name + ".")]
        bounds.append(sum(r["time_bound_ms"] for r in inside) if inside else float("nan"))
        kinds.append(inside[0]["bound"] if len(inside) == 1 else "")
    frame["time_bound_ms"] = bounds
    frame["bound"] = kinds
    cols = ["time_bound_ms", "bound"]
    if measured:
        frame["measured_over_bound"] = frame["latency_ms"] / frame["time_bound_ms"]
        cols.append("measured_over_bound")
    return frame, cols
