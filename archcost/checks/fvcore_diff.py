"""fvcore's count of a model beside archcost's, the difference named by operator.

fvcore (``FlopCountAnalysis``; its "flops" are MACs: one fused multiply-add = 1) traces the
model with ``torch.jit.trace`` on real tensors and counts the traced graph's operators by
its handles; archcost counts ATen operators at dispatch. Both sides are grouped the same way
(convolutions; matrix products, whichever of linear/matmul/bmm/einsum ran them; attention;
the normalisations, pooling and upsampling fvcore also counts), so each difference is an
operator that one side counts and the other does not — attention's two products, which
fvcore has no rule for, are the usual one — or counts by another rule. fvcore's operators
without a rule (its ``unsupported_ops``) are named beside the group they belong to: a
convolution with ``padding="same"`` traces as ``aten::_convolution_mode``, which fvcore has
no handle for (its handle is ``aten::_convolution``), so fvcore counts such a convolution 0
(ConvMixer's depthwise convolutions).
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

CONVOLUTION = {"convolution", "_convolution", "_convolution_mode", "convolution_overrideable", "cudnn_convolution",
               "_slow_conv2d_forward", "conv", "conv1d", "conv2d", "conv3d"}
MATRIX = {"mm", "addmm", "_addmm_activation", "bmm", "baddbmm", "addbmm", "mv", "addmv", "dot", "vdot",
          "_int_mm", "_scaled_mm", "einsum", "linear", "matmul"}


def group(op: str) -> str:
    """One name for an operator as ATen (archcost) or fvcore's handles spell it."""
    op = str(op).replace("aten::", "").split(".")[0]
    if op in CONVOLUTION:
        return "convolution"
    if op in MATRIX:
        return "matrix product"
    if "attention" in op:
        return "attention"
    op = re.sub(r"^_*(native_)?", "", op)
    op = re.sub(r"_legit.*$|_with_indices$|_forward$|_vec$", "", op)
    return op


def fvcore_count(model, inputs: Tuple) -> Tuple[int, Dict[str, int], Dict[str, int]]:
    """fvcore's total MACs, MACs per operator and its operators without a rule (name ->
    calls), run as a user runs it: ``FlopCountAnalysis(model, inputs).total()`` in grad mode
    (attention then takes the unfused path a training step takes, as in ``--engine fvcore``).
    Real tensors: fvcore's ``torch.jit.trace`` makes a tensor's sizes traced values, which
    PyTorch's Python meta kernels cannot compare, so meta tensors do not trace."""
    from fvcore.nn import FlopCountAnalysis

    fca = FlopCountAnalysis(model, inputs if len(inputs) != 1 else inputs[0])
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = int(fca.total())
        by_op = {str(k): int(v) for k, v in fca.by_operator().items()}
        missed = {str(k): int(v) for k, v in fca.unsupported_ops().items()}
    return total, by_op, missed


def difference_by_operator(ours: Dict[str, int], theirs: Dict[str, int]) -> List[Tuple[str, int, int]]:
    """(operator group, archcost MACs, fvcore MACs) for each group where the two differ,
    largest difference first."""
    a, b = defaultdict(int), defaultdict(int)
    for op, m in ours.items():
        a[group(op)] += int(m)
    for op, m in theirs.items():
        b[group(op)] += int(m)
    rows = [(g, a.get(g, 0), b.get(g, 0)) for g in set(a) | set(b) if a.get(g, 0) != b.get(g, 0)]
    return sorted(rows, key=lambda r: (-abs(r[1] - r[2]), r[0]))


def describe(rows: List[Tuple[str, int, int]], missed: Optional[Dict[str, int]] = None) -> str:
    """'attention +178831872; upsample_bicubic2d +1024': archcost minus fvcore per operator;
    with ``missed`` (fvcore's operators without a rule, name -> calls), those of a group are
    named after it: 'convolution +1233125376 (fvcore: no rule for aten::_convolution_mode x32)'."""
    out = []
    for g, a, b in rows:
        why = [f"{op} x{n}" for op, n in sorted((missed or {}).items()) if group(op) == g]
        out.append(f"{g} {a - b:+d}" + (f" (fvcore: no rule for {', '.join(why)})" if why else ""))
    return "; ".join(out)
