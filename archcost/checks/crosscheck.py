"""Cross-check archcost's MACs against ``torch.utils.flop_counter`` and name every gap.

Both count at the ATen dispatch level, on the same input (archcost on meta, torch's counter on\nreal tensors, where fused kernels run), so each side is grouped by
the ATen operators it counted (convolutions; matrix products) and every difference is an
operator one side has a formula for and the other has not, named in the ``why`` column:
the operators fvcore also counts (batch norm, adaptive average pooling, upsampling, the
norms) and those archcost adds to fvcore's (attention counted whole, the fused attention
and recurrent kernels).
"""

from collections import defaultdict

import pandas as pd
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from archcost.count import rules as ops
from archcost.analysis.analyze import analyze
from archcost.count.inputs import convert, input_shapes, make_inputs
from archcost.count.build import build, built_with_examples

# ATen names, and fvcore's operator names (``--engine fvcore``: conv, linear, matmul)
from archcost.zoo.sources import resolve_model
CONVOLUTION = {"convolution", "_convolution", "convolution_overrideable", "cudnn_convolution",
               "_slow_conv2d_forward", "conv"}
MATRIX = {"mm", "addmm", "_addmm_activation", "bmm", "baddbmm", "addbmm", "mv", "addmv", "dot", "vdot",
          "_int_mm", "_scaled_mm", "einsum", "linear", "matmul"}
ATTENTION = "scaled_dot_product_attention"


def _group(op: str) -> str:
    if op in CONVOLUTION:
        return "convolution"
    if op in MATRIX:
        return "matrix product"
    if "attention" in op:  # SDPA counted whole, or one of its fused kernels
        return ATTENTION
    return ops.ATEN_LABELS.get(op, op)


_NORMS = "fvcore's rule: 5 per element (4 without affine); torch's counter does not count norms"
WHY = {
    "batch_norm": "fvcore's rule: 1 MAC per element (2 with affine) in inference; torch's counter has no formula "
                  "for normalization",
    "adaptive_avg_pool2d": "fvcore's rule: 1 MAC per input element of adaptive average pooling; torch's counter "
                           "ignores pooling",
    "adaptive_avg_pool": "1 MAC per input element of adaptive average pooling (fvcore's rule); torch's counter "
                         "ignores pooling",
    "layer_norm": _NORMS, "group_norm": _NORMS, "instance_norm": _NORMS,
    "upsample_nearest": "fvcore's rule: 1 per output element; torch's counter does not count upsampling",
    "upsample_bilinear": "fvcore's rule: 4 per output element; torch's counter does not count upsampling",
    "grid_sample": "fvcore's rule: 4 per output element (bilinear); torch's counter does not",
    "_native_multi_head_attention": "nn.MultiheadAttention's fused inference op, counted by formula "
                                    "(projections + attention); torch's counter has no formula for it",
    "_transformer_encoder_layer_fwd": "nn.TransformerEncoderLayer's fused inference op, counted by formula; "
                                      "torch's counter has no formula for it",
    ATTENTION: "attention's products Q K^T and A V (B*H*L*S*(E+Ev) MACs): fvcore has no rule for them; "
               "subtract this row to compare with fvcore",
    "rnn": "oneDNN's fused recurrent layer (mkldnn_rnn_layer), counted as its gate products; torch's counter "
           "has no formula for it",
}


def _why(op, ours, theirs):
    if ours == theirs:
        return "same count" + ("; fvcore has no rule for attention: subtract this row to compare with fvcore"
                               if op == ATTENTION else "")
    if op in WHY:
        return WHY[op]
    if op == "matrix product":
        return ("the two disagree on a matrix product: one side has a formula for an operator the other has not "
                "(see the operators listed in uncounted_ops)")
    if op.startswith("upsample"):
        return f"archcost counts {op} as 1 MAC per interpolation tap per output element; torch's counter does not"
    if theirs == 0:
        return f"archcost has a rule for {op} (archcost/analysis/ops.py); torch's counter has no formula for it"
    return f"torch's counter has a formula for {op}; archcost has none (it is listed in uncounted_ops)"


class _AttentionShare(TorchFunctionMode):
    """Beside torch's counter: the batched products it counts inside attention (an SDPA call,
    which meta runs as its math decomposition, or nn.MultiheadAttention's functional
    forward), so that they stand in their own row as archcost's attention does."""

    def __init__(self, counter: FlopCounterMode):
        super().__init__()
        self.counter, self.moved = counter, defaultdict(int)

    def _batched(self):
        return {k: v for k, v in self.counter.get_flop_counts()["Global"].items()
                if _name(k) in ("bmm", "baddbmm") or "attention" in _name(k)}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = ops.op_name(func)
        if name not in (ATTENTION, "multi_head_attention_forward"):
            return func(*args, **(kwargs or {}))
        before = self._batched()
        out = func(*args, **(kwargs or {}))
        for k, v in self._batched().items():
            self.moved[_name(k)] += v - before.get(k, 0)
        return out


def _name(op) -> str:
    return str(op).split(".")[-1] if "." in str(op) else str(op)


class _SeenOps(TorchDispatchMode):
    """The ATen operators that ran (packet names), to name the fused kernels torch's counter
    has no formula for."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func.overloadpacket)
        return func(*args, **(kwargs or {}))


_FUSED = ("attention", "rnn", "lstm", "gru")


def torch_counter_macs(name, input_size=None, batch_size=1):
    """Per-ATen-operator MACs (= FLOPs / 2) from torch's FlopCounterMode, the products inside
    attention as one ``scaled_dot_product_attention`` entry; and where it ran, and the fused
    kernels that ran there which the counter has no formula for (it counts them 0).

    It runs on real tensors of the same input (``torch.randn``, seed ``SEED``; a zoo or
    file model with its builder's own initialisation, seed ``SEED``) -- on meta, fused
    attention and recurrent kernels become the matmuls of their decomposition, which torch
    would count but never runs on CPU -- and in grad mode (its module tracker needs autograd)."""
    name, spec, builder, module = resolve_model(name, {})
    examples = None
    if spec is None and module is None and input_size is None:
        # a builder may return (model, example_inputs): analyze counts on those, and so does torch
        model, examples = built_with_examples(builder)
    if examples is None:
        shapes = input_shapes(input_size, spec.input_size if spec else None, batch_size, name=name,
                              model=module or (lambda: build(builder, "meta", torch.float32)))
        model = module if module is not None else build(builder, "cpu", torch.float32)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    inputs = convert(examples, device) if examples is not None else make_inputs(shapes, device, torch.float32)
    mode = FlopCounterMode(display=False)
    share, seen = _AttentionShare(mode), _SeenOps()
    with mode, share, seen:
        model(*inputs)
    counts = {_name(op): int(f) for op, f in mode.get_flop_counts()["Global"].items()}
    for op, f in share.moved.items():
        counts[op] -= f
        counts[ATTENTION] = counts.get(ATTENTION, 0) + f
    missed = sorted(_name(op) for op in seen.seen
                    if any(k in _name(op) for k in _FUSED) and op not in mode.flop_registry)
    where = f"real {device.type} tensors" if device.type != "meta" else "meta tensors (the module's own)"
    where += " of the builder's example inputs" if examples is not None else " of the same input (torch.randn, seed 0)"
    return {op: f // 2 for op, f in counts.items() if f}, where, missed


def cross_check(name, input_size=None, batch_size=1, **options) -> pd.DataFrame:
    """``options`` go to ``analyze`` (``engine``, ``dtype``): MACs do not depend on the dtype,
    but a model that runs in one dtype only can be checked in it."""
    ours = analyze(name, input_size=input_size, batch_size=batch_size, memory=False, **options).macs_by_aten
    theirs, where, missed = torch_counter_macs(name, input_size, batch_size)
    o_groups, t_groups = defaultdict(int), defaultdict(int)
    for op, m in ours.items():
        if m:
            o_groups[_group(op)] += m
    for op, m in theirs.items():
        t_groups[_group(op)] += m
    rows = []
    for group in sorted(set(o_groups) | set(t_groups), key=lambda g: -max(o_groups.get(g, 0), t_groups.get(g, 0))):
        a, b = o_groups.get(group, 0), t_groups.get(group, 0)
        why = _why(group, a, b)
        if group == ATTENTION and a != b and missed:
            why = (f"torch's counter has no formula for the fused kernel {', '.join(missed)} that ran on {where}: "
                   "it counts 0 there; archcost counts attention's products Q K^T and A V")
        elif group == "rnn" and a != b and missed:
            why = f"torch's counter has no formula for the fused recurrent kernel {', '.join(missed)}: it counts 0"
        elif group == "matrix product" and a != b and "einsum" in ours and "einsum" not in theirs:
            why = ("both count einsum, with different formulas: archcost by its contraction (product of all index "
                   "sizes), torch's counter by the bmm/mm it decomposes into (it adds the reductions' reshapes "
                   "and any dimension summed before the product)")
        rows.append({"operator": group, "macs": a, "torch_macs": b, "difference": a - b, "why": why})
    total_a, total_b = sum(o_groups.values()), sum(t_groups.values())
    rows.append({"operator": "(total)", "macs": total_a, "torch_macs": total_b,
                 "difference": total_a - total_b, "why": "sum of the rows above"})
    frame = pd.DataFrame(rows)
    frame.attrs.update(torch_ran_on=where, torch_missed=missed)
    return frame
