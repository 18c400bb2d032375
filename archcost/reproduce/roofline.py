"""``archcost reproduce roofline``: the lectures' batch-size argument on a roofline.

VGG16's FC layers read every weight once per batch and do one MAC per weight per image,
so at batch 1 they move ~4 bytes per 2 FLOPs (float32) and are memory-bound on any GPU;
their intensity grows with the batch until they cross the ridge. Its convolutions reuse
each weight at every output position and are compute-bound from batch 1, except the
first: with 3 input channels it does few MACs per activation byte at any batch. Then the
lecture line-up (AlexNet, VGG16, GoogLeNet, ResNet-50) at batch 1 and 256 on a named GPU:
the time bound per image and how much of it is spent waiting on memory.

Every number comes from the counting engine's per-operator records (one counting pass per
model and batch; nothing is extrapolated) and the device table's datasheet figures.
"""

from __future__ import annotations

from typing import List

GPU = "a100-80gb"
BATCHES = (1, 4, 16, 64, 256)
LINEUP = ("alexnet", "vgg16", "googlenet", "resnet50")
LINEUP_BATCHES = (1, 256)


def _rows_at(model, batch, roof):
    from archcost.analysis import analyze
    from archcost.roofline.layers import layer_rows

    a = analyze(model, batch_size=batch, memory=False, record_ops=True)
    return a, layer_rows(a, roof)


def _group(rows, select):
    chosen = [r for r in rows if select(r)]
    flops = sum(r["flops"] for r in chosen)
    moved = sum(r["bytes_read"] + r["bytes_written"] for r in chosen)
    return chosen, flops, moved


def intensity_vs_batch(target) -> List[dict]:
    roof = target.roof
    out = []
    for b in BATCHES:
        a, rows = _rows_at("vgg16", b, roof)
        params = dict(zip(a.layers["layer"], a.layers["params"]))
        for label, select in (("VGG16 conv layers (13, together)", lambda r: r["type"] == "Conv2d"),
                              ("VGG16 FC layers (3, together)", lambda r: r["type"] == "Linear"),
                              ("VGG16 features.0 (first conv, 3->64 maps)", lambda r: r["layer"] == "features.0")):
            chosen, flops, moved = _group(rows, select)
            intensity = flops / moved
            # the group's own ridge: its FLOPs at their operators' rates (FC at FP32, convs at TF32)
            compute_s = sum(r["time_compute_ms"] for r in chosen) / 1e3
            ridge = flops / compute_s / roof.bandwidth if compute_s else roof.ridge
            memory_bound = sum(r["time_bound_ms"] for r in chosen if r["bound"] == "memory")
            total = sum(r["time_bound_ms"] for r in chosen)
            out.append({"experiment": "roofline", "variant": label, "input_shape": a.row["input_shape"],
                        "params": int(sum(params[r["layer"]] for r in chosen)), "macs": flops // 2,
                        "activation_bytes": None, "saved_bytes": None, "batch_size": b,
                        "arithmetic_intensity": intensity, "bytes_moved": moved,
                        "bound_share_memory": memory_bound / total,
                        "ridge_flop_per_byte": ridge,
                        "note": f"batch {b}: {intensity:.3g} FLOP/byte, "
                                f"{'memory' if intensity < ridge else 'compute'}-bound on {roof.device} "
                                f"(ridge {ridge:.3g} at its rate, {chosen[0].get('rate', roof.dtype)})"})
    return out


def lineup_on_gpu(target) -> List[dict]:
    from archcost.roofline import bounds as roofline
    roof = target.roof
    out = []
    for model in LINEUP:
        for b in LINEUP_BATCHES:
            a, rows = _rows_at(model, b, roof)
            s = roofline.summarize(rows, roof, b)
            out.append({"experiment": "roofline", "variant": f"{model} on {roof.device}",
                        "input_shape": a.row["input_shape"], "params": int(a.row["params"]),
                        "macs": int(a.row["macs"]), "activation_bytes": None, "saved_bytes": None,
                        "batch_size": b, "arithmetic_intensity": s["arithmetic_intensity"],
                        "bytes_moved": s["bytes_moved"], "time_bound_per_image_ms": s["time_bound_per_image_ms"],
                        "bound_share_memory": s["bound_share_memory"],
                        "note": f"batch {b}: {s['time_bound_per_image_ms'] * 1e3:.1f} us per image at best; "
                                f"{s['bound_share_memory']:.0%} of it in memory-bound layers"})
    return out


def run(gpu: str = GPU) -> List[dict]:
    from archcost.roofline.layers import resolve_target

    target = resolve_target(gpu, "float32")
    rows = intensity_vs_batch(target) + lineup_on_gpu(target)
    for r in rows:
        r.setdefault("ridge_flop_per_byte", target.roof.ridge)
    return rows
