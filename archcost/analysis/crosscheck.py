"""Cross-check archcost's MACs (fvcore's rules) against ``torch.utils.flop_counter``.

torch's counter reports FLOPs = 2 x MACs for matrix products and convolutions only, per
aten operator. The two agree on those; the difference is the operators fvcore also
counts (batch norm, adaptive average pooling, upsampling, norms), each explained here.
"""

from collections import defaultdict

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from .analyze import _build, _make_inputs, _resolve, analyze, input_shapes

GROUPS = {  # archcost operator -> group shared with torch's aten operators
    "conv1d": "convolution", "conv2d": "convolution", "conv3d": "convolution",
    "conv_transpose1d": "convolution", "conv_transpose2d": "convolution", "conv_transpose3d": "convolution",
    "linear": "matrix product", "matmul": "matrix product", "mm": "matrix product",
    "addmm": "matrix product", "bmm": "matrix product", "einsum": "matrix product",
}
TORCH_GROUPS = {"convolution": "convolution", "_convolution": "convolution",
                "mm": "matrix product", "addmm": "matrix product", "bmm": "matrix product",
                "baddbmm": "matrix product", "_scaled_mm": "matrix product"}
WHY = {
    "batch_norm": "fvcore counts 1 MAC per element (2 with affine) for inference batch norm; "
                  "torch's counter has no formula for normalization",
    "adaptive_avg_pool2d": "fvcore counts 1 MAC per input element of adaptive average pooling; torch's counter ignores pooling",
    "interpolate": "fvcore counts upsampling (1 per output element nearest, 4 bilinear); torch's counter does not",
    "group_norm": "fvcore counts 5 per element (4 without affine); torch's counter does not count norms",
    "layer_norm": "fvcore counts 5 per element (4 without affine); torch's counter does not count norms",
    "instance_norm": "fvcore counts 5 per element (4 without affine); torch's counter does not count norms",
    "grid_sample": "fvcore counts 4 per output element (bilinear); torch's counter does not",
}


def torch_counter_macs(name, input_size=None, batch_size=1):
    """Per-aten-operator MACs (= FLOPs / 2) from torch's FlopCounterMode on meta tensors."""
    name, spec, builder, module = _resolve(name, {})
    shapes = input_shapes(input_size, spec.input_size if spec else None, batch_size)
    model = module if module is not None else _build(builder, "meta", torch.float32)
    device = next((p.device for p in model.parameters()), torch.device("meta"))
    inputs = _make_inputs(shapes, device, torch.float32)
    mode = FlopCounterMode(display=False)
    with mode, torch.no_grad():
        model(*inputs)
    return {str(op).split(".")[-1] if "." in str(op) else str(op): int(f) // 2
            for op, f in mode.get_flop_counts()["Global"].items()}


def cross_check(name, input_size=None, batch_size=1) -> pd.DataFrame:
    ours = analyze(name, input_size=input_size, batch_size=batch_size)
    theirs = torch_counter_macs(name, input_size, batch_size)
    t_groups = defaultdict(int)
    for op, m in theirs.items():
        t_groups[TORCH_GROUPS.get(op, op)] += m
    rows, o_groups = [], defaultdict(int)
    for r in ours.by_operator.itertuples():
        if r.macs:
            o_groups[GROUPS.get(r.operator, r.operator)] += r.macs
    for group in sorted(set(o_groups) | set(t_groups), key=lambda g: -o_groups.get(g, 0)):
        a, b = o_groups.get(group, 0), t_groups.get(group, 0)
        why = ("same count" if a == b else WHY.get(group, "counted by one side only"))
        rows.append({"operator": group, "macs": a, "torch_macs": b, "difference": a - b, "why": why})
    total_a, total_b = sum(o_groups.values()), sum(t_groups.values())
    rows.append({"operator": "(total)", "macs": total_a, "torch_macs": total_b,
                 "difference": total_a - total_b, "why": "sum of the rows above"})
    return pd.DataFrame(rows)
