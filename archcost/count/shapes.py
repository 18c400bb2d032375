"""Output shapes of common operators on ``meta`` tensors, in closed form.

PyTorch's meta kernels for these ops are Python decompositions whose first use imports
sympy and torch._dynamo (about a second per process), and some cost milliseconds a call
(batch norm). ``ATEN_SHORTCUTS`` (``aten_shortcut``, applied by ``MetaShortcuts``) gives
their outputs for the counting and memory passes, which both work at the ATen dispatch
level: exactly what the meta kernel returns, strides and extra outputs included, for dense
contiguous inputs only. Tests run each beside the real kernel on the zoo and on edge cases.

``None`` means "not handled: run the real meta kernel"."""

import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def _tup(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _arg(args, kwargs, i, key, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(key, default)


def _new(shape, like):
    return torch.empty(shape, dtype=like.dtype, device="meta")


def _conv_spatial(x, w, stride, padding, dilation, nd):
    """Output sizes of an nd convolution, or None where the real kernel must raise."""
    spatial = []
    for n, k, s, p, d in zip(x.shape[-nd:], w.shape[2:], stride, padding, dilation):
        o = (n + 2 * p - d * (k - 1) - 1) // s + 1
        if o < 1:
            return None  # let the real kernel raise its own error
        spatial.append(o)
    return tuple(spatial)


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


def _inplace(args, kwargs):
    return args[0]


def _matmul(args, kwargs):
    a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
    if not isinstance(b, torch.Tensor) or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] \
            or a.dtype != b.dtype or b.device.type != "meta":
        return None
    return _new((a.shape[0], b.shape[1]), a)


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


# ATen-level closed forms, for the memory passes (which track allocations at the dispatcher,
# below autograd). They must return what the meta kernel returns, strides included, so
# they only take the dense, contiguous case; anything else runs the real meta kernel.
# Measured on the zoo: native_batch_norm's Python meta kernel alone cost ~2 ms a call.

def _dense(*tensors):
    return all(t.device.type == "meta" and t.is_contiguous() and t.numel() > 0 for t in tensors)


def _aten_convolution(args, kwargs):
    x, w, _, stride, padding, dilation, transposed, _, groups = args
    nd = x.dim() - 2
    if transposed or nd < 1 or not _dense(x, w) or x.dtype != w.dtype or x.shape[1] != w.shape[1] * groups:
        return None
    spatial = _conv_spatial(x, w, _tup(stride, nd), _tup(padding, nd), _tup(dilation, nd), nd)
    return None if spatial is None else _new((x.shape[0], w.shape[0]) + spatial, x)


def _aten_native_batch_norm(args, kwargs):
    x = args[0]
    if x.dim() < 2 or not _dense(x) or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return None
    # As the meta kernel: per-channel float32 statistics, in eval too (where CPU's are
    # empty: memory.py's _eval_bn_statistics leaves them out, for both).
    c = x.shape[1]
    return (_new(tuple(x.shape), x), torch.empty(c, device="meta"), torch.empty(c, device="meta"))


def _aten_addmm(args, kwargs):
    bias, a, b = args[:3]
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or not (a.dtype == b.dtype == bias.dtype) \
            or _broadcast(bias.shape, (a.shape[0], b.shape[1])) != (a.shape[0], b.shape[1]) \
            or not all(t.device.type == "meta" for t in (bias, a, b)):
        return None
    return _new((a.shape[0], b.shape[1]), a)


def _aten_cat(args, kwargs):
    tensors = list(args[0])
    if not tensors or not _dense(*tensors):
        return None
    return _cat([tensors] + list(args[1:]), kwargs)


def _aten_max_pool(args, kwargs):
    x = args[0]
    dilation = _tup(_arg(args, kwargs, 4, "dilation", 1), x.dim() - 2)
    if x.dim() not in (3, 4) or not _dense(x) or any(d != 1 for d in dilation):
        return None
    stride, padding = _arg(args, kwargs, 2, "stride", ()), _arg(args, kwargs, 3, "padding", 0)
    out = _pool((x, args[1], stride, padding, 1, _arg(args, kwargs, 5, "ceil_mode", False)), {}, 2)
    if out is None:
        return None
    return out, torch.empty(tuple(out.shape), dtype=torch.int64, device="meta")


def _aten_binary(args, kwargs):
    a, b = args[0], args[1]
    if not a.is_floating_point():
        return None  # integer division promotes; leave dtype rules to the real kernel
    if isinstance(b, torch.Tensor) and b.dim() == 0:
        # a Python number arrives as a 0-dim CPU tensor; a 0-dim operand never changes
        # the dtype of a dimensioned floating one
        ok = a.dim() > 0 and not b.is_complex() and _dense(a)
        return _new(tuple(a.shape), a) if ok else None
    if isinstance(b, torch.Tensor):
        return _binary(args, kwargs) if _dense(a, b) else None
    return _binary(args, kwargs) if type(b) in (int, float) and _dense(a) else None


def _aten_reduce(args, kwargs):
    return _reduce(args, kwargs) if _dense(args[0]) else None


def _aten_adaptive_avg_pool(args, kwargs):
    x = args[0]
    return _adaptive(args, kwargs, 2) if x.dim() in (3, 4) and _dense(x) else None


def _aten_empty_like(args, kwargs):
    return _new(tuple(args[0].shape), args[0]) if len(args) == 1 and _dense(args[0]) else None


def _aten_avg_pool(nd):
    def fn(args, kwargs):
        x = args[0]
        if x.dim() not in (nd + 1, nd + 2) or not _dense(x) or _arg(args, kwargs, 6, "divisor_override"):
            return None
        return _pool((x, args[1], _arg(args, kwargs, 2, "stride", ()), _arg(args, kwargs, 3, "padding", 0),
                      1, _arg(args, kwargs, 4, "ceil_mode", False)), {}, nd)
    return fn


def _aten_pow(args, kwargs):
    x, e = args[0], args[1]
    return _new(tuple(x.shape), x) if type(e) in (int, float) and x.is_floating_point() and _dense(x) else None


def _aten_binary_inplace(args, kwargs):
    a, b = args[0], args[1]
    if not a.is_floating_point() or (isinstance(b, torch.Tensor) and (b.dtype != a.dtype or b.device != a.device)):
        return None
    return _binary_inplace(args, kwargs)


def _aten_arange(args, kwargs):
    # arange(end, *, dtype, layout, device, pin_memory): integer end gives int64
    end = args[0]
    if len(args) != 1 or type(end) is not int or end < 0 or kwargs.get("device") != torch.device("meta") \
            or kwargs.get("dtype") not in (None, torch.int64) or kwargs.get("layout") not in (None, torch.strided):
        return None
    return torch.empty(end, dtype=torch.int64, device="meta")


def _aten_unary(args, kwargs):
    x = args[0]
    return _new(tuple(x.shape), x) if x.is_floating_point() and _dense(x) else None


def _aten_inplace(args, kwargs):
    return args[0]


def _row_major(t):
    """Dimensions laid out outermost first, as in a contiguous tensor, gaps allowed (a
    channel slice of a concatenation, what cat's backward hands each input): an
    element-wise kernel's output on such operands is contiguous."""
    if t.device.type != "meta" or t.numel() == 0 or t.dim() == 0 or t.stride()[-1] != 1:
        return False
    return all(n > 1 and st >= t.stride()[i + 1] * t.shape[i + 1]
               for i, (n, st) in enumerate(zip(t.shape[:-1], t.stride()[:-1])))


def _aten_binary_strided(args, kwargs):
    """add / mul / sub of two same-shaped operands: contiguous ones as ``_aten_binary``,
    row-major strided ones (backward's gradient sums over slices) too."""
    a, b = args[0], args[1]
    if isinstance(b, torch.Tensor) and b.dim() > 0 and a.is_floating_point() and b.dtype == a.dtype \
            and tuple(a.shape) == tuple(b.shape) and not _dense(a, b) and _row_major(a) and _row_major(b):
        return _new(tuple(a.shape), a)
    return _aten_binary(args, kwargs)


def _aten_threshold_backward(args, kwargs):
    grad, x = args[0], args[1]
    ok = grad.is_floating_point() and x.dtype == grad.dtype and tuple(x.shape) == tuple(grad.shape) and _dense(grad, x)
    return _new(tuple(grad.shape), grad) if ok else None


def _aten_native_batch_norm_backward(args, kwargs):
    # (grad_out, input, weight, running_mean, running_var, save_mean, save_invstd, train, eps,
    # output_mask) -> grad_input like the input, grad_weight and grad_bias like the weight
    # (the input's dtype without one), each only if asked
    grad, x, w = args[0], args[1], args[2]
    mask = _arg(args, kwargs, 9, "output_mask")
    if x.dim() < 2 or tuple(grad.shape) != tuple(x.shape) or grad.dtype != x.dtype or not _dense(grad, x) \
            or x.dtype not in (torch.float32, torch.float16, torch.bfloat16) or mask is None \
            or (w is not None and (w.device.type != "meta" or tuple(w.shape) != (x.shape[1],))):
        return None
    dtype = w.dtype if w is not None else x.dtype
    per_channel = [torch.empty(x.shape[1], dtype=dtype, device="meta") if m else None for m in mask[1:3]]
    return (_new(tuple(x.shape), x) if mask[0] else None, *per_channel)


VOID = object()  # a shortcut's answer for an op that returns nothing (an in-place foreach op)
_FOREACH = {"_foreach_add", "_foreach_sub", "_foreach_mul", "_foreach_div", "_foreach_addcmul", "_foreach_addcdiv",
            "_foreach_lerp", "_foreach_sqrt", "_foreach_neg", "_foreach_maximum", "_foreach_sign", "_foreach_abs"}


def _aten_foreach(args, kwargs):
    """torch.optim's foreach steps on meta parameters: an in-place op changes nothing that
    has a size; an out-of-place one returns a new tensor like each of the first list's
    (the meta kernels check that the lists match: so does this)."""
    first = args[0]
    if not isinstance(first, (list, tuple)) or not first or not _dense(*first) \
            or any(not t.is_floating_point() or t.dtype != first[0].dtype for t in first):
        return None
    for a in args[1:]:
        if isinstance(a, (list, tuple)):
            if len(a) != len(first):
                return None
            if any(isinstance(t, torch.Tensor) and (tuple(t.shape) != tuple(f.shape) or t.dtype != f.dtype
                                                    or t.device.type != "meta") for t, f in zip(a, first)):
                return None
        elif isinstance(a, torch.Tensor) and not (a.dim() == 0 and a.device.type == "cpu"):
            return None
    return [_new(tuple(t.shape), t) for t in first] if kwargs.get("_out") else VOID


def _foreach_shortcuts():
    out = {}
    for name in _FOREACH:
        for inplace in (False, True):
            packet = getattr(torch.ops.aten, name + "_" * inplace, None)
            for overload in (packet.overloads() if packet is not None else ()):
                op = getattr(packet, overload)
                if inplace:
                    out[op] = _aten_foreach
                elif overload in ("default", "Scalar", "List", "ScalarList", "Tensor"):
                    out[op] = lambda args, kwargs: _aten_foreach(args, {**kwargs, "_out": True})
    return out


ATEN_SHORTCUTS = {
    torch.ops.aten.convolution.default: _aten_convolution,
    torch.ops.aten.native_batch_norm.default: _aten_native_batch_norm,
    torch.ops.aten.addmm.default: _aten_addmm,
    torch.ops.aten.cat.default: _aten_cat,
    torch.ops.aten.max_pool2d_with_indices.default: _aten_max_pool,
    torch.ops.aten.mul.Tensor: _aten_binary,
    torch.ops.aten.add.Tensor: _aten_binary,
    torch.ops.aten.div.Tensor: _aten_binary,
    torch.ops.aten.add_.Tensor: _aten_binary_inplace,
    torch.ops.aten.mul_.Tensor: _aten_binary_inplace,
    torch.ops.aten.empty_like.default: _aten_empty_like,
    torch.ops.aten.pow.Tensor_Scalar: _aten_pow,
    torch.ops.aten.mm.default: _matmul,
    torch.ops.aten.tanh.default: _aten_unary,
    torch.ops.aten.relu.default: _aten_unary,
    torch.ops.aten.sigmoid.default: _aten_unary,
    torch.ops.aten.avg_pool2d.default: _aten_avg_pool(2),
    torch.ops.aten.avg_pool3d.default: _aten_avg_pool(3),
    torch.ops.aten.mean.dim: _aten_reduce,
    torch.ops.aten.sum.dim_IntList: _aten_reduce,
    torch.ops.aten.sub.Tensor: _aten_binary,
    torch.ops.aten._adaptive_avg_pool2d.default: _aten_adaptive_avg_pool,
    torch.ops.aten.hardtanh_.default: _aten_inplace,
    torch.ops.aten.bernoulli_.float: _aten_inplace,
    torch.ops.aten.div_.Scalar: _aten_inplace,
    torch.ops.aten.uniform_.default: _aten_inplace,  # weight init on meta: nothing to fill
    torch.ops.aten.normal_.default: _aten_inplace,
    torch.ops.aten.arange.default: _aten_arange,
    torch.ops.aten.threshold_backward.default: _aten_threshold_backward,
    torch.ops.aten.native_batch_norm_backward.default: _aten_native_batch_norm_backward,
    **_foreach_shortcuts(),
}
for _op in (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor, torch.ops.aten.sub.Tensor):
    ATEN_SHORTCUTS[_op] = _aten_binary_strided
_TAKES_KWARGS = {torch.ops.aten.arange.default, *_foreach_shortcuts()}  # foreach: alpha=, no shape effect


def aten_shortcut(func, args, kwargs):
    """The ATen op's output on dense meta inputs (``VOID``: it returns nothing), or None:
    run the real meta kernel."""
    fn = ATEN_SHORTCUTS.get(func)
    if fn is None:
        return None
    # Real tensors run their kernels: the first operand must be meta, the others meta or a
    # Python number (which arrives as a 0-dim CPU tensor).
    tensors = [x for t in args for x in (t if isinstance(t, (list, tuple)) else (t,)) if isinstance(x, torch.Tensor)]
    if tensors and (tensors[0].device.type != "meta" or any(
            x.device.type != "meta" and not (x.dim() == 0 and x.device.type == "cpu") for x in tensors[1:])):
        return None
    if func not in _TAKES_KWARGS and any(not (k == "pin_memory" and v is False) for k, v in (kwargs or {}).items()):
        return None
    try:
        return fn(args, kwargs)
    except Exception:
        return None


class MetaShortcuts(TorchDispatchMode):
    """Runs the common ATen ops of a meta forward in closed form (shapes.aten_shortcut: same
    outputs, strides included, tested against the meta kernels); everything else, and
    every op on real tensors, runs its kernel as usual."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Nothing here is ever compiled. Without this, torch wraps __torch_dispatch__ in
        # torch._dynamo.disable, whose first call imports torch._dynamo (~2 s).
        return False

    def call(self, func, args, kwargs):
        out = aten_shortcut(func, args, kwargs)
        if out is None:
            return func(*args, **(kwargs or {}))
        return None if out is VOID else out

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self.call(func, args, kwargs)
