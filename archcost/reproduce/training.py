"""``archcost reproduce`` experiments about training (issue #14), measured by the same
engine: backward MACs from the ATen ops autograd runs, memory from a whole step."""

from __future__ import annotations

from typing import List

TRAIN_MODELS = ["alexnet", "vgg16", "googlenet", "resnet50", "densenet121", "mobilenet_v2"]


def _train_row(experiment, variant, name, freeze=(), note=""):
    from archcost.analysis import analyze
    r = analyze(name, train=True, freeze=freeze, optimizer="sgd").row
    return {"experiment": experiment, "variant": variant, "input_shape": r["input_shape"],
            "params": int(r["trainable_params"]), "macs": int(r["macs"]), "train_macs": int(r["train_macs"]),
            "activation_bytes": int(r["activation_bytes"]), "saved_bytes": int(r["saved_bytes"]),
            "backward_macs": int(r["backward_macs"]),
            "train_peak_bytes": int(r["train_peak_bytes"]), "note": note}


def training_cost() -> List[dict]:
    """One training step (forward + backward) against the forward, per model: the rule of
    thumb says about 3x (backward = 2x forward: an input and a weight gradient per layer).
    ``params`` are trainable parameters, ``macs`` the forward's, ``train_macs`` the step's
    (forward + backward); ``ratio_macs`` is train_macs / macs of the same model."""
    rows = []
    for name in TRAIN_MODELS:
        row = _train_row("training-cost", name, name)
        row["ratio_params"] = 1.0
        row["ratio_macs"] = row["train_macs"] / row["macs"]
        row["note"] = (f"backward {row['backward_macs'] / row['macs']:.3f} x forward: the first "
                       "conv needs no input gradient; norms add their own")
        rows.append(row)
    return rows


def vgg16_head() -> List[dict]:
    """Fine-tuning only VGG16's classifier (features.* frozen) against training all of it:
    trainable parameters, train MACs, saved activations and the step's peak, each measured."""
    rows = [_train_row("vgg16-head", "vgg16, all layers trained", "vgg16",
                       note="sgd; train peak includes weights, gradients and the step"),
            _train_row("vgg16-head", "vgg16, features.* frozen", "vgg16", freeze=("features.*",),
                       note="no conv gets a gradient: backward is the three FC layers (fc6's input "
                            "gradient skipped too)")]
    for row in rows:
        row["ratio_params"] = row["params"] / rows[0]["params"]
        row["ratio_macs"] = row["train_macs"] / rows[0]["train_macs"]  # the step's: forwards are equal
        row["note"] += (f"; saved {row['saved_bytes'] / 2**20:.1f} MiB, train peak "
                        f"{row['train_peak_bytes'] / 2**20:.1f} MiB")
    return rows


def training_claims(experiment) -> List[dict]:
    """(claim, claimed, measured, explanation, tol) for ``claims()``; ``experiment(name)``
    returns that experiment's rows by variant."""
    cost = experiment("training-cost")
    out = []
    for name in ("vgg16", "resnet50"):
        out.append(("rule of thumb (e.g. Kaplan et al. 2020: 6N training FLOPs per token = 3 x the forward's 2N)",
                    f"a training step costs about three forwards ({name})", 3.0, cost[name]["ratio_macs"],
                    f"train_macs / macs of {name}: backward = {cost[name]['backward_macs']:,} MACs, measured from "
                    "the gradients autograd computes", 0.05))
    head = experiment("vgg16-head")
    frozen = head["vgg16, features.* frozen"]
    fc = 4096 * (512 * 7 * 7 + 1) + 4096 * (4096 + 1) + 1000 * (4096 + 1)
    out.append(("Simonyan & Zisserman 2015, Table 1 (config D): FC-4096, FC-4096, FC-1000 on 7x7x512",
                "fine-tuning only VGG16's classifier trains fc6, fc7 and fc8: 123,642,856 parameters",
                fc, frozen["params"], "trainable_params with --freeze 'features.*'", 0.0))
    return out
