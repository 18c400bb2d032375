"""``archcost reproduce sqrt-n-checkpointing``: Chen et al. 2016 ("Training Deep Nets with
Sublinear Memory Cost", arXiv 1604.06174), measured on the deep members of the zoo.

The claim (section 4.1): cutting an n-layer chain into about sqrt(n) segments and keeping
only each segment's input, a training step needs O(sqrt(n)) memory for its feature maps,
for the price of about one extra forward (each segment's forward is run again in backward).

Measured on ResNet-152 and DenseNet-201 (the zoo's), and against depth on networks that
deepen one part only, so that every added block is alike: a ResNet chain with bottleneck
stages (1, 1, n - 3, 1), n = 16, 36, 64, 100 blocks (Chen's analysis is for a chain; here
almost all of it is one stage at 14x14), and DenseNet-BC, k=32, with dense blocks
(6, 12, k, 32), k = 24, 48, 72 (DenseNet-201 is k = 48). Batch 32, float32, SGD (no
optimizer state); each checkpoint set is one whole training step measured by archcost's
pass (``plan.Bench``):

- ``none``: no checkpointing;
- ``blocks``: every block (bottleneck, dense layer) checkpointed;
- ``sqrt-n``: Chen's segments over the n blocks (``plan.sqrt_segments``): runs of about
  sqrt(n) consecutive blocks of one ``nn.Sequential`` stage, each run one checkpoint.
  DenseNet's dense layers are not a chain: each takes every earlier layer's output (a
  ``DenseBlock`` concatenates them), so no run of them can be recomputed from its first
  input alone, and its sqrt-n set is ``blocks``.

``activation_bytes`` in a row is what Chen et al. count, the feature maps: what the
forward made and backward's activation gradients, alive at the step's peak (the peak less
weights, buffers and the weights' gradients, which grow with depth whatever is
checkpointed; ``train_peak_bytes`` is the whole peak); ``ratio_macs`` is the recompute
MACs over one train-mode forward's MACs.
"""

from __future__ import annotations

from typing import List

import numpy as np
import torch

BATCH = 32
# name -> (family, stages); names count layers (ResNet: 3 per bottleneck + 2; DenseNet: 2 per
# dense layer + the transitions, the stem and the classifier)
MODELS = {"resnet152": ("resnet", (3, 8, 36, 3)), "densenet201": ("densenet", (6, 12, 48, 32))}
MODELS.update({f"resnet{3 * n + 2}-chain": ("resnet-chain", (1, 1, n - 3, 1)) for n in (16, 36, 64, 100)})
MODELS.update({f"densenet{2 * (50 + k) + 5}": ("densenet", (6, 12, k, 32)) for k in (24, 72)})
EXPERIMENT = "sqrt-n-checkpointing"


def _models():
    from archcost.zoo.densenet import DenseNet
    from archcost.zoo.resnet import Bottleneck, ResNet

    for name, (family, stages) in MODELS.items():
        if family == "densenet":
            yield name, family, lambda stages=stages: DenseNet(32, stages, 64)
        else:
            yield name, family, lambda stages=stages: ResNet(Bottleneck, stages)


def sqrt_n_checkpointing(batch: int = BATCH, models=None, size: int = 224) -> List[dict]:
    """One row per (model, checkpoint set); see the module doc. ``models``: (name, family,
    builder) triples instead of the default ones; ``size``: the image side."""
    from archcost.count.build import build_model
    from archcost.memory.plan import Bench, blocks, sqrt_segments
    from archcost.memory.plan_profile import forward_macs

    rows = []
    for name, family, builder in models or _models():
        model = build_model(builder, "meta", torch.float32)[0]
        x = (torch.empty(batch, 3, size, size, device="meta"),)
        bench = Bench(model, x, "sgd", 1 << 62)
        names = blocks(model)
        sets = {"none": [], "blocks": [(n,) for n in names], "sqrt-n": sqrt_segments(model, names)}
        forward = forward_macs(model, x)
        for label, segs in sets.items():
            e = bench.recompute(bench.measure(label, segs))
            r = bench.cache[frozenset(segs)]
            rows.append({
                "experiment": EXPERIMENT, "variant": f"{name}, {label}", "input_shape": f"{batch}x3x{size}x{size}",
                "params": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()),
                "macs": forward, "activation_bytes": r.activations_at_peak + r.backward_at_peak,
                "gradients_at_peak": r.gradients_at_peak,
                "train_peak_bytes": e.train_peak_bytes, "peak_phase": e.peak_phase,
                "recompute_macs": e.recompute_macs, "blocks": len(names), "segments": len(segs),
                "family": family, "model": name, "checkpoint": label, "batch_size": batch,
                "ratio_params": 1.0, "ratio_macs": e.recompute_macs / forward,
                "note": f"{len(segs)} segments over {len(names)} blocks; peak in {e.peak_phase}"})
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and b["checkpoint"] == "none")
        r["ratio_memory"] = r["activation_bytes"] / base["activation_bytes"]
    return rows


def depth_exponent(rows: List[dict], family: str, label: str) -> float:
    """The slope of log(activation memory) against log(blocks) over a family's depths (nan
    with fewer than two depths): 1 is linear in depth, 0.5 is Chen's sqrt(n); the parts that do not deepen (the stem, the
    first stages) pull both below their asymptote."""
    pts = sorted((r["blocks"], r["activation_bytes"]) for r in rows
                 if r["family"] == family and r["checkpoint"] == label)
    if len({p[0] for p in pts}) < 2:
        return float("nan")
    return round(float(np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0]), 2)


def checkpointing_claims(experiment) -> List[tuple]:
    """(source, claim, claimed, measured, explanation, tol, verdict or None) for the claims
    table; ``experiment(name)`` returns that experiment's rows by variant. Chen et al.'s
    are bounds (O(sqrt n) memory; one extra forward): a measurement under the bound holds."""
    rows = list(experiment(EXPERIMENT).values())
    by = {r["variant"]: r for r in rows}
    src = "Chen et al. 2016 (arXiv 1604.06174), section 4.1"
    r152 = by["resnet152, sqrt-n"]
    out = [(src, "sqrt(n) checkpointing costs about one extra forward (ResNet-152)", 1.0, r152["ratio_macs"],
            f"recompute MACs / forward MACs, measured: {r152['recompute_macs']:,} / {r152['macs']:,}", 0.1, None)]
    p_sqrt, p_none = depth_exponent(rows, "resnet-chain", "sqrt-n"), depth_exponent(rows, "resnet-chain", "none")
    out.append((src, "with sqrt(n) segments, feature-map memory grows as O(sqrt(n)) with depth (a ResNet chain "
                "of 16 to 100 bottlenecks)", 0.5, p_sqrt,
                f"slope of log memory against log n (feature maps and their gradients at the step's peak): "
                f"{p_sqrt:.2f} with sqrt(n) segments, {depth_exponent(rows, 'resnet-chain', 'blocks'):.2f} with "
                f"every block, {p_none:.2f} without; the stem and the stages that do not deepen are a constant "
                "that flattens all three", 0.0,
                f"holds: {p_sqrt:.2f} <= 0.5" if p_sqrt <= 0.5 else f"off: {p_sqrt:.2f} > 0.5"))
    d201 = by["densenet201, sqrt-n"]
    out.append((src, "sqrt(n) checkpointing costs about one extra forward (DenseNet-201)", 1.0, d201["ratio_macs"],
                "dense layers are not a chain (each takes every earlier output), so each is its own segment, "
                "Pleiss et al. 2017's memory-efficient DenseNet; a layer's last conv is not recomputed (the block "
                "keeps its output), so it costs about half a forward; slope of its memory with depth "
                f"{depth_exponent(rows, 'densenet', 'sqrt-n'):.2f} (without: {depth_exponent(rows, 'densenet', 'none'):.2f})",
                0.1, f"holds as a bound: {d201['ratio_macs']:.2f} of a forward" if d201["ratio_macs"] <= 1.1 else None))
    return out
