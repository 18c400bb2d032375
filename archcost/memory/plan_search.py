"""The least-recompute checkpoint set under a peak estimate: a branch and bound.

The estimate (``plan_profile``) is a covering problem: the step's live curve must come
under a cap at every point, and each module, if checkpointed, lowers the curve by its
``saving_bytes`` over its interval at the cost of its recompute MACs; no two chosen
modules may be nested (a checkpoint inside a checkpointed module is recomputed with it).
Minimising MACs is a set-cover-like integer programme; the models here have up to a few
hundred candidates, where a depth-first branch and bound with a fractional (LP) bound
finds the optimum of the estimate in milliseconds to a second:

- time is cut into the pieces between the candidates' interval ends; a piece whose
  highest point exceeds the cap has a deficit that the chosen modules covering it must
  remove;
- a node branches on the piece with the largest remaining deficit: one child per module
  that covers it (cheapest MACs per byte first), the earlier ones excluded in the later
  children, so the children split the space without overlap;
- the bound of a node: its MACs plus, for the worst piece, the MACs of covering its
  deficit fractionally with the cheapest-per-byte modules still allowed (a relaxation:
  never above the true optimum, so pruning on it is safe).

``exclude`` removes sets already measured (a measured set's peak is known; the search asks
the estimate only for sets not yet measured). The estimate is assumed to be what it is:
an estimate; ``plan`` measures every set this returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import FrozenSet, List, Optional, Sequence, Set

import numpy as np


@dataclass
class Problem:
    names: List[str]
    macs: np.ndarray  # (C,) recompute MACs of each candidate
    saving: np.ndarray  # (C,) bytes freed over its interval (> 0)
    start: np.ndarray  # (C,) interval [start, end) on the curve
    end: np.ndarray
    curve: np.ndarray  # (T,) live bytes
    conflicts: List[List[int]]  # per candidate: the candidates nested in or around it


def nested(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def problem(curve: np.ndarray, costs: Sequence) -> Problem:
    """From ``plan_profile.ModuleCost`` records; only modules that free bytes take part."""
    useful = [c for c in costs if c.saving_bytes > 0 and c.end > c.start]
    names = [c.name for c in useful]
    conflicts = [[j for j, b in enumerate(names) if j != i and nested(a, b)] for i, a in enumerate(names)]
    return Problem(names, np.array([c.macs for c in useful], dtype=np.float64),
                   np.array([c.saving_bytes for c in useful], dtype=np.float64),
                   np.array([c.start for c in useful], dtype=np.int64), np.array([c.end for c in useful], dtype=np.int64),
                   np.asarray(curve, dtype=np.int64), conflicts)


class _Search:
    def __init__(self, p: Problem, cap: int, exclude: Set[FrozenSet[str]], deadline: float, max_nodes: int):
        self.p, self.exclude, self.deadline, self.max_nodes = p, exclude, deadline, max_nodes
        cuts = sorted({0, len(p.curve), *p.start.tolist(), *p.end.tolist()})
        cuts = [c for c in cuts if 0 <= c <= len(p.curve)]
        pieces = [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
        high = np.array([p.curve[a:b].max() for a, b in pieces], dtype=np.float64)
        keep = high > cap
        self.deficit = (high - cap)[keep]
        mid = np.array([a for a, _ in pieces], dtype=np.int64)[keep]
        # cover[e, i]: candidate i's interval holds over piece e
        self.cover = (p.start[None, :] <= mid[:, None]) & (mid[:, None] < p.end[None, :])
        ratio = p.macs / p.saving
        self.order = np.argsort(ratio, kind="stable")  # cheapest MACs per byte first
        self.ratio = ratio
        self.best_cost = np.inf
        self.best: Optional[List[int]] = None
        self.nodes = 0
        self.complete = True

    def bound(self, need: np.ndarray, allowed: np.ndarray) -> float:
        """The fractional cost of the worst piece's remaining deficit (inf: cannot be covered)."""
        open_ = need > 0
        if not open_.any():
            return 0.0
        order = self.order
        cov = self.cover[open_][:, order] & allowed[order][None, :]
        s = np.where(cov, self.p.saving[order][None, :], 0.0)
        c = np.where(cov, self.p.macs[order][None, :], 0.0)
        s_cum, c_cum = np.cumsum(s, axis=1), np.cumsum(c, axis=1)
        d = need[open_]
        if (s_cum[:, -1] < d).any():
            return np.inf
        idx = np.argmax(s_cum >= d[:, None], axis=1)
        rows = np.arange(len(d))
        before_s = s_cum[rows, idx] - s[rows, idx]
        before_c = c_cum[rows, idx] - c[rows, idx]
        return float(np.max(before_c + (d - before_s) * self.ratio[order][idx]))

    def run(self, need, allowed, chosen: List[int], cost: float):
        self.nodes += 1
        if self.nodes > self.max_nodes or time.perf_counter() > self.deadline:
            self.complete = False
            return
        if cost + self.bound(need, allowed) >= self.best_cost:
            return
        if (need <= 0).all():
            if frozenset(self.p.names[i] for i in chosen) in self.exclude:
                self._extend(need, allowed, chosen, cost)
                return
            self.best_cost, self.best = cost, list(chosen)
            return
        e = int(np.argmax(need))
        allowed = allowed.copy()
        for i in self.order:
            if not (allowed[i] and self.cover[e, i]):
                continue
            child = allowed.copy()
            child[i] = False
            child[self.p.conflicts[i]] = False
            self.run(need - np.where(self.cover[:, i], self.p.saving[i], 0.0), child, chosen + [i],
                     cost + self.p.macs[i])
            allowed[i] = False  # the later children exclude it

    def _extend(self, need, allowed, chosen, cost):
        """A set already measured: its supersets (one more module each) are still open."""
        for i in self.order:
            if allowed[i]:
                child = allowed.copy()
                child[i] = False
                child[self.p.conflicts[i]] = False
                self.run(need, child, chosen + [i], cost + self.p.macs[i])
                allowed = allowed.copy()
                allowed[i] = False


def cheapest(p: Problem, cap: int, exclude: Set[FrozenSet[str]] = frozenset(), seconds: float = 2.0,
             max_nodes: int = 200_000):
    """(names, complete): the least-MACs set whose estimated live curve stays <= ``cap``,
    none of ``exclude``; names None when the estimate says none exists. ``complete``
    False: the time or node limit stopped the search (the set is the best found)."""
    s = _Search(p, cap, set(exclude), time.perf_counter() + seconds, max_nodes)
    if len(s.deficit) == 0 and frozenset() not in s.exclude:
        return [], True
    s.run(s.deficit.copy(), np.ones(len(p.names), dtype=bool), [], 0.0)
    names = None if s.best is None else sorted((p.names[i] for i in s.best), key=p.names.index)
    return names, s.complete
