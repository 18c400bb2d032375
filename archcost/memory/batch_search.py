"""The largest batch that fits, without assuming that memory grows with the batch.

The answer is the largest B such that B and every smaller batch fit. Checking every batch
costs one recorded pass each (seconds); so the run's events are recorded at three batches
(``AFFINE_AT``): where the three sequences have the same structure and every allocation's
size is affine in the batch (``size = a + b * batch``, integers, exact at all three), the
sequence at any batch is derived, and a batch costs one replay of the allocator model
(milliseconds). The answer and the batch after it are then recorded directly, so the
answer itself never rests on the derivation. Where the sequences are not affine (a model
whose shapes depend on the batch in another way), every batch up to ``SCAN_DIRECT`` is
recorded, and above it the search assumes growth, and says so.

Batches above the answer that fit although a smaller one does not ("pattern breakers") are
named, up to the batch from which even the bytes asked for at once pass the budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .device_events import Recording

AFFINE_AT = (2, 3, 5)  # batches recorded to derive the others (batch 1 is often special: BatchNorm)
SCAN_ALL = 512  # with derived sequences, every batch up to here is checked; above, a sparser search
SCAN_DIRECT = 16  # without them, every batch up to here is recorded
MAX_BREAKERS = 8


def _shape(ev):
    return (ev[0], ev[1]) + tuple(ev[3:])


def affine(recs: Dict[int, Recording]) -> Optional[Callable[[int], Recording]]:
    """A function batch -> Recording when the recordings at three batches have one structure
    and sizes affine in the batch; None otherwise."""
    (a, ra), (b, rb), (c, rc) = sorted(recs.items())
    out = []
    for part in ("setup", "events"):
        la, lb, lc = getattr(ra, part), getattr(rb, part), getattr(rc, part)
        if not (len(la) == len(lb) == len(lc)):
            return None
        sizes = []
        for ea, eb, ec in zip(la, lb, lc):
            if not (_shape(ea) == _shape(eb) == _shape(ec)):
                return None
            if ea[0] != "alloc":
                sizes.append(None)
                continue
            step, rest = divmod(eb[2] - ea[2], b - a)
            base = ea[2] - step * a
            if rest or base + step * c != ec[2]:
                return None
            sizes.append((base, step))
        out.append((la, sizes))

    def at(batch: int) -> Recording:
        parts = []
        for events, sizes in out:
            parts.append([e if s is None else (e[0], e[1], max(0, s[0] + s[1] * batch)) + tuple(e[3:])
                          for e, s in zip(events, sizes)])
        return Recording(parts[0], parts[1], list(ra.notes), ra.blas_threads)

    return at


@dataclass
class Search:
    batch: int  # the answer: it and every checked smaller batch fit; 0 when batch 1 does not
    breakers: List[int] = field(default_factory=list)  # larger batches that fit although a smaller one does not
    checked: Dict[int, bool] = field(default_factory=dict)  # batch -> fits, every batch judged
    derived: bool = False  # sequences derived from AFFINE_AT (else recorded per batch)
    every_batch_up_to: int = 0  # every batch up to here was checked
    note: str = ""


def _scan(at, fits, max_batch: int, limit: int, checked: Dict[int, bool]) -> Tuple[int, int, str]:
    """(answer, every batch up to here checked, note)."""
    def ok(b):
        if b not in checked:
            checked[b] = fits(at(b))
        return checked[b]

    top = min(limit, max_batch)
    b = 1
    while b <= top and ok(b):
        b += 1
    if b <= top or top == max_batch:
        return b - 1, min(b, max_batch), ""
    # every batch up to ``top`` fits: grow geometrically, then bisect (this part assumes growth)
    lo, hi, step = top, None, top
    while hi is None and lo < max_batch:
        cand = min(lo + step, max_batch)
        if ok(cand):
            lo, step = cand, step * 2
        else:
            hi = cand
    while hi is not None and hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo, top, (f"every batch up to {top} checked; above it the search assumed that memory grows with the "
                     f"batch ({len(checked) - top} more batches checked)")


def search(record: Callable[[int], Recording], fits: Callable[[Recording], bool],
           surely_over: Callable[[Recording], bool], max_batch: int) -> Search:
    """``record(batch)``: the run's events at a batch; ``fits(rec)``: the judgement;
    ``surely_over(rec)``: True when even the bytes asked for at once pass the budget (no
    larger batch is looked at past the first such one)."""
    recorded: Dict[int, Recording] = {}

    def rec(b):
        if b not in recorded:
            recorded[b] = record(b)
        return recorded[b]

    derive = None
    if max_batch >= max(AFFINE_AT):
        try:
            derive = affine({b: rec(b) for b in AFFINE_AT})
        except (RuntimeError, ValueError):
            derive = None
    checked: Dict[int, bool] = {}
    note = ""
    if derive:
        answer, every, note = _scan(derive, fits, max_batch, SCAN_ALL, checked)
        # the answer and the batch after it are recorded, not derived
        agree = (answer == 0 or fits(rec(answer))) and (answer == max_batch or not fits(rec(answer + 1)))
        if not agree:
            derive, checked = None, {}
            note = "the sequences derived from batches 2, 3 and 5 disagreed with a recorded one: recorded per batch"
    if not derive:
        answer, every, more = _scan(rec, fits, max_batch, SCAN_DIRECT, checked)
        note = "; ".join(n for n in (note, more) if n)
    at = derive or rec
    # Derived sequences have sizes that grow with the batch: past the first batch whose requests
    # alone pass the budget, none fits. Recorded ones may not: stop after a run of such batches.
    stop_after = 1 if derive else 4
    breakers, over = [], 0
    b = answer + 2
    while b <= max_batch and len(breakers) < MAX_BREAKERS and b <= answer + (SCAN_ALL if derive else SCAN_DIRECT):
        r = at(b)
        if surely_over(r):
            over += 1
            if over >= stop_after:
                break
        else:
            over = 0
            if b not in checked:
                checked[b] = fits(r)
            if checked[b]:
                breakers.append(b)
        b += 1
    return Search(answer, breakers, checked, derive is not None, every, note)


def search_measured(needed: Callable[[int], int], budget: int, max_batch: int,
                    beyond: Optional[Callable[[], int]] = None) -> Search:
    """The same answer for a measured figure per batch (``needed(batch)``, bytes, each a
    recorded pass): every batch up to SCAN_DIRECT is measured; when all of them fit, the
    answer above is ``beyond()`` (a search that assumes growth; said so) or else found by
    doubling and bisection. Batches past the answer that fit are named."""
    checked: Dict[int, bool] = {}
    top = min(SCAN_DIRECT, max_batch)
    b = 1
    while b <= top and needed(b) <= budget:
        checked[b] = True
        b += 1
    if b <= top:
        checked[b] = False
        answer, every, note = b - 1, b, ""
    elif top == max_batch:
        answer, every, note = max_batch, max_batch, ""
    elif beyond is not None:
        answer, every = beyond(), top
        note = f"every batch up to {top} measured; above it the search assumed that memory grows with the batch"
    else:
        answer, every, note = _scan(lambda x: x, lambda x: needed(x) <= budget, max_batch, SCAN_DIRECT, checked)
    breakers, over = [], 0
    for b in range(answer + 2, min(max_batch, answer + SCAN_DIRECT) + 1):
        fits = needed(b) <= budget
        checked[b] = fits
        over = 0 if fits else over + 1
        if fits:
            breakers.append(b)
        if over >= 4 or len(breakers) >= MAX_BREAKERS:
            break
    return Search(answer, breakers, checked, False, every, note)
