"""Output shapes of common operators on ``meta`` tensors, in closed form.

PyTorch's meta kernels for these ops are Python decompositions whose first use imports
sympy and torch._dynamo (about a second per process). For a shape-only pass that cost
dominates, so the counting mode asks here first; ``None`` means "not handled: run the real
meta kernel". In-place ops and eval-mode dropout return their input, as PyTorch does, so
storage identity (and thus activation counting) is preserved. A test checks every zoo
model against the real meta kernels.
"""

import math

import torch


def _tup(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _arg(args, kwargs, i, key, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(key, default)


def _new(shape, like):
    return torch.empty(shape, dtype=like.dtype, device="meta")


def _conv(args, kwargs, nd):
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    groups = _arg(args, kwargs, 6, "groups", 1)
    if x.dim() != nd + 2 or x.shape[1] != w.shape[1] * groups:
        return None  # the real kernel raises the user-facing error
    stride = _tup(_arg(args, kwargs, 3, "stride", 1), nd)
    padding = _arg(args, kwargs, 4, "padding", 0)
    dilation = _tup(_arg(args, kwargs, 5, "dilation", 1), nd)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0,) * nd
        else:
            return None
    padding = _tup(padding, nd)
    spatial = []
    for n, k, s, p, d in zip(x.shape[-nd:], w.shape[2:], stride, padding, dilation):
        o = (n + 2 * p - d * (k - 1) - 1) // s + 1
        if o < 1:
            return None  # let the real kernel raise its own error
        spatial.append(o)
    return _new(tuple(x.shape[:-nd - 1]) + (w.shape[0],) + tuple(spatial), x)


def _pool(args, kwargs, nd):
    x = args[0]
    k = _tup(_arg(args, kwargs, 1, "kernel_size"), nd)
    stride = _arg(args, kwargs, 2, "stride", None)
    stride = k if stride is None or stride == [] or stride == () else _tup(stride, nd)
    padding = _tup(_arg(args, kwargs, 3, "padding", 0), nd)
    ceil = _arg(args, kwargs, 5, "ceil_mode", False)
    if kwargs.get("return_indices") or (len(args) > 6 and args[6] is True):
        return None
    spatial = []
    for n, kk, s, p in zip(x.shape[-nd:], k, stride, padding):
        span = n + 2 * p - (kk - 1) - 1
        o = (math.ceil(span / s) if ceil else span // s) + 1
        if ceil and (o - 1) * s >= n + p:
            o -= 1
        if o < 1 or p > kk // 2:
            return None
        spatial.append(o)
    return _new(tuple(x.shape[:-nd]) + tuple(spatial), x)


def _avg_pool(args, kwargs, nd):
    # avg_pool2d(input, kernel_size, stride, padding, ceil_mode, ...): ceil_mode is 5th
    x = args[0]
    a = list(args[:4]) + [None] + list(args[4:5])
    kw = dict(kwargs)
    return _pool(a, kw, nd) if x.dim() >= nd + 1 else None


def _adaptive(args, kwargs, nd):
    x = args[0]
    out = _tup(_arg(args, kwargs, 1, "output_size"), nd)
    spatial = tuple(n if o is None else o for n, o in zip(x.shape[-nd:], out))
    return _new(tuple(x.shape[:-nd]) + spatial, x)


def _broadcast(a, b):
    """NumPy broadcasting of two int shapes (torch.broadcast_shapes imports sympy)."""
    out = []
    for x, y in zip(reversed((1,) * (len(b) - len(a)) + tuple(a)), reversed((1,) * (len(a) - len(b)) + tuple(b))):
        if x != y and 1 not in (x, y):
            raise ValueError("shapes do not broadcast")
        out.append(max(x, y) if 1 in (x, y) else x)
    return tuple(reversed(out))


def _norm(args, kwargs):
    x, stats = args[0], _arg(args, kwargs, 1, "running_mean")
    if x.dim() < 2 or (stats is not None and stats.shape[0] != x.shape[1]):
        return None
    return _new(tuple(x.shape), x)


def _same(args, kwargs):
    return _new(tuple(args[0].shape), args[0])


def _inplace(args, kwargs):
    return args[0]


def _relu(args, kwargs):
    return args[0] if _arg(args, kwargs, 1, "inplace", False) else _new(tuple(args[0].shape), args[0])


def _hardtanh(args, kwargs):
    return args[0] if _arg(args, kwargs, 3, "inplace", False) else _new(tuple(args[0].shape), args[0])


def _dropout(args, kwargs):
    training = _arg(args, kwargs, 2, "training", True)
    inplace = _arg(args, kwargs, 3, "inplace", False)
    return args[0] if (not training or inplace) else _new(tuple(args[0].shape), args[0])


def _linear(args, kwargs):
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    if x.dim() == 0 or x.shape[-1] != w.shape[-1]:
        return None
    return _new(tuple(x.shape[:-1]) + (w.shape[0],), x)


def _cat(args, kwargs):
    tensors = list(_arg(args, kwargs, 0, "tensors"))
    dim = _arg(args, kwargs, 1, "dim", 0)
    ref = tensors[0]
    dim = dim % ref.dim()
    shape = list(ref.shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    if any(t.dim() != ref.dim() or t.dtype != ref.dtype or t.device.type != "meta"
           or [n for i, n in enumerate(t.shape) if i != dim] != [n for i, n in enumerate(ref.shape) if i != dim]
           for t in tensors):
        return None
    return _new(tuple(shape), ref)


def _binary(args, kwargs):
    a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
    if isinstance(b, torch.Tensor):
        if b.device.type != "meta" or b.dtype != a.dtype:
            return None
        return _new(_broadcast(a.shape, b.shape), a)
    if isinstance(b, (int, float)) and a.is_floating_point():
        return _new(tuple(a.shape), a)
    return None


def _binary_inplace(args, kwargs):
    a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
    if isinstance(b, torch.Tensor) and _broadcast(a.shape, b.shape) != tuple(a.shape):
        return None
    return a


def _reduce(args, kwargs):
    x = args[0]
    dim = _arg(args, kwargs, 1, "dim", None)
    keep = _arg(args, kwargs, 2, "keepdim", False)
    if dim is None or not x.is_floating_point() or "dtype" in kwargs:
        return None
    dims = {d % x.dim() for d in _tup(dim, 1)}
    shape = [1 if i in dims else n for i, n in enumerate(x.shape) if keep or i not in dims]
    return _new(tuple(shape), x)


SHORTCUTS = {
    "conv1d": lambda a, k: _conv(a, k, 1), "conv2d": lambda a, k: _conv(a, k, 2),
    "conv3d": lambda a, k: _conv(a, k, 3),
    "max_pool2d": lambda a, k: _pool(a, k, 2), "_max_pool2d": lambda a, k: _pool(a, k, 2),
    "max_pool1d": lambda a, k: _pool(a, k, 1),
    "avg_pool2d": lambda a, k: _avg_pool(a, k, 2),
    "adaptive_avg_pool2d": lambda a, k: _adaptive(a, k, 2),
    "adaptive_avg_pool1d": lambda a, k: _adaptive(a, k, 1),
    "linear": _linear, "cat": _cat, "concat": _cat,
    "batch_norm": _norm, "group_norm": _same, "layer_norm": _same, "instance_norm": _same,
    "local_response_norm": _same, "sigmoid": _same, "tanh": _same, "gelu": _same, "silu": _same,
    "relu": _relu, "relu_": _inplace, "hardtanh": _hardtanh, "hardtanh_": _inplace, "relu6": _relu,
    "dropout": _dropout,
    "add": _binary, "__add__": _binary, "__radd__": _binary, "sub": _binary, "__sub__": _binary,
    "mul": _binary, "__mul__": _binary, "__rmul__": _binary, "div": _binary, "__truediv__": _binary,
    "add_": _binary_inplace, "__iadd__": _binary_inplace, "mul_": _binary_inplace,
    "__imul__": _binary_inplace,
    "mean": _reduce, "sum": _reduce,
}


def shortcut(raw_name, args, kwargs):
    """The op's output on meta inputs, or None when it must run its real meta kernel."""
    fn = SHORTCUTS.get(raw_name)
    if fn is None or not args or not isinstance(args[0], (torch.Tensor, list, tuple)):
        return None
    first = args[0][0] if isinstance(args[0], (list, tuple)) and args[0] else args[0]
    if not isinstance(first, torch.Tensor) or first.device.type != "meta":
        return None
    try:
        return fn(args, kwargs)
    except Exception:
        return None
