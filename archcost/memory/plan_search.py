"""The least-recompute checkpoint set under a peak estimate: a branch and bound.

The estimate (``plan_profile``) is a covering problem: the step's live curve must come
under a cap at every point, and each module, if checkpointed, lowers the curve by its
``saving_bytes`` over its interval at the cost of its recompute MACs, and raises it by
the inputs it keeps (each kept input once, up to the last end of the modules keeping it);
no two chosen modules may be nested (a checkpoint inside a checkpointed module is
recomputed with it). Minimising MACs is a set-cover-like integer programme; the models
here have up to a few hundred candidates, where a depth-first branch and bound with a
fractional (LP) bound finds the optimum of the estimate in milliseconds to a second:

- time is cut into the pieces between the candidates' interval ends and the kept inputs'
  deaths; a piece whose highest point exceeds the cap has a deficit that the chosen
  modules covering it must remove (and a piece under it, slack that kept inputs use up);
- a node branches on the piece with the largest remaining deficit: one child per module
  that covers it (cheapest MACs per byte first), the earlier ones excluded in the later
  children, so the children split the space without overlap (a module that does not
  cover the piece cannot lower it: it only frees bytes elsewhere or keeps inputs);
- the bound of a node: its MACs plus, for the worst piece, the MACs of covering its
  deficit fractionally with the cheapest-per-byte modules still allowed, kept inputs left
  out (a relaxation: never above the true optimum, so pruning on it is safe).

``exclude`` removes sets already measured (a measured set's peak is known; the search asks
the estimate only for sets not yet measured). The estimate is assumed to be what it is:
an estimate; ``plan`` measures every set this returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Optional, Sequence, Set

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
    kept: List[List[int]] = field(default_factory=list)  # per candidate: the kept inputs it keeps
    kept_bytes: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (K,)
    death: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (K,) on the curve


def set_macs(p: Problem, names) -> float:
    """The estimated recompute MACs of a set: its modules' sum."""
    index = {n: i for i, n in enumerate(p.names)}
    return float(sum(p.macs[index[n]] for n in names))


def _conflicts(names: List[str]) -> List[List[int]]:
    """Per name, the indices of the names nested in or around it (each name's enclosing
    names looked up: linear in the names and their depth, not quadratic)."""
    index = {n: i for i, n in enumerate(names)}
    out: List[List[int]] = [[] for _ in names]
    for i, n in enumerate(names):
        parts = n.split(".")
        for k in range(1, len(parts)):
            j = index.get(".".join(parts[:k]))
            if j is not None:
                out[i].append(j)
                out[j].append(i)
    return out


def problem(curve: np.ndarray, costs: Sequence, kept_bytes: Optional[Dict] = None,
            death: Optional[Dict] = None) -> Problem:
    """From ``plan_profile.ModuleCost`` records (and the profile's ``kept_bytes`` and
    ``death`` of the inputs they keep); only modules that free bytes take part."""
    useful = [c for c in costs if c.saving_bytes > 0 and c.end > c.start]
    names = [c.name for c in useful]
    conflicts = _conflicts(names)
    kept_bytes, death = kept_bytes or {}, death or {}
    idents = sorted({k for c in useful for k in getattr(c, "kept", ())})
    index = {k: j for j, k in enumerate(idents)}
    return Problem(names, np.array([c.macs for c in useful], dtype=np.float64),
                   np.array([c.saving_bytes for c in useful], dtype=np.float64),
                   np.array([c.start for c in useful], dtype=np.int64), np.array([c.end for c in useful], dtype=np.int64),
                   np.asarray(curve, dtype=np.int64), conflicts,
                   [[index[k] for k in getattr(c, "kept", ())] for c in useful],
                   np.array([kept_bytes[k] for k in idents], dtype=np.float64),
                   np.array([min(death.get(k, len(curve)), len(curve)) for k in idents], dtype=np.int64))


class _Search:
    def __init__(self, p: Problem, cap: int, exclude: Set[FrozenSet[str]], deadline: float, max_nodes: int,
                 below: float = np.inf):
        self.p, self.exclude, self.deadline, self.max_nodes = p, exclude, deadline, max_nodes
        t = len(p.curve)
        cuts = sorted({0, t, *p.start.tolist(), *p.end.tolist(), *p.death.tolist()})
        cuts = [c for c in cuts if 0 <= c <= t]
        at = {c: i for i, c in enumerate(cuts)}  # a cut -> the piece starting there
        lows = np.array(cuts[:-1], dtype=np.int64)
        high = np.maximum.reduceat(p.curve, lows) if t else np.zeros(0)
        self.need = high.astype(np.float64) - cap  # > 0: a deficit; <= 0: slack a kept input may use
        self.lo = np.array([at[c] for c in p.start.tolist()], dtype=np.int64)  # pieces each candidate covers
        self.hi = np.array([at[c] for c in p.end.tolist()], dtype=np.int64)
        self.dies = np.array([at[c] for c in p.death.tolist()], dtype=np.int64)  # piece where each kept input dies
        pieces = np.arange(len(lows))
        self.cover = (self.lo[None, :] <= pieces[:, None]) & (pieces[:, None] < self.hi[None, :])  # [piece, cand]
        ratio = p.macs / p.saving
        self.order = np.argsort(ratio, kind="stable")  # cheapest MACs per byte first
        self.ratio = ratio
        # the bound's operands, columns in that order (taken once, not per node)
        # pieces that the same candidates cover need one row: the one in deepest deficit
        self.cover_o, self.group = np.unique(self.cover[:, self.order], axis=0, return_inverse=True)
        self.group = self.group.reshape(-1)
        self.saving_o, self.macs_o, self.ratio_o = p.saving[self.order], p.macs[self.order], ratio[self.order]
        self.best_cost = below  # only sets cheaper than this
        self.best: Optional[List[int]] = None
        self.nodes = 0
        self.complete = True

    def bound(self, need: np.ndarray, allowed: np.ndarray) -> float:
        """The fractional cost of the worst piece's remaining deficit (inf: cannot be
        covered), kept inputs left out: more modules can only add to those, so this is
        never above the true optimum of the node."""
        open_ = need > 0
        if not open_.any():
            return 0.0
        worst = np.full(len(self.cover_o), -np.inf)
        np.maximum.at(worst, self.group[open_], need[open_])
        open_ = worst > 0
        need = worst
        cov = self.cover_o[open_] & allowed[self.order][None, :]
        s = np.where(cov, self.saving_o[None, :], 0.0)
        c = np.where(cov, self.macs_o[None, :], 0.0)
        s_cum, c_cum = np.cumsum(s, axis=1), np.cumsum(c, axis=1)
        d = need[open_]
        if (s_cum[:, -1] < d).any():
            return np.inf
        idx = np.argmax(s_cum >= d[:, None], axis=1)
        rows = np.arange(len(d))
        before_s = s_cum[rows, idx] - s[rows, idx]
        before_c = c_cum[rows, idx] - c[rows, idx]
        return float(np.max(before_c + (d - before_s) * self.ratio_o[idx]))

    def add(self, i: int, need: np.ndarray, until: np.ndarray):
        """The need and the kept inputs' ends once candidate ``i`` is chosen: its saving
        over its pieces; each input it keeps, alive from its death (or the end another
        chosen module kept it to) up to ``i``'s end."""
        need = need.copy()
        need[self.lo[i]:self.hi[i]] -= self.p.saving[i]
        kept = [j for j in self.p.kept[i] if until[j] < self.hi[i]]
        if kept:
            until = until.copy()
            for j in kept:
                need[until[j]:self.hi[i]] += self.p.kept_bytes[j]
                until[j] = self.hi[i]
        return need, until

    def run(self, need, until, allowed, chosen: List[int], cost: float):
        self.nodes += 1
        if self.nodes > self.max_nodes or time.process_time() > self.deadline:
            self.complete = False
            return
        if cost + self.bound(need, allowed) >= self.best_cost:
            return
        if (need <= 0).all():
            if frozenset(self.p.names[i] for i in chosen) in self.exclude:
                self._extend(need, until, allowed, chosen, cost)
                return
            self.best_cost, self.best = cost, list(chosen)
            return
        # Some chosen module must cover the worst piece: only a saving lowers it, and a
        # module not covering it can only add kept inputs there. One child per module
        # covering it, the earlier ones excluded in the later children: no set twice.
        e = int(np.argmax(need))
        allowed = allowed.copy()
        for i in self.order:
            if not (allowed[i] and self.cover[e, i]):
                continue
            child = allowed.copy()
            child[i] = False
            child[self.p.conflicts[i]] = False
            self.run(*self.add(i, need, until), child, chosen + [i], cost + self.p.macs[i])
            allowed[i] = False  # the later children exclude it

    def _extend(self, need, until, allowed, chosen, cost):
        """A set already measured: its supersets (one more module each) are still open."""
        for i in self.order:
            if allowed[i]:
                child = allowed.copy()
                child[i] = False
                child[self.p.conflicts[i]] = False
                self.run(*self.add(i, need, until), child, chosen + [i], cost + self.p.macs[i])
                allowed = allowed.copy()
                allowed[i] = False


def cheapest(p: Problem, cap: int, exclude: Set[FrozenSet[str]] = frozenset(), seconds: float = 2.0,
             max_nodes: int = 200_000, below: float = np.inf):
    """(names, complete): the least-MACs set whose estimated live curve stays <= ``cap``,
    none of ``exclude``, of fewer MACs than ``below``; names None when the estimate says
    none exists. ``complete`` False: the time or node limit stopped the search (the set is
    the best found)."""
    s = _Search(p, cap, set(exclude), time.process_time() + seconds, max_nodes, below)
    if (s.need <= 0).all() and frozenset() not in s.exclude and below > 0:
        return [], True
    s.run(s.need.copy(), s.dies.copy(), np.ones(len(p.names), dtype=bool), [], 0.0)
    names = None if s.best is None else sorted((p.names[i] for i in s.best), key=p.names.index)
    return names, s.complete
