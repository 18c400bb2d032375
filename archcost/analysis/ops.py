"""Per-operator multiply-add (MAC) rules, as pure functions of shapes.

Convention, stated once: **one fused multiply-add = 1 MAC**; ``flops = 2 * macs``.
The rules are fvcore's (``fvcore/nn/jit_handles.py`` and ``_DEFAULT_SUPPORTED_OPS``), applied
to the functional calls a forward makes (``F.conv2d``, ``F.linear``, ``F.batch_norm`` ...)
rather than to a JIT graph, so that they can run on shape-only ``meta`` tensors. The tests
check that the totals equal ``fvcore.nn.FlopCountAnalysis`` on every zoo model.

An operator with no rule is never silently zero: unless it is listed in ``NO_COST`` (data
movement, and the cheap element-wise ops that fvcore also ignores) it is reported as
uncounted, with how many times it ran.
"""

from math import prod
from typing import Callable, Dict

import torch


def _shape(t):
    return tuple(t.shape)


def conv(args, kwargs, out, transposed=False):
    # fvcore conv_flop_count: N * prod(weight shape) * prod(output spatial); for a
    # transposed conv the input's spatial size. Bias adds are not counted.
    x, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
    spatial = _shape(x)[2:] if transposed else _shape(out)[2:]
    return _shape(x)[0] * prod(_shape(w)) * prod(spatial)


def linear(args, kwargs, out):
    x, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
    return prod(_shape(x)) * _shape(w)[0]


def matmul(args, kwargs, out):
    a, b = args[0], args[1]
    if b.dim() == 1:  # matrix-vector: fvcore asserts 2-d; count the products made
        return prod(_shape(a))
    return prod(_shape(a)) * _shape(b)[-1]


def rmatmul(args, kwargs, out):
    return matmul((args[1], args[0]), kwargs, out)


def addmm(args, kwargs, out):
    a, b = args[1], args[2]
    return _shape(a)[0] * _shape(a)[1] * _shape(b)[1]


def bmm(args, kwargs, out):
    n, c, t = _shape(args[0])
    return n * c * t * _shape(args[1])[-1]


def einsum(args, kwargs, out):
    # fvcore: numpy's optimal contraction path, its "Optimized FLOP count" halved.
    import numpy as np

    equation, operands = args[0], args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    arrays = [np.zeros(_shape(o)) for o in operands]
    path = np.einsum_path(equation.replace(" ", ""), *arrays, optimize="optimal")[1]
    for line in path.split("\n"):
        if "optimized flop" in line.lower():
            return int(float(line.split(":")[-1]) // 2)
    return 0


def batch_norm(args, kwargs, out):
    # fvcore batchnorm_flop_jit: eval: numel (x2 with affine); train: numel x (5 or 4).
    x = args[0]
    training = kwargs.get("training", args[5] if len(args) > 5 else False)
    weight = kwargs.get("weight", args[3] if len(args) > 3 else None)
    if training:
        return x.numel() * (5 if weight is not None else 4)
    return x.numel() * (2 if weight is not None else 1)


def _norm(affine_index, affine_key):
    def rule(args, kwargs, out):
        weight = kwargs.get(affine_key, args[affine_index] if len(args) > affine_index else None)
        return args[0].numel() * (5 if weight is not None else 4)

    return rule


def adaptive_avg_pool2d(args, kwargs, out):
    return args[0].numel()


def interpolate(args, kwargs, out):
    # fvcore counts upsample_nearest2d as 1 per output element, upsample_bilinear2d as 4.
    mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest")
    if out.dim() == 4 and mode == "nearest":
        return out.numel()
    if out.dim() == 4 and mode == "bilinear":
        return 4 * out.numel()
    return None  # fvcore has no rule: report as uncounted


def grid_sample(args, kwargs, out):
    return 4 * out.numel()


RULES: Dict[str, Callable] = {
    "conv1d": conv, "conv2d": conv, "conv3d": conv,
    "conv_transpose1d": lambda a, k, o: conv(a, k, o, transposed=True),
    "conv_transpose2d": lambda a, k, o: conv(a, k, o, transposed=True),
    "conv_transpose3d": lambda a, k, o: conv(a, k, o, transposed=True),
    "linear": linear, "matmul": matmul, "__matmul__": matmul, "__rmatmul__": rmatmul,
    "mm": matmul, "addmm": addmm, "bmm": bmm, "einsum": einsum,
    "batch_norm": batch_norm,
    "group_norm": _norm(2, "weight"), "layer_norm": _norm(2, "weight"),
    "instance_norm": _norm(3, "weight"),
    "adaptive_avg_pool2d": adaptive_avg_pool2d, "interpolate": interpolate,
    "upsample": interpolate, "grid_sample": grid_sample,
}

# Operators that cost nothing here: data movement, shape ops, and the element-wise ops
# that fvcore's _IGNORED_OPS also skips (relu, clamp, dropout ...).
NO_COST = {
    "cat", "concat", "concatenate", "stack", "chunk", "split", "split_with_sizes", "unbind",
    "flatten", "view", "reshape", "permute", "transpose", "t", "contiguous", "squeeze",
    "unsqueeze", "unsqueeze_", "expand", "expand_as", "narrow", "select", "slice", "getitem",
    "setitem", "index_select", "gather", "clone", "detach", "to", "type_as", "float", "half",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "relu", "relu_", "threshold", "clamp", "clamp_", "pad", "constant_pad_nd", "zeros", "ones",
    "empty", "full", "zeros_like", "ones_like", "empty_like", "full_like", "new_zeros",
    "new_ones", "new_empty", "new_full", "arange", "eq", "ne", "ge", "gt", "le", "lt", "floor",
    "floor_divide", "remainder", "roll", "masked_fill", "nonzero", "max", "copy_", "untyped_storage",
    "tensor", "as_tensor", "repeat", "tile", "movedim", "flip",
}

_DUNDER = {"__add__": "add", "__radd__": "add", "__iadd__": "add_", "__mul__": "mul",
           "__rmul__": "mul", "__imul__": "mul_", "__sub__": "sub", "__rsub__": "sub",
           "__isub__": "sub_", "__truediv__": "div", "__rtruediv__": "div", "__itruediv__": "div_",
           "__pow__": "pow", "__rpow__": "pow", "__neg__": "neg", "__getitem__": "getitem",
           "__setitem__": "setitem", "__matmul__": "matmul", "__rmatmul__": "matmul"}


def op_name(func) -> str:
    name = getattr(func, "__name__", None) or str(func)
    return _DUNDER.get(name, name)


def is_tensor_result(out) -> bool:
    if isinstance(out, torch.Tensor):
        return True
    return isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out)
