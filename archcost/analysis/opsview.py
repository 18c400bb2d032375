"""``archcost ops`` with the common options: archcost's MACs per operator group, counted
with the chosen ``engine`` and ``dtype``, beside ``torch.utils.flop_counter``'s.

The grouping and the explanations are crosscheck.py's (GROUPS, TORCH_GROUPS, WHY);
this module only lets the archcost side run with any engine and dtype. MACs do not
depend on the dtype (a multiply-add is one whatever its width); the option is there so
that a model that only runs in one dtype can be cross-checked in it.
"""

from collections import defaultdict

import pandas as pd

from .analyze import analyze
from .crosscheck import GROUPS, TORCH_GROUPS, WHY, torch_counter_macs

FVCORE_NAMES = {"conv": "convolution"}  # what fvcore's own trace (--engine fvcore) calls the operator


def ops_frame(by_operator: pd.DataFrame, theirs: dict) -> pd.DataFrame:
    """One row per operator group: archcost's MACs, torch's, the difference and why."""
    t_groups = defaultdict(int)
    for op, m in theirs.items():
        t_groups[TORCH_GROUPS.get(op, op)] += m
    o_groups = defaultdict(int)
    for r in by_operator.itertuples():
        if r.macs:
            op = FVCORE_NAMES.get(r.operator, r.operator)
            o_groups[GROUPS.get(op, op)] += int(r.macs)
    rows = []
    for group in sorted(set(o_groups) | set(t_groups), key=lambda g: -o_groups.get(g, 0)):
        a, b = o_groups.get(group, 0), t_groups.get(group, 0)
        rows.append({"operator": group, "macs": a, "torch_macs": b, "difference": a - b,
                     "why": "same count" if a == b else WHY.get(group, "counted by one side only")})
    total_a, total_b = sum(o_groups.values()), sum(t_groups.values())
    rows.append({"operator": "(total)", "macs": total_a, "torch_macs": total_b,
                 "difference": total_a - total_b, "why": "sum of the rows above"})
    return pd.DataFrame(rows)


def cross_check_with(name, input_size=None, batch_size=1, dtype="float32", engine="auto") -> pd.DataFrame:
    ours = analyze(name, input_size=input_size, batch_size=batch_size, dtype=dtype, engine=engine, memory=False)
    return ops_frame(ours.by_operator, torch_counter_macs(name, input_size, batch_size))
