"""Per-operator multiply-add (MAC) rules, as pure functions of shapes.

Convention, stated once: **one fused multiply-add = 1 MAC**; ``flops = 2 * macs``.

The rules are fvcore's (``fvcore/nn/jit_handles.py``, ``_DEFAULT_SUPPORTED_OPS``), applied
where every operator is visible whatever wraps it: the **ATen dispatch level**
(``ATEN_RULES``), below ``nn.MultiheadAttention``'s functional forward, TorchScript,
custom autograd functions and recurrent layers. A handful of composites whose fvcore rule
is not the sum of what they decompose into are counted whole at the function level
(``FUNCTION_RULES``: adaptive average pooling, which becomes a ``mean`` for a 1x1 output;
``einsum``, which fvcore counts along numpy's optimal path; instance norm; and
``scaled_dot_product_attention``, counted by one formula whichever kernel runs), and the
ATen operators beneath them are then not counted again.

Rules beyond fvcore's, each a plain multiply-add count:

- attention (``scaled_dot_product_attention`` and its fused kernels, the fast paths of
  ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer``): Q K^T and attention x V,
  ``B*H*L*S*E + B*H*L*S*Ev`` (fvcore lists it as unsupported, i.e. 0);
- ``baddbmm``, ``addbmm``, ``mv``, ``addmv``, ``dot``: the products they make;
- recurrent layers' fused CPU kernel (``mkldnn_rnn_layer``): the gate products
  ``T*B*(G*H*I + G*H*H)``, as the decomposed path's matrix products count them;
- upsampling beyond fvcore's nearest (1 per output) and bilinear (4): linear 2, bicubic
  16, trilinear 8 — one per interpolation tap.

An operator with no rule is never silently zero: unless it is in ``ATEN_NO_COST`` (views,
copies, creation, and the element-wise ops fvcore ignores) it is reported as uncounted,
with how many times it ran.
"""

from __future__ import annotations

from math import prod
from typing import Callable, Dict, Optional

import torch


def _shape(t):
    return tuple(t.shape)


def _arg(args, kwargs, i, key, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(key, default)


# --- ATen-level rules: rule(args, kwargs, out) -> MACs, or None (no rule for this call) ---

ATEN_RULES: Dict[str, Callable] = {}
ATEN_LABELS: Dict[str, str] = {}  # ATen name -> operator name shown in by_operator


def register_aten_rule(*names: str, label: Optional[str] = None):
    """Decorator: ``rule(args, kwargs, out) -> MACs`` for the ATen ops ``names`` (overload
    packet names without ``aten.``, e.g. ``"convolution"``); ``label`` is the operator name
    shown in ``by_operator`` (default: the ATen name)."""
    def add(rule):
        for n in names:
            ATEN_RULES[n] = rule
            if label:
                ATEN_LABELS[n] = label
        return rule
    return add


def conv_macs(x_shape, w_shape, out_shape, transposed=False):
    # fvcore conv_flop_count: N * prod(weight shape) * prod(output spatial); for a
    # transposed conv the input's spatial size. Bias adds are not counted.
    spatial = x_shape[2:] if transposed else out_shape[2:]
    return x_shape[0] * prod(w_shape) * prod(spatial)


@register_aten_rule("convolution", "_convolution", "convolution_overrideable")
def _convolution(args, kwargs, out):
    x, w = args[0], args[1]
    transposed = bool(_arg(args, kwargs, 6, "transposed", False))
    return conv_macs(_shape(x), _shape(w), _shape(out), transposed)


@register_aten_rule("addmm", "_addmm_activation")
def _addmm(args, kwargs, out):
    a, b = args[1], args[2]
    return _shape(a)[0] * _shape(a)[1] * _shape(b)[1]


@register_aten_rule("mm", "_int_mm")
def _mm(args, kwargs, out):
    a, b = args[0], args[1]
    return _shape(a)[0] * _shape(a)[1] * _shape(b)[1]


@register_aten_rule("bmm")
def _bmm(args, kwargs, out):
    n, c, t = _shape(args[0])
    return n * c * t * _shape(args[1])[-1]


@register_aten_rule("baddbmm")
def _baddbmm(args, kwargs, out):
    return _bmm(args[1:], kwargs, out)


@register_aten_rule("addbmm")
def _addbmm(args, kwargs, out):
    return _bmm(args[1:], kwargs, out)


@register_aten_rule("mv")
def _mv(args, kwargs, out):
    return prod(_shape(args[0]))


@register_aten_rule("addmv")
def _addmv(args, kwargs, out):
    return prod(_shape(args[1]))


@register_aten_rule("dot", "vdot")
def _dot(args, kwargs, out):
    return args[0].numel()


def _batch_norm_macs(x, weight, training):
    # fvcore batchnorm_flop_jit: eval numel (x2 with affine); train numel x (5, or 4 without affine)
    if training:
        return x.numel() * (5 if weight is not None else 4)
    return x.numel() * (2 if weight is not None else 1)


@register_aten_rule("native_batch_norm", "_native_batch_norm_legit", "cudnn_batch_norm",
                    "miopen_batch_norm", label="batch_norm")
def _native_batch_norm(args, kwargs, out):
    # (input, weight, bias, running_mean, running_var, training, momentum, eps)
    training = _arg(args, kwargs, 5, "training", False)
    if len(args) > 3 and isinstance(args[3], bool):  # _native_batch_norm_legit.no_stats(x, w, b, training, ...)
        training = args[3]
    return _batch_norm_macs(args[0], _arg(args, kwargs, 1, "weight"), bool(training))


@register_aten_rule("_native_batch_norm_legit_no_training", "_batch_norm_no_update", label="batch_norm")
def _batch_norm_eval(args, kwargs, out):
    return _batch_norm_macs(args[0], _arg(args, kwargs, 1, "weight"), False)


@register_aten_rule("_batch_norm_with_update", label="batch_norm")
def _batch_norm_train(args, kwargs, out):
    return _batch_norm_macs(args[0], _arg(args, kwargs, 1, "weight"), True)


def _norm5(x, weight):
    # fvcore norm_flop_counter: numel x 5 (4 without affine) -- "5 is just a rough estimate"
    return x.numel() * (5 if weight is not None else 4)


@register_aten_rule("native_layer_norm", label="layer_norm")
def _layer_norm(args, kwargs, out):
    return _norm5(args[0], _arg(args, kwargs, 2, "weight"))


@register_aten_rule("native_group_norm", label="group_norm")
def _group_norm(args, kwargs, out):
    return _norm5(args[0], _arg(args, kwargs, 1, "weight"))


@register_aten_rule("_adaptive_avg_pool2d", "_adaptive_avg_pool3d", label="adaptive_avg_pool")
def _adaptive_avg_pool(args, kwargs, out):
    return args[0].numel()  # fvcore: 1 per input element


def _per_output_rule(names, label, taps):
    def rule(args, kwargs, out):
        return _first(out).numel() * taps
    register_aten_rule(*names, label=label)(rule)


_per_output_rule(("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
                  "_upsample_nearest_exact2d", "_upsample_nearest_exact3d"), "upsample_nearest", 1)
_per_output_rule(("upsample_linear1d",), "upsample_linear", 2)
_per_output_rule(("upsample_bilinear2d", "_upsample_bilinear2d_aa"), "upsample_bilinear", 4)
_per_output_rule(("upsample_bicubic2d", "_upsample_bicubic2d_aa"), "upsample_bicubic", 16)
_per_output_rule(("upsample_trilinear3d",), "upsample_trilinear", 8)
_per_output_rule(("grid_sampler_2d", "cudnn_grid_sampler"), "grid_sample", 4)  # fvcore: bilinear assumed


def attention_macs(q_shape, k_shape, v_shape) -> int:
    """Q K^T plus attention x V: B*H*L*S*E + B*H*L*S*Ev. Grouped-query attention (fewer
    key/value heads) counts every query head, as each one is computed."""
    *batch, length, e = q_shape
    s, ev = k_shape[-2], v_shape[-1]
    return prod(batch) * length * s * (e + ev)


@register_aten_rule("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
                    "_scaled_dot_product_fused_attention_overrideable", label="scaled_dot_product_attention")
def _sdpa_kernel(args, kwargs, out):
    return attention_macs(_shape(args[0]), _shape(args[1]), _shape(args[2]))  # (B, H, L, E)


@register_aten_rule("_flash_attention_forward", "_efficient_attention_forward",
                    label="scaled_dot_product_attention")
def _attention_forward(args, kwargs, out):
    # these take (B, L, H, E): heads moved before the sequence
    q, k, v = ((s[0], s[2], s[1], s[3]) for s in (_shape(args[0]), _shape(args[1]), _shape(args[2])))
    return attention_macs(q, k, v)


def _mha_parts(q_shape, k_shape, embed, ffn=0):
    """(linear, attention) MACs of a packed multi-head attention on (B, L, E) inputs."""
    b, length, s = q_shape[0], q_shape[1], k_shape[1]
    linear = b * length * embed * embed * 2 + b * s * embed * embed * 2  # q, out; k, v
    return linear, b * length * s * embed * 2


@register_aten_rule("_native_multi_head_attention")
def _native_mha(args, kwargs, out):
    # (query, key, value, embed_dim, num_head, qkv_weight, ...), batch-first (B, L, E)
    q, k = args[0], args[1]
    q3 = _shape(q) if q.dim() == 3 else (1,) + _shape(q)
    k3 = _shape(k) if k.dim() == 3 else (1,) + _shape(k)
    linear, attention = _mha_parts(q3, k3, args[3])
    return {"linear": linear, "scaled_dot_product_attention": attention}


@register_aten_rule("_transformer_encoder_layer_fwd")
def _encoder_layer(args, kwargs, out):
    # (src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias, use_gelu,
    #  norm_first, eps, norm_weight_1, norm_bias_1, norm_weight_2, norm_bias_2,
    #  ffn_weight_1, ffn_bias_1, ffn_weight_2, ffn_bias_2, mask, mask_type)
    src, embed, ffn1 = args[0], args[1], args[14]
    shape = _shape(src) if src.dim() == 3 else (1,) + _shape(src)
    linear, attention = _mha_parts(shape, shape, embed)
    tokens = shape[0] * shape[1]
    linear += 2 * tokens * embed * ffn1.shape[0]
    return {"linear": linear, "scaled_dot_product_attention": attention,
            "layer_norm": 2 * _norm5(src, args[10])}


@register_aten_rule("mkldnn_rnn_layer", label="rnn")
def _mkldnn_rnn_layer(args, kwargs, out):
    # (input, w_ih, w_hh, b_ih, b_hh, hx, cx, reverse, batch_sizes, mode, hidden, layers,
    #  has_biases, bidirectional, batch_first, train): per step and sample, the gate
    # products input x W_ih^T and h x W_hh^T
    x, w_ih, w_hh = args[0], args[1], args[2]
    steps_samples = x.numel() // x.shape[-1]
    return steps_samples * (w_ih.numel() + w_hh.numel())


# --- function-level rules: counted whole, the ATen ops beneath them not again ---

def _adaptive_avg_pool_fn(args, kwargs, out):
    return args[0].numel()  # fvcore: 1 per input element (also when ATen makes it a mean)


def einsum_macs(equation, shapes) -> int:
    # fvcore einsum_flop_jit: two bmm-like patterns directly, else numpy's optimal
    # contraction path, its "Optimized FLOP count" halved (multiply-add = 1)
    import numpy as np

    equation = equation.replace(" ", "")
    letters = dict.fromkeys(c for c in equation if c.isalpha())
    equation = equation.translate({ord(c): 97 + i for i, c in enumerate(letters)})
    if equation == "abc,abd->acd":
        n, c, t = shapes[0]
        return n * c * t * shapes[-1][-1]
    if equation == "abc,adc->adb":
        n, t, g = shapes[0]
        return n * t * g * shapes[-1][1]
    path = np.einsum_path(equation, *[np.zeros(s) for s in shapes], optimize="optimal")[1]
    for line in path.split("\n"):
        if "optimized flop" in line.lower():
            return int(float(line.split(":")[-1]) // 2)
    return None


def _einsum_fn(args, kwargs, out):
    equation, operands = args[0], args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    return einsum_macs(equation, [_shape(o) for o in operands])


def _instance_norm_fn(args, kwargs, out):
    # fvcore norm_flop_counter(1) on aten::instance_norm, whichever statistics are used
    return _norm5(args[0], _arg(args, kwargs, 3, "weight"))


def _sdpa_fn(args, kwargs, out):
    q = args[0]
    k = _arg(args, kwargs, 1, "key")
    v = _arg(args, kwargs, 2, "value")
    return attention_macs(_shape(q), _shape(k), _shape(v))


FUNCTION_RULES: Dict[str, Callable] = {
    "adaptive_avg_pool1d": _adaptive_avg_pool_fn, "adaptive_avg_pool2d": _adaptive_avg_pool_fn,
    "adaptive_avg_pool3d": _adaptive_avg_pool_fn,
    "einsum": _einsum_fn, "instance_norm": _instance_norm_fn,
    "scaled_dot_product_attention": _sdpa_fn,
}

# Inside these functions (invisible below them to a TorchFunctionMode), the matrix products
# are named by what they are: nn.MultiheadAttention's projections are linear layers, its
# batched products (bmm, baddbmm, an SDPA kernel) its attention.
RELABEL = {
    "multi_head_attention_forward": {
        "addmm": "linear", "mm": "linear", "bmm": "scaled_dot_product_attention",
        "baddbmm": "scaled_dot_product_attention"},
}

# --- what costs nothing ---

# ATen ops: views, copies, creation, indexing, and the element-wise ops fvcore ignores
# (its _IGNORED_OPS: relu, clamp, dropout, comparisons ...). Not counted, not reported.
ATEN_NO_COST = frozenset("""
view _unsafe_view reshape _reshape_alias expand expand_as permute transpose t numpy_T squeeze unsqueeze
unsqueeze_ squeeze_ select slice narrow as_strided alias detach detach_ lift_fresh lift_fresh_copy
unbind split split_with_sizes unsafe_split unsafe_split_with_sizes unsafe_chunk chunk diagonal
view_as_real view_as_complex unfold movedim _to_copy to clone contiguous copy_ _copy_from
_copy_from_and_resize empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like
ones ones_like full full_like new_zeros new_ones new_full arange linspace scalar_tensor fill_ zero_
resize_ set_ cat stack constant_pad_nd index_select gather index index_put_ _index_put_impl_
_unsafe_index embedding repeat roll flip masked_fill masked_fill_ _local_scalar_dense item eq ne ge
gt le lt floor floor_divide remainder nonzero max relu relu_ threshold clamp clamp_ clamp_min
clamp_min_ clamp_max clamp_max_ dropout native_dropout bernoulli bernoulli_ uniform_ normal_
random_ rand randn randint rand_like randn_like randperm _assert_async sym_size sym_stride
sym_numel sym_storage_offset is_same_size logical_not logical_and logical_or bitwise_not
bitwise_and __and__ _unsafe_view_copy alias_copy _has_compatible_shallow_copy_type
record_stream _assert_tensor_metadata split_copy unbind_copy _nested_tensor_from_mask
_conj _neg_view _resolve_conj _resolve_neg
""".split())

# Function-level names (what a model's code calls) that cost nothing: not reported as
# uncounted even when the ATen ops beneath them have no rule.
FUNCTION_NO_COST = frozenset("""
cat concat concatenate stack chunk split split_with_sizes unbind flatten unflatten view reshape
permute transpose t contiguous squeeze unsqueeze unsqueeze_ expand expand_as narrow select slice
getitem setitem index_select gather clone detach to type_as float half double bfloat16 cpu cuda
dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout relu relu_ threshold
clamp clamp_ pad constant_pad_nd zeros ones empty full zeros_like ones_like empty_like full_like
new_zeros new_ones new_empty new_full arange eq ne ge gt le lt floor floor_divide remainder roll
masked_fill masked_fill_ nonzero max copy_ untyped_storage tensor as_tensor repeat tile movedim
flip embedding size dim numel item tolist __len__ __iter__ __bool__ __format__ __repr__
__contains__ __hash__ __get__ __setstate__ requires_grad_ data_ptr element_size stride
is_contiguous is_floating_point storage_offset shape dtype device _has_compatible_shallow_copy_type
""".split())

_DUNDER = {"__add__": "add", "__radd__": "add", "__iadd__": "add_", "__mul__": "mul",
           "__rmul__": "mul", "__imul__": "mul_", "__sub__": "sub", "__rsub__": "sub",
           "__isub__": "sub_", "__truediv__": "div", "__rtruediv__": "div", "__itruediv__": "div_",
           "__pow__": "pow", "__rpow__": "pow", "__neg__": "neg", "__getitem__": "getitem",
           "__setitem__": "setitem", "__matmul__": "matmul", "__rmatmul__": "matmul"}


def op_name(func) -> str:
    """The name a model's code used: F.conv2d -> conv2d, x + y -> add."""
    name = getattr(func, "__name__", None) or str(func)
    return _DUNDER.get(name, name)


def aten_label(packet: str, args) -> str:
    """The operator name of an ATen call seen outside any named function."""
    if packet in ("convolution", "_convolution", "convolution_overrideable"):
        nd = args[1].dim() - 2
        return f"conv_transpose{nd}d" if len(args) > 6 and args[6] else f"conv{nd}d"
    label = ATEN_LABELS.get(packet)
    if label:
        return label
    if packet.endswith("_with_indices"):
        packet = packet[:-len("_with_indices")]
    return packet.strip("_") or packet


def _first(out):
    if isinstance(out, torch.Tensor):
        return out
    return next(o for o in out if isinstance(o, torch.Tensor))


def is_tensor_result(out) -> bool:
    if isinstance(out, torch.Tensor):
        return True
    return isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out)
