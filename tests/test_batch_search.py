"""fit's search without assuming that memory grows with the batch (archcost/memory/batch_search.py)."""

from archcost.memory.batch_search import AFFINE_AT, affine, search
from archcost.memory.cuda_allocator import replay
from archcost.memory.device_events import Recording


def peak(rec):
    return replay(rec.setup + rec.events).peak_requested_bytes


def one_tensor(size):
    return Recording([("alloc", "w", 1000, "tensor")], [("alloc", 1, size, "tensor"), ("free", 1)])


def test_affine_sequences_are_derived_exactly():
    # sizes 1000 (weights) and 300*b + 40 (an activation): affine, so derived at any batch
    recs = {b: one_tensor(300 * b + 40) for b in AFFINE_AT}
    at = affine(recs)
    assert at is not None and at(17).events[0][2] == 300 * 17 + 40
    recs[5] = one_tensor(300 * 5 + 41)  # not affine at the third batch: no derivation
    assert affine(recs) is None


def test_answer_with_every_smaller_batch_fitting():
    # needed(b) = 1000 + 300*b + 40 <= 10_000  <=>  b <= 29 (1000 + 8740 = 9740; b=30: 10040)
    s = search(lambda b: one_tensor(300 * b + 40), lambda r: peak(r) <= 10_000, lambda r: peak(r) > 10_000, 1000)
    assert s.batch == 29 and s.derived and not s.breakers
    assert all(s.checked[b] for b in range(1, 30)) and not s.checked[30]


def test_odd_batches_that_allocate_more_break_the_pattern():
    # needed(b) = 100*b + (1000 if b is odd) with the weights at 0: b=7 needs 1700 > 1500,
    # so the answer is 6 although 8, 10, 12, 14 fit (800 ... 1400); batch 1 (1100) fits.
    def record(b):
        return Recording([], [("alloc", 1, 100 * b + (1000 if b % 2 else 0), "tensor"), ("free", 1)])

    s = search(record, lambda r: peak(r) <= 1500, lambda r: peak(r) > 1500, 100)
    assert s.batch == 6 and not s.derived
    assert s.breakers == [8, 10, 12, 14]


def test_nothing_fits():
    s = search(lambda b: one_tensor(100 * b), lambda r: peak(r) <= 500, lambda r: peak(r) > 500, 64)
    assert s.batch == 0


def test_measured_figures_without_growth():
    from archcost.memory.batch_search import search_measured

    # the same odd pattern as measured bytes: answer 6, breakers 8, 10, 12, 14
    s = search_measured(lambda b: 100 * b + (1000 if b % 2 else 0), 1500, 100)
    assert s.batch == 6 and s.breakers == [8, 10, 12, 14]
    # batch 1 over, batch 2 fits: nothing fits with every smaller batch, and 2 is named
    s = search_measured(lambda b: 2000 if b == 1 else 100 * b, 1500, 100)
    assert s.batch == 0 and s.breakers[:1] == [2]
