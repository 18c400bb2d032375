"""``archcost reproduce``: the design arguments of the lineage, measured.

Each experiment builds the competing designs as real modules (from the zoo where the zoo
has them) and measures them with the same engine as ``archcost table``; nothing is
computed by hand here. ``claims`` sets every numeric claim of the lecture notes (and a
few widely quoted figures) against a measurement.
"""

from __future__ import annotations

from typing import Callable, Dict, List

import torch
import torch.nn as nn

# ``macs`` is always a forward's; the training experiments add ``train_macs`` (forward + backward)
ROW_COLUMNS = ["experiment", "variant", "input_shape", "params", "macs", "train_macs", "activation_bytes",
               "saved_bytes", "ratio_params", "ratio_macs", "note"]
CLAIM_COLUMNS = ["source", "claim", "claimed", "measured", "relative_error", "verdict", "explanation"]


def _measure(module_or_name, input_size=None, **kw) -> dict:
    from archcost.analysis import analyze
    return analyze(module_or_name, input_size=input_size, **kw).row


def _rows(experiment, variants, note_by_variant=None):
    """variants: [(label, module or zoo name, input CxHxW or None)]; the first is the reference."""
    rows = []
    for label, what, size in variants:
        r = _measure(what, size)
        rows.append({"experiment": experiment, "variant": label, "input_shape": r["input_shape"],
                     "params": int(r["params"]), "macs": int(r["macs"]),
                     "activation_bytes": int(r["activation_bytes"]),
                     "saved_bytes": r["saved_bytes"], "note": (note_by_variant or {}).get(label, "")})
    ref = rows[0]
    for row in rows:
        row["ratio_params"] = row["params"] / ref["params"] if ref["params"] else float("nan")
        row["ratio_macs"] = row["macs"] / ref["macs"] if ref["macs"] else float("nan")
    return rows


def conv(cin, cout, k, **kw):
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=False, **kw)


def receptive_field(module: nn.Module) -> int:
    """Receptive field of a chain of convolutions/pools, from their kernels and strides:
    r = 1 + sum((k_i - 1) * prod(strides before i))."""
    r, jump = 1, 1
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            r += (k - 1) * jump
            jump *= s
    return r


# --- experiments -------------------------------------------------------------------------

def bottleneck():
    from archcost.zoo.googlenet import Inception

    rows = _rows("bottleneck", [
        ("5x5 conv 192->32", conv(192, 32, 5), (192, 28, 28)),
        ("1x1 192->16, then 5x5 16->32", nn.Sequential(conv(192, 16, 1), conv(16, 32, 5)), (192, 28, 28)),
    ], {"5x5 conv 192->32": "GoogLeNet's example; the notes: (5*5*192)*(28*28*32), 'about 120M'",
        "1x1 192->16, then 5x5 16->32": "the notes: 'about 12M'"})
    naive = NaiveInception(192, (64, 128, 32))
    rows += _rows("bottleneck", [
        ("inception 3a without 1x1 reductions", naive, (192, 28, 28)),
        ("inception 3a (GoogLeNet Table 1)", Inception(192, (64, 96, 128, 16, 32, 32), wide_kernel=5),
         (192, 28, 28)),
    ], {"inception 3a without 1x1 reductions": "Fig. 2(a): 1x1, 3x3, 5x5 and pooling straight on the 192 maps",
        "inception 3a (GoogLeNet Table 1)": "Fig. 2(b): 1x1 reductions 96 and 16, pool projection 32"})
    return rows


class NaiveInception(nn.Module):
    """GoogLeNet's Fig. 2(a): 1x1, 3x3 and 5x5 convolutions and 3x3 max pooling side by side
    on the input, concatenated (the pooling branch passes all input maps on)."""

    def __init__(self, cin, widths):
        super().__init__()
        c1, c3, c5 = widths
        self.branch1 = nn.Sequential(conv(cin, c1, 1), nn.ReLU(inplace=True))
        self.branch2 = nn.Sequential(conv(cin, c3, 3), nn.ReLU(inplace=True))
        self.branch3 = nn.Sequential(conv(cin, c5, 5), nn.ReLU(inplace=True))
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def stacked_3x3(c=64, size=56):
    def stack(n):
        layers = []
        for _ in range(n):
            layers += [conv(c, c, 3), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers)

    variants = [("one 5x5", nn.Sequential(conv(c, c, 5), nn.ReLU(inplace=True))), ("two 3x3", stack(2)),
                ("one 7x7", nn.Sequential(conv(c, c, 7), nn.ReLU(inplace=True))), ("three 3x3", stack(3))]
    rows = []
    for pair in (variants[:2], variants[2:]):
        part = _rows("stacked-3x3", [(label, m, (c, size, size)) for label, m in pair])
        for row, (_, m) in zip(part, pair):
            row["receptive_field"] = receptive_field(m)
            row["note"] = f"C={c}: receptive field {row['receptive_field']}x{row['receptive_field']}"
        rows += part
    return rows


def gap_vs_fc():
    rows = _rows("gap-vs-fc", [
        ("flatten 7x7x1024 -> FC-1000", nn.Sequential(nn.Flatten(), nn.Linear(7 * 7 * 1024, 1000)), (1024, 7, 7)),
        ("global average pool -> FC-1000", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000)),
         (1024, 7, 7)),
    ], {"global average pool -> FC-1000": "GoogLeNet's head (Sec. 5)"})
    from archcost.analysis import analyze
    a = analyze("vgg16")
    ly = a.layers.set_index("layer")
    head = int(ly.loc["classifier", "params"])
    total = int(a.row["params"])
    rows.append({"experiment": "gap-vs-fc", "variant": "VGG16's FC head (classifier)", "input_shape": a.row["input_shape"],
                 "params": head, "macs": int(ly.loc["classifier", "macs"]), "activation_bytes": 0,
                 "saved_bytes": float("nan"), "ratio_params": head / total,
                 "ratio_macs": int(ly.loc["classifier", "macs"]) / int(a.row["macs"]),
                 "note": f"share of VGG16's {total:,} params (ratio_params) and MACs (ratio_macs)"})
    return rows


def resnet_bottleneck():
    from archcost.zoo.resnet import BasicBlock, Bottleneck, conv1x1

    proj = nn.Sequential(conv1x1(256, 256), nn.BatchNorm2d(256))
    return _rows("resnet-bottleneck", [
        ("two 3x3, 64-d (basic block)", BasicBlock(64, 64), (64, 56, 56)),
        ("1x1-3x3-1x1, 256-d (bottleneck)", Bottleneck(256, 64), (256, 56, 56)),
        ("two 3x3, 256-d", BasicBlock(256, 256), (256, 56, 56)),
        ("bottleneck 256-d, projection shortcut", Bottleneck(256, 64, downsample=proj), (256, 56, 56)),
    ], {"1x1-3x3-1x1, 256-d (bottleneck)": "He et al. Fig. 5: similar time complexity to the 64-d basic block",
        "bottleneck 256-d, projection shortcut": "identity replaced by a 1x1 conv + BN (option B everywhere)"})


def grouped_conv():
    from archcost.zoo.alexnet import ConvNet8

    def alex(groups):
        return ConvNet8([(96, 11, 4, 0, 1, "lrn", "pool"), (256, 5, 1, 2, groups, "lrn", "pool"),
                         (384, 3, 1, 1, 1), (384, 3, 1, 1, groups), (256, 3, 1, 1, groups, "pool")],
                        pool_padding=[0, 0, 0])

    return _rows("grouped-conv", [("AlexNet, one tower (groups=1)", alex(1), (3, 227, 227)),
                                  ("AlexNet, two towers (groups=2 in conv2, 4, 5)", alex(2), (3, 227, 227))],
                 {"AlexNet, two towers (groups=2 in conv2, 4, 5)": "alexnet_paper: each GPU's conv sees half the maps"})


def depthwise_separable(c=728, size=19):
    from archcost.zoo.xception import SeparableConv2d

    return _rows("depthwise-separable", [("standard 3x3 conv", conv(c, c, 3), (c, size, size)),
                                         ("separable: depthwise 3x3 + pointwise 1x1", SeparableConv2d(c, c), (c, size, size))],
                 {"separable: depthwise 3x3 + pointwise 1x1": "Xception's middle flow: 728 maps at 19x19"})


def se_overhead():
    return _rows("se-overhead", [("ResNet-50", "resnet50", None), ("SE-ResNet-50", "se_resnet50", None)],
                 {"SE-ResNet-50": "Hu et al.: ~10% more params, <1% more computation (3.87 vs 3.86 GFLOPs)"})


def dense_connectivity(layers=6, k0=64, growth=32):
    from archcost.zoo.densenet import DenseBlock
    from archcost.zoo.resnet import BasicBlock

    with torch.device("meta"):
        block = DenseBlock(layers, k0, growth, 4).eval()
    seen = []
    handles = [m.register_forward_pre_hook(lambda mod, args: seen.append(len(args[0])))
               for m in block.values()]
    with torch.device("meta"):
        block(torch.zeros(1, k0, 56, 56))
    for h in handles:
        h.remove()
    connections = sum(seen)
    # equal depth: a ResNet stack with the same number of 3x3 conv layers at the block's output width
    width = k0 + layers * growth
    res = nn.Sequential(*[BasicBlock(width, width) for _ in range(layers // 2)])
    rows = _rows("dense-connectivity", [(f"dense block, L={layers}, k={growth}", block, (k0, 56, 56)),
                                        (f"ResNet basic blocks, {layers} convs at {width} maps", res, (width, 56, 56))])
    rows[0]["note"] = (f"{connections} connections (layer l takes l inputs); channels grow {k0} -> {width}; "
                       "concatenation keeps every earlier map alive for backward")
    rows[0]["connections"] = connections
    rows[1]["note"] = "addition: each block's output replaces its input"
    return rows


def aux_classifiers():
    from archcost.count.inputs import make_inputs
    from archcost.count.build import build
    from archcost.count.engine import run_pass
    from archcost.zoo.registry import get_spec

    spec = get_spec("googlenet_paper")
    rows = []
    for label, train in (("GoogLeNet inference (aux heads off)", False), ("GoogLeNet training (aux heads on)", True)):
        model = build(spec.builder, "meta", torch.float32).train(train)
        res = run_pass(model, make_inputs([(1,) + tuple(spec.input_size)], "meta", torch.float32))
        aux = sum(p.numel() for n, p in model.named_parameters() if n.startswith("aux"))
        rows.append({"experiment": "aux-classifiers", "variant": label, "input_shape": "1x3x224x224",
                     "params": sum(p.numel() for p in model.parameters()), "macs": res.macs,
                     "activation_bytes": res.activation_bytes, "saved_bytes": float("nan"),
                     "note": f"aux heads hold {aux:,} params, used only in training"})
    rows.append({"experiment": "aux-classifiers", "variant": "the two aux heads alone", "input_shape": "1x3x224x224",
                 "params": aux, "macs": rows[1]["macs"] - rows[0]["macs"],
                 "activation_bytes": rows[1]["activation_bytes"] - rows[0]["activation_bytes"],
                 "saved_bytes": float("nan"),
                 "note": "params of aux1.* and aux2.*; MACs and activations: training minus inference"})
    for row in rows:
        row["ratio_params"] = row["params"] / rows[0]["params"]
        row["ratio_macs"] = row["macs"] / rows[0]["macs"]
    return rows


def roofline():
    from archcost.reproduce.roofline import run as run_roofline

    rows = run_roofline()
    for row in rows:
        row["ratio_params"] = row["ratio_macs"] = float("nan")
    return rows


EXPERIMENTS: Dict[str, Callable[[], List[dict]]] = {
    "bottleneck": bottleneck, "stacked-3x3": stacked_3x3, "gap-vs-fc": gap_vs_fc,
    "resnet-bottleneck": resnet_bottleneck, "grouped-conv": grouped_conv,
    "depthwise-separable": depthwise_separable, "se-overhead": se_overhead,
    "dense-connectivity": dense_connectivity, "aux-classifiers": aux_classifiers, "roofline": roofline,
}
from archcost.reproduce.training import training_claims, training_cost, vgg16_head  # noqa: E402

from archcost.reproduce.checkpointing import EXPERIMENT as SQRT_N, checkpointing_claims, sqrt_n_checkpointing  # noqa

EXPERIMENTS.update({"training-cost": training_cost, "vgg16-head": vgg16_head, SQRT_N: sqrt_n_checkpointing})
# Columns some experiments add to ROW_COLUMNS.
EXTRA_COLUMNS = ["receptive_field", "connections", "batch_size", "arithmetic_intensity", "bytes_moved",
                 "time_bound_per_image_ms", "bound_share_memory", "ridge_flop_per_byte",
                 "model", "family", "checkpoint", "blocks", "segments", "recompute_macs", "train_peak_bytes",
                 "peak_phase"]
NAMES = list(EXPERIMENTS) + ["claims"]


# --- claims ------------------------------------------------------------------------------

def _verdict(claimed, measured, tol):
    err = (measured - claimed) / claimed
    if abs(err) <= tol:
        return err, "holds"
    return err, f"off by {err:+.0%}"


def claims(results=None):
    """Every numeric claim of the lecture notes, and widely quoted figures, measured.
    ``results``: experiment rows already measured (by name), reused instead of rerun."""
    from functools import lru_cache

    from archcost.analysis import analyze as analyze_once
    results = dict(results or {})

    def experiment(name):
        if name not in results:
            results[name] = EXPERIMENTS[name]()
        return {r["variant"]: r for r in results[name]}

    @lru_cache(maxsize=None)
    def analyze(name):
        return analyze_once(name)

    rows = []

    def add(source, claim, claimed, measured, explanation, tol=0.05, verdict=None):
        err, v = _verdict(claimed, measured, tol)
        rows.append({"source": source, "claim": claim, "claimed": claimed, "measured": measured,
                     "relative_error": err, "verdict": verdict or v, "explanation": explanation})

    le = analyze("lenet5").layers.set_index("layer")
    notes = "lecture notes, cnn-architectures.md (LeNet-5)"
    for layer, claimed, what in (("c1", 156, "(5*5*1+1)*6"), ("s2", 12, "(1+1)*6"), ("c3", 1516, "Table I connections"),
                                 ("s4", 32, "(1+1)*16"), ("c5", 48120, "(5*5*16+1)*120"), ("f6", 10164, "(120+1)*84")):
        add(notes, f"LeNet-5 {layer.upper()} has {claimed} parameters", claimed, int(le.loc[layer, "params"]),
            f"measured on lenet5's {layer}; {what}", tol=0)
    add(notes, "LeNet-5 has 60,000 trainable parameters", 60000, int(analyze("lenet5").row["params"]),
        "sum of the six layers; the RBF output's 840 weights are fixed, not trained", tol=0)
    alex = analyze("alexnet_paper")
    add("lecture notes, cnn-architectures.md / cnn-techniques.md", "AlexNet: 8 layers, 60M parameters", 60_000_000,
        int(alex.row["params"]), "alexnet_paper (two towers); torchvision's one-tower alexnet has 61,100,840", tol=0.05)
    al = alex.layers.set_index("layer")
    conv_layers = int(((al["type"] == "Conv2d") | (al["type"] == "Linear")).sum())
    add("lecture notes, cnn-architectures.md", "AlexNet has 8 weight layers (5 conv + 3 FC)", 8, conv_layers,
        "Conv2d and Linear modules of alexnet_paper", tol=0)
    from archcost.zoo.registry import get_spec

    with torch.device("meta"):
        conv1 = next(m for m in get_spec("alexnet_paper").builder().modules() if isinstance(m, nn.Conv2d))
    first = analyze_once(conv1, input_size=(3, 224, 224), memory=False).layers.iloc[0]["output_shape"]
    side = int(first.split("x")[-1])
    add("lecture notes, cnn-architectures.md", "a 224x224x3 input gives 55x55x96 after conv1 (11x11, stride 4, no padding)",
        55, side, f"224 gives {first}: (224-11)/4+1 = 54.25 -> 54; 227 gives 55 (alexnet_paper uses 227)",
        tol=0, verdict="off: 54, not 55 (holds for 227)" if side != 55 else None)
    vgg19 = int(analyze("vgg19").row["params"])
    add("lecture notes, cnn-techniques.md (table)", "VGGNet: 19 layers, 110M parameters", 110_000_000, vgg19,
        "vgg19 measured; no VGG variant has 110M (A/vgg11 has 132.9M, D/vgg16 138.4M, E/vgg19 143.7M)")
    goog = int(analyze("googlenet").row["params"])
    add("lecture notes, cnn-techniques.md (table)", "GoogLeNet: 22 layers, 4M parameters", 4_000_000, goog,
        "torchvision googlenet (BatchNorm, no aux heads); the paper says '12 times fewer parameters than "
        "AlexNet' (about 5M); no GoogLeNet variant measured here has 4M")
    v16 = analyze("vgg16").layers
    convs = int((v16["type"] == "Conv2d").sum())
    fcs = int((v16["type"] == "Linear").sum())
    add("lecture notes, cnn-architectures.md", "VGG16: 13 conv layers", 13, convs, "Conv2d modules of vgg16", tol=0)
    add("lecture notes, cnn-architectures.md", "VGG16: 3 FC (DNN) layers", 3, fcs, "Linear modules of vgg16", tol=0)
    b = experiment("bottleneck")
    add("lecture notes, imagenet-to-resnet.md", "5x5 conv, 28x28x192 -> 32 maps: about 120M multiply-adds",
        120_000_000, b["5x5 conv 192->32"]["macs"], "(5*5*192)*(28*28*32) = 120,422,400; 'about 120M' rounds it")
    add("lecture notes, imagenet-to-resnet.md", "with a 16-map 1x1 reduction: about 12M multiply-adds",
        12_000_000, b["1x1 192->16, then 5x5 16->32"]["macs"], "2,408,448 + 10,035,200 = 12,443,648")
    dense = next(iter(experiment("dense-connectivity").values()))  # the default block has L = 6
    add("lecture notes, imagenet-to-resnet.md", "an L-layer dense block has L(L+1)/2 connections (L=6: 21)",
        6 * 7 // 2, dense["connections"], "inputs counted at each layer of a 6-layer DenseNet block", tol=0)
    add("lecture notes, cnn-techniques.md", "two 3x3 convs have fewer weights than one 5x5 (18C^2 vs 25C^2)",
        18 / 25, experiment("stacked-3x3")["two 3x3"]["ratio_params"], "ratio of weights, C=64", tol=0)
    v = analyze("vgg16").row
    add("CS231n lecture 9 (widely quoted)", "VGG16: ~24M activations per image", 24_000_000, int(v["activations"]),
        "leaf outputs of vgg16, each storage once (in-place ReLUs share); summing the CS231n table's own rows "
        "gives ~15.2M including the input: its 24M total is an arithmetic slip")
    add("CS231n lecture 9 (widely quoted)", "VGG16: ~96MB of activations per image (forward, 24M x 4 bytes)",
        96_000_000, int(v["activation_bytes"]), "activation_bytes at float32; peak inference memory is lower still "
        f"({int(v['peak_bytes']):,} bytes)")
    add("CS231n lecture 9 (widely quoted)", "VGG16: 138M parameters", 138_000_000, int(v["params"]),
        "vgg16 measured", tol=0.01)
    se = experiment("se-overhead")
    add("Hu et al. 2018, Table 2", "SE-ResNet-50: ~10% more parameters than ResNet-50", 0.10,
        se["SE-ResNet-50"]["ratio_params"] - 1, "28.09M vs 25.56M; ratio - 1", tol=0.05)
    for source, claim, claimed, measured, explanation, tol in training_claims(experiment):
        add(source, claim, claimed, measured, explanation, tol=tol)
    if SQRT_N in results:  # minutes to measure: its claims only when it ran (`archcost reproduce` does)
        for source, claim, claimed, measured, explanation, tol, verdict in checkpointing_claims(experiment):
            add(source, claim, claimed, measured, explanation, tol=tol, verdict=verdict)
    return rows


def run(names, progress=None):
    """-> (experiment rows, claim rows) for the chosen names; ``progress(name)`` is called
    before each experiment."""
    results = {}
    for name in names:
        if name != "claims":
            if progress:
                progress(name)
            results[name] = EXPERIMENTS[name]()
    claim_rows = claims(results) if "claims" in names else []
    return [r for name in names if name != "claims" for r in results[name]], claim_rows
