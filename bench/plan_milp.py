"""The planner's estimate solved exactly as a mixed-integer programme (scipy's HiGHS), a
reference for ``plan_search``'s branch and bound (used by ``plan_bench.py``; scipy is not
an archcost dependency).

Variables: x_i in {0, 1}, module i checkpointed; z_jk in [0, 1], kept input j alive over
the k-th stretch between the ends of the modules keeping it (alive there iff a module
keeping it and ending later is chosen: z_jk >= x_i for each). Every piece of the step's
curve: the savings covering it, less the kept inputs alive there, at least its height over
the cap. No two nested modules. Minimise the recompute MACs (in GMACs, for the solver's
tolerances). The same estimate as the search, kept inputs linear instead of branched on."""

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import lil_matrix

from archcost.memory.plan_search import _Search


def milp_optimum(p, cap, seconds=120.0):
    """(names of the optimal set or None, its estimated MACs, proven optimal)."""
    s = _Search(p, cap, set(), 0.0, 0)
    c, pieces = len(p.names), len(s.need)
    stretches = []  # (kept input j, first piece, end piece, keepers ending at or after it)
    for j in range(len(p.kept_bytes)):
        keepers = [i for i in range(c) if j in p.kept[i]]
        lo = int(s.dies[j])
        for end in sorted({int(s.hi[i]) for i in keepers}):
            if end > lo:
                stretches.append((j, lo, end, [i for i in keepers if s.hi[i] >= end]))
                lo = end
    n = c + len(stretches)
    cover = lil_matrix((pieces, n))
    for i in range(c):
        for e in range(s.lo[i], s.hi[i]):
            cover[e, i] = p.saving[i] / 1e6
    links = lil_matrix((sum(len(k) for *_, k in stretches), n))
    row = 0
    for k, (j, lo, end, keepers) in enumerate(stretches):
        for e in range(lo, end):
            cover[e, c + k] = -p.kept_bytes[j] / 1e6
        for i in keepers:
            links[row, c + k], links[row, i] = 1, -1
            row += 1
    pairs = sorted({(min(i, k), max(i, k)) for i in range(c) for k in p.conflicts[i]})
    nest = lil_matrix((len(pairs), n))
    for r, (i, k) in enumerate(pairs):
        nest[r, i] = nest[r, k] = 1
    cons = [LinearConstraint(cover.tocsr(), s.need / 1e6, np.inf)]
    if row:
        cons.append(LinearConstraint(links.tocsr(), 0, np.inf))
    if pairs:
        cons.append(LinearConstraint(nest.tocsr(), -np.inf, 1))
    cost = np.concatenate([p.macs / 1e9, np.zeros(len(stretches))])
    integrality = np.concatenate([np.ones(c), np.zeros(len(stretches))])
    r = milp(cost, constraints=cons, integrality=integrality, bounds=Bounds(0, 1),
             options={"time_limit": seconds, "mip_rel_gap": 1e-9})
    if r.x is None:
        return None, None, r.status == 0
    chosen = [p.names[i] for i in range(c) if r.x[i] > 0.5]
    return chosen, float(sum(p.macs[i] for i in range(c) if r.x[i] > 0.5)), r.status == 0
