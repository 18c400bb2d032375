"""A model's roofline on a target: the roof (datasheet or calibrated), the per-layer bounds
from the counting engine's per-operator records, the batch where the heaviest layers cross
the ridge, and, with ``latency``, measured time beside the bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from . import devices, roofline
from .engine import AnalysisError


@dataclass
class Target:
    roof: roofline.Roof
    local: Optional[str]  # where it can be measured here: "cpu", "cuda", or None (a GPU not here)
    note: str  # how the roof was obtained, printed with the results
    calibration: object = None


def resolve_target(target: str, dtype: str, launch_overhead_us: float = 0.0, refresh: bool = False) -> Target:
    """``target``: a device key from the table (``archcost devices``), 'cpu' (this machine,
    calibrated), or 'auto' (this machine's GPU if torch sees one, else cpu)."""
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
        from .calibrate import calibration, cpu_roof

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
    column = devices.peak_dtype(peak, dtype, tf32=True)
    if column is None:
        raise AnalysisError(f"{peak.name}'s datasheet gives no {dtype} figure (it has "
                            f"{', '.join(peak.tflops)}): choose another --dtype or --target")
    roof = roofline.Roof(peak.name, column, peak.peak_flops(column), peak.bandwidth_bytes_per_s,
                         f"{peak.source}; bandwidth: {peak.bandwidth_source}", overhead)
    local = "cuda" if local_gpu and devices.find_peak(local_gpu) is peak else None
    note = (f"{peak.name}: {column} {peak.tflops[column]:g} TFLOP/s dense, {peak.bandwidth_gbs:g} GB/s "
            f"({roof.source})")
    if column == "tf32" and dtype == "float32":
        note += "; float32 is bounded by the TF32 tensor-core rate, which cuDNN uses by default (allow_tf32)"
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
    return roofline.bound_layers(roofline.aggregate(op_records(a), leaves, types), roof)


def model_bound(a, roof) -> dict:
    """The model-level bound of an analysis (for ``table --target``)."""
    rows = layer_rows(a, roof)
    return roofline.summarize(rows, roof, int(a.row["batch_size"]))


def run(model, target: Target, batch_size: int = 1, dtype: str = "float32", input_size=None, engine: str = "auto",
        latency: bool = False, repeats: int = 20, warmup: int = 5, ridge: bool = True):
    """-> (layers frame, summary frame of one row). ``latency`` times every leaf layer and
    the whole forward on the target (which must be this machine's CPU or GPU)."""
    from .analyze import analyze

    if latency and target.local is None:
        raise AnalysisError(f"measured times need the target here: {target.roof.device} is not this machine's "
                            "device (use --target cpu or auto, or drop --latency)")
    device = target.local if latency else "cpu"
    a = analyze(model, input_size=input_size, batch_size=batch_size, dtype=dtype, engine=engine, memory=False,
                layer_latency=latency, device=device, repeats=repeats, warmup=warmup, record_ops=True)
    rows = layer_rows(a, target.roof)
    if ridge:
        # Bytes are affine in the batch: a second count at twice the batch splits every
        # layer's bytes into a fixed part (weights) and a per-image part (activations).
        b = analyze(model, input_size=input_size, batch_size=2 * batch_size, dtype=dtype, engine=engine,
                    memory=False, record_ops=True)
        parts = roofline.split_bytes(rows, batch_size, layer_rows(b, target.roof), 2 * batch_size)
        roofline.add_ridge_batches(rows, parts, target.roof.ridge)
    s = a.row
    summary = {"model": s["model"], "input_shape": s["input_shape"], "batch_size": batch_size,
               "dtype": s["dtype"], "macs": int(s["macs"]),
               **roofline.summarize(rows, target.roof, batch_size)}
    layers = pd.DataFrame(rows)
    if latency:
        ly = a.layers
        measured = dict(zip(ly["layer"], ly["latency_ms"]))
        layers["latency_ms"] = [measured.get(r, float("nan")) for r in layers["layer"]]
        layers["measured_over_bound"] = layers["latency_ms"] / layers["time_bound_ms"]
        summary.update(latency_ms=float(s["latency_ms"]), measured_over_bound=float(s["latency_ms"]) / summary[
            "time_bound_ms"], clock=s["clock"], threads=int(s["threads"]), repeats=int(s["repeats"]),
            layer_timing_overhead_ms=float(s["layer_timing_overhead_ms"]))
    layers.insert(0, "model", s["model"])
    layers["batch_size"] = batch_size
    return layers, pd.DataFrame([summary])
