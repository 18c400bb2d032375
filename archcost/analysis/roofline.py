"""A model on a roofline target: counted with per-operator records (twice, to split each
layer's bytes into a fixed and a per-image part), bounded, and with ``latency`` timed on
the target beside the bound."""

from __future__ import annotations

import pandas as pd

from archcost.analysis.analyze import analyze
from archcost.errors import AnalysisError
from archcost.roofline import bounds as roofline
from archcost.roofline.layers import Target, layer_rows, predict_layers


def run(model, target: Target, batch_size: int = 1, dtype: str = "float32", input_size=None, engine: str = "auto",
        latency: bool = False, repeats: int = 20, warmup: int = 5, ridge: bool = True):
    """-> (layers frame, summary frame of one row). ``latency`` times every leaf layer and
    the whole forward on the target (which must be this machine's CPU or GPU)."""
    if latency and target.local is None:
        raise AnalysisError(f"measured times need the target here: {target.roof.device} is not this machine's "
                            "device (use --target cpu or auto, or drop --latency)")
    device = target.local if latency else "cpu"
    a = analyze(model, input_size=input_size, batch_size=batch_size, dtype=dtype, engine=engine, memory=False,
                layer_latency=latency, device=device, repeats=repeats, warmup=warmup, record_ops=True)
    rows = layer_rows(a, target.roof)
    if not rows:
        raise AnalysisError(f"{a.row['model']} runs no operators on its input (its forward returns the input "
                            "or a view of it): there is nothing to bound")
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
    pred = predict_layers(a, target, fit=latency)
    if pred is not None:  # an estimate: bound / efficiency of the operator's class + overhead per kernel
        by_layer, total = pred
        layers["predicted_ms"] = [by_layer.get(r, {}).get("predicted_ms", 0.0) for r in layers["layer"]]
        summary["predicted_ms"] = total["predicted_ms"]
    if latency:
        ly = a.layers
        measured = dict(zip(ly["layer"], ly["latency_ms"]))
        layers["latency_ms"] = [measured.get(r, float("nan")) for r in layers["layer"]]
        layers["measured_over_bound"] = layers["latency_ms"] / layers["time_bound_ms"]
        summary.update(latency_ms=float(s["latency_ms"]), measured_over_bound=float(s["latency_ms"]) / summary[
            "time_bound_ms"], clock=s["clock"], threads=int(s["threads"]), repeats=int(s["repeats"]),
            layer_timing_overhead_ms=float(s["layer_timing_overhead_ms"]))
        if "predicted_ms" in summary:
            summary["predicted_over_measured"] = summary["predicted_ms"] / summary["latency_ms"]
    layers.insert(0, "model", s["model"])
    layers["batch_size"] = batch_size
    return layers, pd.DataFrame([summary])
