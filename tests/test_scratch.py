"""Kernel scratch (archcost/memory/scratch.py): what an operator allocates and frees
inside itself, measured under the CPU allocator's own accounting.

The known-scratch operator is our own (``archcost_test::scratchy``, tests/scratch_op.py):
``n`` bytes of scratch by construction, whatever the machine."""

from __future__ import annotations

import types

import pytest
import torch

from archcost.memory import scratch as S
from archcost.memory import scratch_calls as C
from scratch_op import SCRATCHY, own_cache  # noqa: F401  (own_cache: an autouse fixture)


# ------------------------------------------------------------------ the events walk


def _ev(name, start, end=None, nbytes=0):
    return types.SimpleNamespace(name=lambda: name, start_ns=lambda: start, end_ns=lambda: end if end is not None else start,
                                 nbytes=lambda: nbytes, device_type=lambda: torch.autograd.DeviceType.CPU)


def test_scratch_is_the_high_water_mark_above_what_the_call_returns():
    # Inside call 0: +100 (its output), +50 (a workspace), -50: high 150, end 100 -> 50.
    # Inside call 1: +30, -30, +8: high 30, end 8 -> 22. Events outside a call count for none.
    events = [_ev("archcost.scratch.0", 10, 20), _ev("[memory]", 11, nbytes=100), _ev("[memory]", 12, nbytes=50),
              _ev("[memory]", 13, nbytes=-50), _ev("[memory]", 25, nbytes=999),
              _ev("archcost.scratch.1", 30, 40), _ev("[memory]", 31, nbytes=30), _ev("[memory]", 32, nbytes=-30),
              _ev("[memory]", 33, nbytes=8)]
    assert C.scratch_from_events(events) == {0: 150 - 100, 1: 30 - 8}


def test_a_call_that_frees_an_operand_has_no_negative_scratch():
    # The high-water mark is never below the end: scratch >= 0 (here -64 only: 0).
    events = [_ev("archcost.scratch.0", 0, 9), _ev("[memory]", 1, nbytes=-64)]
    assert C.scratch_from_events(events) == {0: 0}


# ------------------------------------------------------------------ signatures


def test_signature_tells_strides_and_dtypes_apart_but_not_scalar_values():
    add = torch.ops.aten.add.Tensor
    a = torch.empty(4, 6, device="meta")
    assert C.signature(add, (a, a), {}) != C.signature(add, (a.t(), a.t()), {})  # strides pick kernels
    assert C.signature(add, (a, a), {}) != C.signature(add, (a.half(), a.half()), {})
    # Adam's bias corrections change every step: a float's value picks no kernel.
    assert C.signature(torch.ops.aten.mul.Tensor, (a, 0.9), {}) == C.signature(torch.ops.aten.mul.Tensor, (a, 0.99), {})
    # The same call on meta and on CPU has one signature: it is measured on the CPU.
    assert C.signature(add, (a, a), {}) == C.signature(add, (torch.empty(4, 6), torch.empty(4, 6)), {})


def test_views_and_factories_have_no_scratch_by_rule():
    a = torch.empty(4, 6, device="meta")
    assert C.no_scratch_by_rule(torch.ops.aten.view.default, (a, [24]), {})
    assert C.no_scratch_by_rule(torch.ops.aten.empty.memory_format, ([4, 6],), {"device": torch.device("meta")})
    assert not C.no_scratch_by_rule(torch.ops.aten.add.Tensor, (a, a), {})


# ------------------------------------------------------------------ measuring


def test_a_call_measured_alone_has_its_known_scratch():
    x = torch.empty(8, 16, device="meta")
    key = C.signature(SCRATCHY, (x, 12345), {})
    assert C.measure_calls([(key, SCRATCHY, C._recipe((x, 12345), {}))]) == {key: 12345}


def test_an_elementwise_call_on_contiguous_operands_has_none():
    # TensorIterator writes an add of two same-shaped contiguous operands straight into
    # its output: the only allocation is what it returns.
    add = torch.ops.aten.add.Tensor
    x = torch.empty(256, 256, device="meta")
    key = C.signature(add, (x, x), {})
    assert C.measure_calls([(key, add, C._recipe((x, x), {}))]) == {key: 0}


def test_in_situ_gives_each_call_its_scratch_in_order():
    def run(mode):
        a = torch.zeros(10, 10)
        with mode:
            b = SCRATCHY(a, 1000)
            SCRATCHY(b, 5000)

    assert C.in_situ(run) == [(str(SCRATCHY), 1000), (str(SCRATCHY), 5000)]


def test_measuring_inside_a_running_profiler_is_refused():
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]):
        with pytest.raises(RuntimeError, match="already running"):
            C.in_situ(lambda mode: None)


# ------------------------------------------------------------------ providers


def _call(provider, n, meta=True):
    x = torch.empty(2, 3, device="meta" if meta else "cpu")
    return provider.bytes(SCRATCHY, (x, n), {})


def test_positional_takes_the_kth_figure_where_the_ops_agree_and_measures_elsewhere():
    trace = [(str(SCRATCHY), 700), (str(torch.ops.aten.add.Tensor), 0)]
    p = S.Positional(trace)
    assert _call(p, 111) == 700  # the in-situ figure for call 0, whatever this call's n
    assert _call(p, 4096) == 0 and p.pending  # call 1 differs from the trace: queued
    assert p.measure_pending()
    p.reset()
    assert _call(p, 111) == 700 and _call(p, 4096) == 4096 and p.direct_calls == 1


def test_batch_scaled_extends_a_linear_call_and_measures_a_nonlinear_one():
    b0, b1, b2 = S.REFERENCE_BATCHES
    op = str(SCRATCHY)
    # call 0: 1000 + 300 * batch (linear); call 1: 5000 at every batch (a weight's reorder:
    # linear with slope 0); call 2: 10, 10, 9000 (not linear: measured at the batch itself).
    refs = {b0: [(op, 1000 + 300 * b0), (op, 5000), (op, 10)],
            b1: [(op, 1000 + 300 * b1), (op, 5000), (op, 10)],
            b2: [(op, 1000 + 300 * b2), (op, 5000), (op, 9000)]}
    p = S.BatchScaled(refs, 45)
    assert _call(p, 1) == 1000 + 300 * 45
    assert _call(p, 1) == 5000
    assert _call(p, 2222) == 0 and p.pending
    p.measure_pending()
    p.reset()
    assert [_call(p, 1), _call(p, 1), _call(p, 2222)] == [1000 + 300 * 45, 5000, 2222]


def test_figures_are_kept_on_disk_for_the_next_process(monkeypatch):
    x = torch.empty(8, 16, device="meta")
    key = C.signature(SCRATCHY, (x, 777), {})
    C.measure_calls([(key, SCRATCHY, C._recipe((x, 777), {}))])
    assert C.cache_file().exists()
    C.forget()  # a new process: only the file remains
    monkeypatch.setattr(S, "measure_calls", lambda calls: pytest.fail("measured again"))
    p = S.Direct()
    assert p.bytes(SCRATCHY, (x, 777), {}) == 777 and not p.pending


def test_source_measures_a_pass_once_and_reuses_its_trace(monkeypatch):
    """``ScratchSource`` with a toy pass: the tracked run asks the provider for each
    call; the real run marks the same calls. Two batches above the direct limit reuse
    the reference traces; the figures follow the op's n = 100 * batch (linear)."""
    real_runs = []

    def run_meta(batch, provider):
        x = torch.empty(batch, 4, device="meta")
        return provider.bytes(SCRATCHY, (x, 100 * batch), {})

    def run_real(batch, mode):
        real_runs.append(batch)
        with mode:
            SCRATCHY(torch.zeros(batch, 4), 100 * batch)

    src = S.ScratchSource(run_meta, run_real)
    assert src.at(3)[0] == 300 and real_runs == [3]
    assert src.at(3)[0] == 300 and real_runs == [3]  # cached by the pass's signatures
    assert src.at(40)[0] == 4000 and src.at(41)[0] == 4100
    assert sorted(real_runs) == sorted([3, *S.REFERENCE_BATCHES])


def test_align_skips_a_call_only_the_real_run_makes():
    # The CPU run restrides once (as_strided_) where meta does not; the calls after it
    # keep their own figures, not their neighbour's.
    ops = ["aten.mean.dim", "aten.view.default", "aten.addmm.default"]
    real = [("aten.mean.dim", 12), ("aten.as_strided_.default", 0), ("aten.view.default", 0),
            ("aten.addmm.default", 4096)]
    assert S.align(ops, real) == [("aten.mean.dim", 12), ("aten.view.default", 0), ("aten.addmm.default", 4096)]
    # A call the real run never made gets None (measured alone later).
    assert S.align(["aten.mm.default", "aten.cat.default"], [("aten.mm.default", 5)]) == \
        [("aten.mm.default", 5), ("aten.cat.default", None)]


def test_a_pass_too_large_for_this_machine_is_not_run_for_real(monkeypatch):
    monkeypatch.setattr(C, "free_memory_bytes", lambda: 1 << 30)  # 1 GiB free
    real_runs = []

    def run_meta(batch, provider):
        x = torch.empty(batch, 4, device="meta")
        provider.bytes(SCRATCHY, (x, 100), {})
        return 600 << 20  # the pass would need 600 MiB: more than half of what is free

    src = S.ScratchSource(run_meta, lambda b, mode: real_runs.append(b), need=lambda r: r)
    _, provider = src.at(2)
    assert real_runs == [] and provider.direct_calls == 1 and "free memory" in src.notes[0]


def test_a_call_too_large_to_run_alone_is_not_run_and_the_note_says_so(monkeypatch):
    """A call is run alone only where CALL_HEADROOM x its operands fit in half the free
    memory (operands, outputs and a reorder of each); one over that is not run, its scratch
    is 0 in this process only (not written to the disk cache), and the pass's note says so."""
    monkeypatch.setattr(C, "free_memory_bytes", lambda: 1 << 30)  # 1 GiB free
    big = torch.empty(1 << 26, device="meta")  # 256 MiB of operand: 4 x 256 MiB > 512 MiB
    small = torch.empty(1 << 20, device="meta")  # 4 MiB: 16 MiB, well inside it
    ran = []
    monkeypatch.setattr(C, "_materialize", lambda recipe: ran.append(recipe) or C.tree_map(
        lambda x: x.make() if isinstance(x, C._TensorRecipe) else x, recipe))

    def run_meta(batch, provider):
        provider.bytes(SCRATCHY, (small, 77), {})
        provider.bytes(SCRATCHY, (big, 88), {})
        return 0

    src = S.ScratchSource(run_meta, lambda b, mode: None)
    src.references = {b: [] for b in S.REFERENCE_BATCHES}  # nothing in situ: every call measured alone
    _, provider = src.at(S.DIRECT_MAX_BATCH + 1)
    assert len(ran) == 1  # the small call only
    assert provider.too_large == 1 and "too large to run alone" in " ".join(src.all_notes())
    big_key = C.signature(SCRATCHY, (big, 88), {})
    assert C._cached("calls", big_key) == 0 and big_key not in C._load_disk()["calls"]
    assert C._load_disk()["calls"].get(C.signature(SCRATCHY, (small, 77), {})) == 77


def test_fit_says_when_scratch_could_not_be_measured(monkeypatch):
    """With (as good as) no free memory, no pass or call runs on real tensors: fit still
    answers from the tensors, and its note says the scratch was not measured."""
    from archcost.memory.fit import fit

    monkeypatch.setattr(C, "free_memory_bytes", lambda: 1 << 10)  # 1 KiB free
    r = fit("lenet5", 64 << 20, optimizer="sgd", max_batch=4)
    assert r.batch >= 1
    assert "not run on real tensors" in r.search_note and "too large to run alone" in r.search_note
