"""``archcost reproduce sqrt-n-checkpointing``: Chen et al. 2016 ("Training Deep Nets with
Sublinear Memory Cost", arXiv 1604.06174), measured on the deep members of the zoo.

The claim (section 4.1): cutting an n-layer chain into about sqrt(n) segments and keeping
only each segment's input, a training step needs O(sqrt(n)) memory for its feature maps,
for the price of about one extra forward (each segment's forward is run again in backward).

Measured here, per depth: ResNet (bottleneck blocks, the stage sizes of ResNet-50, -101,
-152 and He et al. 2016's ResNet-200) and DenseNet-BC (k=32: DenseNet-121, -169, -201, and
-264 from Huang et al. 2017's Table 1), at batch 32, float32, SGD (no optimizer state, so
that what grows with depth is the feature maps and the weights); each checkpoint set is
one whole training step measured by archcost's pass (``plan.Bench``):

- ``none``: no checkpointing;
- ``blocks``: every block (bottleneck, dense layer) checkpointed;
- ``sqrt-n``: Chen's segments over the n blocks (``plan.sqrt_segments``): runs of about
  sqrt(n) consecutive blocks of one ``nn.Sequential`` stage, each run one checkpoint.
  DenseNet's dense layers are not a chain: each takes every earlier layer's output (a
  ``DenseBlock`` concatenates them), so no run of them can be recomputed from its first
  input alone, and its sqrt-n set is ``blocks``.

``activation_bytes`` in a row is the step's peak less the model's state (weights, buffers;
the gradients alive at the peak are in it, as they are in Chen's figures), and
``ratio_macs`` the recompute MACs over one forward's MACs.
"""

from __future__ import annotations

from typing import List

import numpy as np
import torch

BATCH = 32
RESNETS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3),
           "resnet200": (3, 24, 36, 3)}  # He et al. 2016 (Identity Mappings), section 4.2
DENSENETS = {"densenet121": (6, 12, 24, 16), "densenet169": (6, 12, 32, 32), "densenet201": (6, 12, 48, 32),
             "densenet264": (6, 12, 64, 48)}  # Huang et al. 2017, Table 1
EXPERIMENT = "sqrt-n-checkpointing"


def _models():
    from archcost.zoo.densenet import DenseNet
    from archcost.zoo.resnet import Bottleneck, ResNet

    for name, layers in RESNETS.items():
        yield name, "resnet", lambda layers=layers: ResNet(Bottleneck, layers)
    for name, blocks in DENSENETS.items():
        yield name, "densenet", lambda blocks=blocks: DenseNet(32, blocks, 64)


def sqrt_n_checkpointing(batch: int = BATCH, models=None) -> List[dict]:
    """One row per (model, checkpoint set); see the module doc."""
    from archcost.analysis.analyze import build_model
    from archcost.memory.plan import Bench, blocks, sqrt_segments
    from archcost.memory.plan_profile import profile

    rows = []
    for name, family, builder in models or _models():
        model = build_model(builder, "meta", torch.float32)[0]
        x = (torch.empty(batch, 3, 224, 224, device="meta"),)
        bench = Bench(model, x, "sgd", 1 << 62)
        names = blocks(model)
        sets = {"none": [], "blocks": [(n,) for n in names], "sqrt-n": sqrt_segments(model, names)}
        forward = profile(bench.step, x).forward_macs  # a train-mode forward's MACs
        for label, segs in sets.items():
            e = bench.recompute(bench.measure(label, segs))
            r = bench.cache[frozenset(segs)]
            state = r.weight_bytes + r.buffer_bytes + r.optimizer_state_bytes
            rows.append({
                "experiment": EXPERIMENT, "variant": f"{name}, {label}", "input_shape": f"{batch}x3x224x224",
                "params": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()),
                "macs": forward, "activation_bytes": e.train_peak_bytes - state,
                "train_peak_bytes": e.train_peak_bytes, "peak_phase": e.peak_phase,
                "recompute_macs": e.recompute_macs, "blocks": len(names), "segments": len(segs),
                "family": family, "model": name, "checkpoint": label, "batch_size": batch,
                "ratio_params": 1.0, "ratio_macs": e.recompute_macs / forward,
                "note": f"{len(segs)} segments over {len(names)} blocks; peak in {e.peak_phase}"})
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and b["checkpoint"] == "none")
        r["ratio_memory"] = r["activation_bytes"] / base["activation_bytes"]
    return rows


def depth_slope(rows: List[dict], family: str, label: str) -> float:
    """The exponent p of activation memory ~ n^p over a family's depths (least squares on
    logs): 1 is linear in depth, 0.5 is Chen's sqrt(n)."""
    pts = [(r["blocks"], r["activation_bytes"]) for r in rows if r["family"] == family and r["checkpoint"] == label]
    xs, ys = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(xs, ys, 1)[0])


def checkpointing_claims(experiment) -> List[tuple]:
    """(source, claim, claimed, measured, explanation, tol) for the claims table;
    ``experiment(name)`` returns that experiment's rows by variant."""
    rows = list(experiment(EXPERIMENT).values())
    by = {r["variant"]: r for r in rows}
    src = "Chen et al. 2016 (arXiv 1604.06174), section 4.1"
    r152 = by["resnet152, sqrt-n"]
    out = [(src, "sqrt(n) checkpointing costs about one extra forward (ResNet-152)", 1.0, r152["ratio_macs"],
            f"recompute MACs / forward MACs, measured: {r152['recompute_macs']:,} / {r152['macs']:,}; a run's last "
            "block is recomputed too (its ReLU saves its output)", 0.1)]
    slope = depth_slope(rows, "resnet", "sqrt-n")
    out.append((src, "with sqrt(n) segments, feature-map memory grows as sqrt(n) (ResNet-50 to -200)", 0.5, slope,
                f"exponent of a power law fitted to the step's peak less weights over {len(RESNETS)} depths; no "
                f"checkpointing: {depth_slope(rows, 'resnet', 'none'):.2f}. The segments stop at stage boundaries "
                "and the first stages do not deepen, so part of the memory does not grow at all", 0.3))
    d201 = by["densenet201, sqrt-n"]
    out.append((src, "sqrt(n) checkpointing costs about one extra forward (DenseNet-201)", 1.0, d201["ratio_macs"],
                "dense layers are not a chain, so each is its own segment (Pleiss et al. 2017's memory-efficient "
                "DenseNet); slope of its memory with depth: "
                f"{depth_slope(rows, 'densenet', 'sqrt-n'):.2f} (none: {depth_slope(rows, 'densenet', 'none'):.2f})",
                0.1))
    return out
