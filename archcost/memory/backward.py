"""Backward compute, exactly: the multiply-adds of the gradients autograd really computes.

One train-mode forward on the model (meta tensors: shapes only), a loss (as in
``training.py``), then ``loss.backward()`` under a TorchDispatchMode that applies a rule
to every ATen operator the backward runs. Autograd decides what runs: a convolution
whose input needs no gradient (the first layer, anything below a frozen part) gets a
``convolution_backward`` whose output mask skips the input gradient; a frozen weight
gets none; a linear layer's backward runs one ``mm`` per gradient it needs. So the count
follows freezing and ``requires_grad`` without any rule of thumb.

Convention, one fused multiply-add = 1 MAC, as the forward. The rules, each beside the
forward rule it mirrors (``ops.py``):

- ``convolution_backward``: the input gradient (a transposed convolution of the output
  gradient) and the weight gradient (a convolution of the input with the output
  gradient) each cost the forward convolution's MACs, when requested by the output
  mask; the bias gradient is a sum (0), as bias adds are not counted forward.
- ``mm``, ``addmm``, ``bmm``, ``baddbmm``: the forward matmul rules, on the backward's
  own operands (a linear layer's input gradient is ``grad @ W``, its weight gradient
  ``grad.T @ x``: each the forward's MACs).
- scaled-dot-product attention backward: 2 x the forward's (dQ, dK, dV and the score
  gradient: four matmuls to the forward's two), as torch.utils.flop_counter counts it.
- batch / layer / group norm backward: the input gradient 2 x numel (x-hat recomputed,
  then the fused scale of the centred gradient), the weight and bias gradients numel
  (the dy * x-hat reduction); each only when requested.
- ``_adaptive_avg_pool2d_backward``: numel of the input (as fvcore counts the forward);
  an adaptive pool to 1x1 runs as ``mean``, whose backward is an expand and a division
  (element-wise: 0), so ResNet's global pool counts forward and not backward (numel MACs);
  upsampling backward: as its forward (nearest 1, bilinear 4 per output element).
- element-wise gradients (ReLU's ``threshold_backward``, sigmoid, tanh, adds, the loss's
  ``ones_like``...) cost nothing, as fvcore ignores element-wise ops forward;
  max/avg-pool backward has no rule, like its forward, and is reported as uncounted.

Each backward operator is attributed to the module whose forward created the autograd
node running it: the forward labels every new node with the innermost module running;
a pre-hook on each node tells the counter. The loss's own backward is not the model's
and is left out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from math import prod
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from archcost.count import rules as ops
from archcost.count.engine import CountingMode, _tensors, module_hooks, module_records
from archcost.memory.forward import MetaShortcuts, running_as


def _arg(args, kwargs, i, name, default=None):
    if len(args) > i:
        return args[i]
    return (kwargs or {}).get(name, default)


def _conv_macs(x, w, out, transposed):
    spatial = tuple(x.shape)[2:] if transposed else tuple(out.shape)[2:]
    return x.shape[0] * prod(w.shape) * prod(spatial)


def convolution_backward(args, kwargs, out):
    # convolution_backward(grad_output, input, weight, bias_sizes, stride, padding,
    #                      dilation, transposed, output_padding, groups, output_mask)
    grad_out, x, w = args[0], args[1], args[2]
    transposed = bool(_arg(args, kwargs, 7, "transposed", False))
    mask = _arg(args, kwargs, 10, "output_mask", (True, True, True))
    forward = _conv_macs(x, w, grad_out, transposed)
    return forward * (int(bool(mask[0])) + int(bool(mask[1])))


def _grouped_weight_excess(args, kwargs):
    groups = int(_arg(args, kwargs, 9, "groups", 1))
    mask = _arg(args, kwargs, 10, "output_mask", (True, True, True))
    if groups == 1 or not mask[1]:
        return 0
    transposed = bool(_arg(args, kwargs, 7, "transposed", False))
    return (groups - 1) * _conv_macs(args[1], args[2], args[0], transposed)


def _norm_backward(mask_index):
    def rule(args, kwargs, out):
        x = args[1]
        mask = _arg(args, kwargs, mask_index, "output_mask", (True, True, True))
        return 2 * x.numel() * int(bool(mask[0])) + x.numel() * int(bool(mask[1]) or bool(mask[2]))

    return rule


def adaptive_avg_pool_backward(args, kwargs, out):
    return args[1].numel()  # the forward input's elements


def _upsample_backward(per_element):
    def rule(args, kwargs, out):
        return per_element * args[0].numel()  # the output gradient has the forward output's shape

    return rule


def attention_backward(args, kwargs, out):
    # (grad_out, query, key, value, ...): forward = L*S*E (QK^T) + L*S*Ev (PV) per batch x head
    q, k, v = args[1], args[2], args[3]
    batch = prod(q.shape[:-2])
    forward = batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
    return 2 * forward


# The backward-only operators; a backward's mm, addmm, bmm and baddbmm are counted by
# the forward rules already registered in ops.py (same operands, same formula).
BACKWARD_RULES = {
    "convolution_backward": convolution_backward,
    # native_batch_norm_backward(grad, input, weight, rmean, rvar, smean, sinvstd, train, eps, mask)
    "native_batch_norm_backward": _norm_backward(9),
    # native_layer_norm_backward(grad, input, shape, mean, rstd, weight, bias, mask)
    "native_layer_norm_backward": _norm_backward(7),
    # native_group_norm_backward(grad, input, mean, rstd, weight, N, C, HxW, group, mask)
    "native_group_norm_backward": _norm_backward(9),
    "_adaptive_avg_pool2d_backward": adaptive_avg_pool_backward,
    "upsample_nearest2d_backward": _upsample_backward(1),
    "upsample_bilinear2d_backward": _upsample_backward(4),
    "_scaled_dot_product_flash_attention_for_cpu_backward": attention_backward,
    "_scaled_dot_product_efficient_attention_backward": attention_backward,
    "_scaled_dot_product_flash_attention_backward": attention_backward,
    "_scaled_dot_product_cudnn_attention_backward": attention_backward,
}
for _name, _rule in BACKWARD_RULES.items():
    ops.register_aten_rule(_name)(_rule)

# Backward operators that cost nothing here: data movement, and element-wise gradients.
BACKWARD_NO_COST = {
    "ones_like", "zeros_like", "new_zeros", "new_empty", "empty_like", "zeros", "full", "fill_", "zero_",
    "expand", "t", "view", "_unsafe_view", "reshape", "permute", "transpose", "squeeze", "unsqueeze", "slice",
    "select", "detach", "clone", "copy_", "contiguous", "as_strided", "alias", "cat", "stack", "split",
    "narrow", "index_add", "index_put", "slice_backward", "select_backward", "_to_copy", "constant_pad_nd",
    "sum", "mean", "add", "add_", "sub", "mul", "mul_", "div", "div_", "neg", "where", "masked_fill",
    "threshold_backward", "hardtanh_backward", "sigmoid_backward", "tanh_backward", "gelu_backward",
    "silu_backward", "leaky_relu_backward", "native_dropout_backward", "_softmax_backward_data",
    "_log_softmax_backward_data", "nll_loss_backward", "le", "lt", "ge", "gt", "eq", "ne",
}
_FREE_LABELS = {ops.aten_label(n, ()) for n in BACKWARD_NO_COST} | BACKWARD_NO_COST


@dataclass
class BackwardResult:
    macs: int  # the model's backward (the loss's own backward left out)
    by_module: Dict[str, int]  # inclusive: a module's backward, its children's included
    self_by_module: Dict[str, int]  # the nodes its own forward code created
    by_op: Counter = field(default_factory=Counter)
    uncounted: Counter = field(default_factory=Counter)
    # (groups - 1) x forward MACs over grouped convolutions whose weight gets a gradient:
    # what torch.utils.flop_counter counts on top (see traincheck.GROUPED_WHY)
    grouped_weight_excess: int = 0


class _NodeLabels(TorchFunctionMode):
    """During the forward: label each autograd node a call creates with the innermost
    module running (new nodes are found by walking back from the call's outputs to nodes
    already labelled)."""

    def __init__(self, stack: List[str]):
        super().__init__()
        self.stack = stack
        self.labels: Dict[object, str] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = self.stack[-1] if self.stack else ""
        todo = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or node in self.labels:
                continue
            self.labels[node] = name
            todo.extend(n for n, _ in node.next_functions)
        return out


class _GroupedConvs(TorchDispatchMode):
    """Sums ``_grouped_weight_excess`` over the backward's convolutions (for the check
    against torch.utils.flop_counter)."""

    def __init__(self):
        super().__init__()
        self.excess = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._overloadpacket.__name__ == "convolution_backward":
            self.excess += _grouped_weight_excess(args, kwargs or {})
        return func(*args, **(kwargs or {}))


def _scopes(name: str) -> List[str]:
    """'layer1.0.conv1' -> ['', 'layer1', 'layer1.0', 'layer1.0.conv1']."""
    parts = name.split(".") if name else []
    return [".".join(parts[:i]) for i in range(len(parts) + 1)]


def backward_pass(model: nn.Module, inputs: Tuple[torch.Tensor, ...], checkpoint=()) -> BackwardResult:
    """Count the backward of one training step of ``model`` on ``inputs`` with the engine's
    ``CountingMode`` (the rules above registered in ``ops.ATEN_RULES``); the model's mode,
    buffers and parameters' ``grad`` are left as they were. ``checkpoint``: segments run
    under activation checkpointing (``checkpointing.py``): their recomputation is counted."""
    from archcost.memory.checkpointing import checkpointed
    from archcost.memory.training import loss_of

    stack: List[str] = []
    labels = _NodeLabels(stack)
    records = module_records(model)
    scopes: List[str] = []  # the module running the current backward node, and its ancestors
    handles = []
    grads = {id(p): p.grad for p in model.parameters()}
    try:
        with running_as(model, train=True), torch.enable_grad(), MetaShortcuts(), checkpointed(model, checkpoint):
            with module_hooks(model, lambda n, a: stack.append(n), lambda n, o: stack.pop()), labels:
                out = model(*inputs)
            outs = [t for t in _tensors(out) if t.requires_grad]
            loss = loss_of(out, {})
            # The loss's own backward, outside the count: the gradient of the outputs.
            out_grads = torch.autograd.grad(loss, outs, allow_unused=True)
            pairs = [(t, g) for t, g in zip(outs, out_grads) if g is not None]
            for node, name in labels.labels.items():
                if name in records:
                    handles.append(node.register_prehook(_setter(scopes, _scopes(name))))
            counter, grouped = CountingMode(scopes, records), _GroupedConvs()
            with counter, grouped:
                torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
    finally:
        for h in handles:
            h.remove()
        for p in model.parameters():
            p.grad = grads.get(id(p))
    uncounted = Counter({op: n for op, n in counter.uncounted.items() if op not in _FREE_LABELS})
    return BackwardResult(counter.total, {n: r.macs for n, r in records.items() if r.macs},
                          {n: r.self_macs for n, r in records.items() if r.self_macs},
                          counter.by_op, uncounted, grouped.excess)


def _setter(scopes, names):
    def hook(grad_outputs):
        scopes[:] = names

    return hook


def add_backward(analysis, model: nn.Module, inputs: Tuple[torch.Tensor, ...], checkpoint=()):
    """``backward_macs`` and ``train_macs`` (= macs + backward_macs) in the summary;
    ``backward_macs`` (inclusive) and ``self_backward_macs`` per layer. With
    ``checkpoint``: ``backward_macs`` includes the recomputation, and ``recompute_macs``
    is measured as the difference to a backward without checkpointing."""
    import pandas as pd

    from archcost.memory.forward import TRAIN_FORWARD_ERRORS, no_train_note

    s, ly = analysis.summary, analysis.layers
    try:
        r = backward_pass(model, inputs, checkpoint)
        plain = backward_pass(model, inputs) if checkpoint else r
    except TRAIN_FORWARD_ERRORS as exc:
        if type(exc).__name__ == "AnalysisError":
            raise
        s["backward_macs"] = s["train_macs"] = pd.NA
        s["backward_uncounted_ops"] = ""
        s["backward_note"] = no_train_note("backward", exc)
        ly["backward_macs"] = ly["self_backward_macs"] = pd.NA
        return
    s["backward_macs"] = r.macs
    s["train_macs"] = int(s["macs"].iloc[0]) + r.macs
    if checkpoint:
        s["recompute_macs"] = r.macs - plain.macs
    s["backward_uncounted_ops"] = "; ".join(f"{op} x{n}" for op, n in sorted(r.uncounted.items()))
    s["backward_note"] = ""
    keys = ["" if n == "(model)" else n for n in ly["layer"]]
    ly["backward_macs"] = [r.by_module.get(k, 0) for k in keys]
    ly["self_backward_macs"] = [r.self_by_module.get(k, 0) for k in keys]
