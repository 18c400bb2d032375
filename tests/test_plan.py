"""The checkpoint planner: optimal plans derived by hand, against exhaustive search, and on
ResNet-50 and ViT-B/16-shaped networks against Chen et al.'s sqrt(n) segments."""

import itertools
import math
import sys
import types

import pytest
import torch
import torch.nn as nn

from archcost.count.engine import named_modules_unique
from archcost.memory.plan import Bench, blocks, plan_batch, segmented, snippet, sqrt_segments
from archcost.memory.plan_profile import profile

sys.path.insert(0, __import__("os").path.dirname(__file__))
from plan_nets import MLPBlock, TinyDense, TinyRes, ViT, WideBlock, chain  # noqa: E402

F32 = 4


def meta(model):
    return model.to("meta")


def x_of(*shape):
    return (torch.empty(*shape, device="meta"),)


def needed_plain(model, inputs, optimizer="adam"):
    return Bench(model, inputs, optimizer, 1).measure("none", []).needed_bytes


# --- a chain of equal blocks -------------------------------------------------------------

def test_equal_chain_least_blocks_by_hand():
    """n equal blocks: checkpointing block i frees its hidden map (batch x hidden floats)
    from the end of its forward to its backward; every block but the last covers the
    forward/backward turn, where the step peaks here (activations dwarf the weights). To
    come ``m - 1/2`` hidden maps under the plain peak takes m blocks, each recomputing its
    forward: 2 x batch x d x hidden MACs (fc1 and fc2)."""
    n, d, hidden, batch, m = 8, 16, 512, 256, 3
    model, x = meta(chain(n, d, hidden)), x_of(batch, d)
    hidden_bytes = batch * hidden * F32
    budget = needed_plain(model, x) - (2 * m - 1) * hidden_bytes // 2
    r = plan_batch(model, x, budget, references=False)
    assert r.plan is not None and r.plan.fits and r.plan.needed_bytes <= budget
    assert len(r.plan.segments) == m
    assert r.plan.recompute_macs == m * batch * d * hidden


def test_equal_chain_sqrt_n_segments_by_hand():
    """Chen et al.'s sqrt(n) segments on 16 equal blocks: 4 runs of 4. After the forward,
    autograd keeps, without checkpointing, every block's hidden map and output (n(a + b),
    a = batch x hidden, b = batch x d floats); with the runs only each run's input and the
    last output (k b, the first run's input being the batch). Backward recomputes every run
    once, all but the run's last fc2 (whose output the next run keeps): about one extra
    forward, (2n - k) x batch x d x hidden MACs of the forward's 2n x batch x d x hidden."""
    n, d, hidden, batch = 16, 32, 128, 64
    model, x = meta(chain(n, d, hidden)), x_of(batch, d)
    names = blocks(model)
    assert names == [str(i) for i in range(n)]
    segs = sqrt_segments(model, names)
    k = math.isqrt(n)
    assert segs == [tuple(str(i) for i in range(j * k, (j + 1) * k)) for j in range(k)]
    bench = Bench(model, x, "adam", 1)
    a, b = batch * hidden * F32, batch * d * F32
    with segmented(model, segs):
        kept_runs = bench.step.measure(x).forward_bytes
    kept_none = bench.step.measure(x).forward_bytes
    assert kept_none - kept_runs == n * (a + b) - k * b
    e = bench.recompute(bench.measure("sqrt-n", segs))
    assert e.recompute_macs == (2 * n - k) * batch * d * hidden


def test_grouped_chain_plan_no_dearer_than_sqrt_n():
    """16 equal blocks in 4 nn.Sequential groups (the groups are Chen's segments): at the
    sqrt(n) plan's own memory, the plan fits and recomputes at most one forward."""
    n, d, hidden, batch = 16, 32, 128, 64
    model, x = meta(chain(n, d, hidden, groups=4)), x_of(batch, d)
    r = plan_batch(model, x, needed_plain(model, x))  # references at a budget that fits
    sqrt_n = r.references["sqrt-n"]
    assert sqrt_n.segments == [tuple(f"{g}.{i}" for i in range(4)) for g in range(4)]
    r = plan_batch(model, x, sqrt_n.needed_bytes)
    assert r.plan.fits and r.plan.recompute_macs <= sqrt_n.recompute_macs == (2 * n - 4) * batch * d * hidden


# --- one huge activation ----------------------------------------------------------------

def test_one_huge_activation_is_the_one_to_checkpoint():
    """A wide block first (it keeps 8 copies of its hidden map and the summed map: 9 a,
    a = batch x hidden floats, for the MACs of an ordinary block), then 24 ordinary blocks
    (a each, and a sixteenth of it at their edges). The step peaks at the turn: about
    9 a + 25.5 a, against 2 x 8 a + a few when the wide block's backward holds its map and
    one gradient of it (first in the forward, so last in backward, alone). Checkpointing
    the wide block lowers the turn by 9 a (the peak then moves, but by more than 3.5 a);
    ordinary blocks lower it by a each, at the same MACs: under a budget 3.5 a below the
    plain peak the plan is the wide block alone (any cheaper set is at most 3 ordinary
    blocks: 3 a), recomputing its fc1 (batch x d x hidden; the next block keeps fc2's output)."""
    d, hidden, batch, times = 16, 256, 128, 8
    model = meta(nn.Sequential(WideBlock(d, hidden, times), *(MLPBlock(d, hidden) for _ in range(24))))
    x = x_of(batch, d)
    a = batch * hidden * F32
    r = plan_batch(model, x, needed_plain(model, x) - 7 * a // 2, references=False)
    assert r.plan.segments == [("0",)]
    assert r.plan.recompute_macs == batch * d * hidden


# --- exhaustive search ------------------------------------------------------------------

def antichains(model):
    """Every set of modules none of which contains another (the root excluded)."""
    children = {}
    for name, _ in named_modules_unique(model):
        if name:
            children.setdefault(name.rpartition(".")[0], []).append(name)

    def sets(name):  # the antichains within ``name``'s subtree
        inner = [[]]
        for c in children.get(name, []):
            inner = [s + t for s in inner for t in sets(c)]
        return inner + [[name]] if name else inner

    return sets("")


@pytest.mark.parametrize("build,shape", [
    (lambda: TinyRes(8), (32, 3, 16, 16)),
    (lambda: chain(2, 8, 64, groups=2), (64, 8)),
    (lambda: TinyDense(8, 8, 64, 3), (64, 8)),
])
def test_plan_equals_exhaustive_optimum(build, shape):
    """Every set of modules measured (peak and recompute), for budgets between the least
    and the plain peak: the plan's recompute is the least of the sets that fit."""
    model, x = meta(build()), x_of(*shape)
    bench = Bench(model, x, "adam", 1)
    results = []
    for names in antichains(model):
        e = bench.recompute(bench.measure("set", [(n,) for n in names]))
        results.append((e.needed_bytes, e.recompute_macs, names))
    peaks = sorted({p for p, _, _ in results})
    assert len(peaks) > 3
    for q in (0.1, 0.4, 0.7, 0.95):
        budget = peaks[int(q * (len(peaks) - 1))]
        best = min(c for p, c, _ in results if p <= budget)
        r = plan_batch(model, x, budget, references=False)
        assert r.plan is not None and r.plan.needed_bytes <= budget, (q, budget)
        assert r.plan.recompute_macs == best, (q, budget, r.plan.segments)
    r = plan_batch(model, x, peaks[0] - 1, references=False)
    assert r.plan is None and r.best_needed_bytes >= peaks[0]


def _costs(*rows):
    from archcost.memory.plan_profile import ModuleCost

    return [ModuleCost(n, macs, saving, start, end, kept) for n, macs, saving, start, end, kept in rows]


@pytest.mark.parametrize("before", [50, 78])
def test_search_counts_a_shared_kept_input_once(before):
    """By hand: the curve is 100 over [2, 6) and ``before`` elsewhere; the cap 80 leaves a
    deficit of 20 there. A and B each free 15 over [2, 6) for 10 MACs and keep the same
    6-byte input, which the step without them frees at 1; C frees 25 for 25 MACs. Counted
    per module, A and B free 2 x (15 - 6) = 18 < 20; the input is one storage, kept once:
    30 - 6 = 24 >= 20, so {A, B} (20 MACs) beats C (25). Unless the input kept from 1
    breaks the cap where the curve is at 78 already (78 + 6 > 80): then C."""
    from archcost.memory.plan_search import cheapest, problem

    curve = [before, before, 100, 100, 100, 100, before, before]
    k = ("forward", 1)
    costs = _costs(("A", 10, 15, 2, 6, (k,)), ("B", 10, 15, 2, 6, (k,)), ("C", 25, 25, 2, 6, ()))
    names, complete = cheapest(problem(curve, costs, {k: 6}, {k: 1}), 80)
    assert complete and names == (["A", "B"] if before + 6 <= 80 else ["C"])


@pytest.mark.parametrize("seed", range(6))
def test_search_finds_the_estimates_optimum_by_brute_force(seed):
    """Random problems (12 modules, some nested, some sharing kept inputs): the branch and
    bound's set costs the least MACs among all sets whose estimate (``Profile.estimate``,
    the definition) fits, found by trying every set."""
    import numpy as np

    from archcost.memory.plan_profile import Profile
    from archcost.memory.plan_search import cheapest, problem, set_macs

    rng = np.random.default_rng(seed)
    t = 40
    curve = rng.integers(50, 100, t)
    curve[10:30] += 60
    names = [f"m{i}" if i % 4 else f"g{i}" for i in range(12)]
    names = [n if n.startswith("g") else f"g{4 * (int(n[1:]) // 4)}.{n}" for n in names]  # g0.m1 in g0 ...
    kept = [("forward", k) for k in range(3)]
    rows = []
    for n in names:
        start = int(rng.integers(2, 20))
        rows.append((n, int(rng.integers(1, 50)), int(rng.integers(5, 40)), start, int(rng.integers(start + 1, t)),
                     tuple(k for k in kept if rng.random() < 0.4)))
    prof = Profile(curve, ["forward"] * t, 0, {r[0]: c for r, c in zip(rows, _costs(*rows))},
                   kept_bytes={k: int(rng.integers(5, 30)) for k in kept}, death={k: int(rng.integers(0, 10)) for k in kept})
    prob = problem(curve, prof.modules.values(), prof.kept_bytes, prof.death)
    sets = [[n for b, n in enumerate(names) if mask >> b & 1] for mask in range(1 << len(names))]
    sets = [s for s in sets if not any(a != b and b.startswith(a + ".") for a in s for b in s)]
    for cap in (150, 140, 130):
        fitting = [set_macs(prob, [n for n in s if n in prob.names]) for s in sets if prof.estimate(s) <= cap]
        got, complete = cheapest(prob, cap)
        assert complete
        if not fitting:
            assert got is None
        else:
            assert got is not None and prof.estimate(got) <= cap and set_macs(prob, got) == min(fitting)


# --- ResNet-50 and ViT-B/16 -------------------------------------------------------------

def _resnet50():
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    from archcost.count.build import build
    from archcost.zoo.registry import get_spec

    return build(get_spec("resnet50").builder, "meta", torch.float32)


@pytest.mark.parametrize("build,shape", [
    (_resnet50, (32, 3, 224, 224)),
    (lambda: meta(ViT()), (16, 3, 224, 224)),
])
def test_big_networks_fit_below_sqrt_n(build, shape):
    """At a batch whose step does not fit the budget (halfway between the sqrt(n) plan's
    memory and no checkpointing), the plan fits, by a measured step, and recomputes no
    more than the sqrt(n) segments."""
    model, x = build(), x_of(*shape)
    probe = plan_batch(model, x, 1 << 50)
    none, sqrt_n = probe.references["none"], probe.references["sqrt-n"]
    assert sqrt_n.needed_bytes < none.needed_bytes
    budget = (sqrt_n.needed_bytes + none.needed_bytes) // 2
    r = plan_batch(model, x, budget, references=False)
    assert not r.references and r.plan.fits and r.plan.segments
    again = Bench(model, x, "adam", budget).measure("check", r.plan.segments)
    assert again.needed_bytes == r.plan.needed_bytes <= budget
    assert r.plan.recompute_macs <= sqrt_n.recompute_macs


def test_blocks_are_the_repeated_unit():
    assert blocks(_resnet50())[:4] == ["layer1.0", "layer1.1", "layer1.2", "layer2.0"]
    assert len(blocks(_resnet50())) == 3 + 4 + 6 + 3
    assert blocks(meta(ViT(depth=3))) == ["layers.0", "layers.1", "layers.2"]
    assert blocks(nn.Linear(2, 2)) == []


def test_snippet_wraps_the_modules_and_matches_the_pass():
    """The snippet run on a real model: its modules run under checkpoint (the same peak
    as the planner's pass on CPU tensors)."""
    model = chain(4, 8, 32)
    code = snippet(["1", "2"])
    ns = {"model": model}
    exec(code, ns)  # noqa: S102 - our own generated code
    assert isinstance(model[1].forward, __import__("functools").partial)
    x = (torch.randn(16, 8),)
    wrapped = Bench(model, x, "sgd", 1).measure("snippet", []).train_peak_bytes
    for i in (1, 2):
        del model[i].forward
    plan = Bench(model, x, "sgd", 1).measure("plan", [("1",), ("2",)]).train_peak_bytes
    assert wrapped == plan


def test_profile_peak_is_the_step_peak():
    model, x = _resnet50(), x_of(4, 3, 224, 224)
    bench = Bench(model, x, "adam", 1)
    assert profile(bench.step, x).peak_bytes == bench.step.measure(x, scratch=False).train_peak_bytes  # tensors


@pytest.mark.parametrize("build,shape", [
    (_resnet50, (4, 3, 224, 224)),
    (lambda: meta(ViT(depth=2)), (2, 3, 224, 224)),
    (lambda: meta(TinyDense(8, 8, 64, 3)), (64, 8)),
])
def test_profile_is_the_plain_step_and_recompute_is_backward_pass(build, shape):
    """The profiled step stands for the no-checkpointing set: its peak, phase and backward
    MACs are those of a plain measured step (and the backward MACs those of
    ``backward_pass``); a set's recompute, from its measured step's backward MACs, equals
    ``backward_pass``'s with it less without."""
    from archcost.memory.backward import backward_pass
    from archcost.memory.plan_profile import CountingStep

    model, x = build(), x_of(*shape)
    bench = Bench(model, x, "adam", 1)
    prof = profile(bench.step, x)
    plain = bench.step.measure(x, scratch=False, live=CountingStep)
    assert prof.step == plain  # every field: peak, phase, its parts, backward MACs
    assert plain.backward_macs == backward_pass(model, x).macs
    names = blocks(model)[:2] or [n for n in prof.modules][:2]
    e = bench.recompute(bench.measure("set", [(n,) for n in names]))
    assert e.recompute_macs == backward_pass(model, x, names).macs - backward_pass(model, x).macs > 0


def test_patterns_select_exactly_the_plan():
    """Every child of a parent chosen: 'parent.*'; otherwise the names; --checkpoint's own
    matching selects the same modules."""
    from archcost.memory.checkpointing import segments as matched
    from archcost.memory.plan import patterns

    model = chain(8, 4, 8, groups=2)
    assert patterns(model, ["0.0", "0.1", "0.2", "0.3", "1.2"]) == ["0.*", "1.2"]
    assert matched(model, ["0.*", "1.2"]) == ["0.0", "0.1", "0.2", "0.3", "1.2"]
    assert patterns(model, ["1.0.fc1"]) == ["1.0.fc1"]


def test_max_batch_is_a_measured_fit_with_the_next_measured_not():
    """--max-batch: the plan at the answer B fits (measured), and at B + 1 the search found
    no set that fits."""
    from archcost.memory.plan import largest_planned_batch

    model = meta(chain(8, 16, 256))
    budget = needed_plain(model, x_of(64, 16))  # batch 64 fits without checkpointing
    batch, seen = largest_planned_batch(lambda b: x_of(b, 16), model, budget, "adam", max_batch=4096)
    assert batch > 64 and seen[batch] <= budget < seen[batch + 1]
    r = plan_batch(model, x_of(batch, 16), budget, references=False)
    assert r.plan.fits and r.plan.segments


def test_checkpointing_dense_layers_recomputes_their_own_inputs():
    """A dense layer gets its block's list of features, which the block appends to after
    the call: --checkpoint copies the list, so the recomputation concatenates the features
    the layer saw (without the copy it concatenated the later ones too, and failed on the
    batch norm's shapes), and the step's peak goes down."""
    from archcost.count.build import build
    from archcost.memory.training import step_memory
    from archcost.zoo.registry import get_spec

    model = build(get_spec("densenet121").builder, "meta", torch.float32)
    x = x_of(8, 3, 224, 224)
    plain = step_memory(model, x, "sgd").train_peak_bytes
    assert step_memory(model, x, "sgd", checkpoint=["features.denseblock1.*"]).train_peak_bytes < plain
