"""What to checkpoint so that a training step fits a memory budget, at the least recompute.

``plan_batch(model, inputs, budget_bytes)`` finds a set of modules to run under
``torch.utils.checkpoint`` (non-reentrant, as ``--checkpoint`` does) such that the step's
``needed_bytes`` (``train_peak_bytes`` + the input batch, as ``fit`` compares) is within the
budget, with the least recompute MACs. How:

1. one profiled step without checkpointing (``plan_profile``) gives, per module, the bytes
   checkpointing it frees, over which part of the step, the inputs it would keep, and its
   recompute MACs; the profile is itself the measured step without checkpointing;
2. a branch and bound (``plan_search``) finds the cheapest set whose *estimated* peak is
   under the budget; that set is then measured: a whole step with it checkpointed, the same
   pass as ``table --checkpoint``. A set that does not fit is excluded and the next cheapest
   is measured, and so on: the first measured set that fits is the plan. Where the estimate
   was above the plan's measured peak, a few cheaper sets, those whose estimate fits the
   budget plus that error, are measured too, and the cheapest that fits is the plan. The
   estimate only ranks; nothing reported is estimated. Peak memory is not monotonic in the set (a
   checkpoint moves where the peak falls, and the recomputation brings tensors back), so no
   measured result is extrapolated to another set;
3. its recompute MACs are measured by the same pass: the backward's MACs with the plan,
   less those without (``CountingStep``).

The plan is set beside three references measured the same way: no checkpointing; every
block (the repeated unit: ResNet's bottlenecks, a transformer's layers, DenseNet's dense
layers) checkpointed; and Chen et al. 2016's sqrt(n) segments (arXiv 1604.06174, section
4.1): the n blocks cut into runs of about sqrt(n) consecutive blocks, each run one
checkpoint, cut also where the blocks' parent changes (a run is consecutive children of one
``nn.Sequential``; blocks of any other parent, whose forward may not be a chain, are each
their own segment).
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from archcost.count.engine import named_modules_unique
from archcost.errors import AnalysisError
from archcost.memory.checkpointing import checkpointed, frozen_args
from archcost.memory.checkpointing import segments as checkpoint_segments
from archcost.memory.training import StepMemory, TrainingStep

from .plan_profile import CountingStep, Profile, profile
from .plan_search import cheapest, problem, set_macs

Segment = Tuple[str, ...]  # one module, or a run of consecutive children of one nn.Sequential
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass
class Evaluation:
    """One checkpoint set, measured."""

    label: str  # plan | none | blocks | sqrt-n
    segments: List[Segment]
    train_peak_bytes: int
    needed_bytes: int  # train_peak_bytes + the input batch
    peak_phase: str
    fits: bool
    recompute_macs: Optional[int] = None  # measured for the reported sets
    estimated_bytes: Optional[int] = None  # the search's estimate of needed_bytes (plan only)

    @property
    def modules(self) -> List[str]:
        return [n for s in self.segments for n in s[:1]] if all(len(s) == 1 for s in self.segments) else []


@dataclass
class PlanResult:
    model: str
    batch: int
    budget_bytes: int
    optimizer: str
    plan: Optional[Evaluation]  # None: no set the search measured fits
    references: Dict[str, Optional[Evaluation]]  # none, blocks, sqrt-n (None: the model has no blocks)
    forward_macs: int  # a train-mode forward
    step_macs: int  # forward + backward without checkpointing
    blocks: List[str] = field(default_factory=list)
    measured_sets: int = 0  # sets measured by the search (the references not included)
    search_complete: bool = True  # False: a time or node limit cut the search short
    best_needed_bytes: Optional[int] = None  # the least needed_bytes of any measured set
    notes: List[str] = field(default_factory=list)
    patterns: List[str] = field(default_factory=list)  # the plan as --checkpoint patterns

    def share(self, e: Evaluation) -> float:
        """Recompute MACs as a share of the step's MACs with that checkpointing."""
        return e.recompute_macs / (self.step_macs + e.recompute_macs) if self.step_macs else 0.0


def blocks(model: nn.Module) -> List[str]:
    """The model's repeated unit: instances of the most frequent class of modules that have
    children (plain containers excepted; a tie goes to the class found shallowest), the
    outermost ones; without any, the leaf layers that have weights (VGG's, AlexNet's
    convolutions and linear layers). Fewer than two: none."""
    mods = [(n, m) for n, m in named_modules_unique(model) if n]
    count = Counter(type(m) for n, m in mods if next(m.children(), None) is not None and type(m) not in _CONTAINERS)
    if count:
        depth = {}
        for n, m in mods:
            depth.setdefault(type(m), n.count("."))
        cls = max(count, key=lambda c: (count[c], -depth[c]))
        names = [n for n, m in mods if type(m) is cls]
    else:
        names = [n for n, m in mods if next(m.children(), None) is None and next(m.parameters(), None) is not None]
    outer = [n for n in names if not any(n.startswith(o + ".") for o in names)]
    return outer if len(outer) >= 2 else []


def sqrt_segments(model: nn.Module, names: Sequence[str]) -> List[Segment]:
    """Chen et al.'s segments over the blocks ``names``: runs of about sqrt(n) consecutive
    children of the same ``nn.Sequential``."""
    if not names:
        return []
    modules = dict(named_modules_unique(model))
    k = max(1, round(math.sqrt(len(names))))
    groups: Dict[str, List[str]] = {}
    for n in names:
        groups.setdefault(n.rpartition(".")[0], []).append(n)
    out: List[Segment] = []
    for parent, members in groups.items():
        p = modules[parent]
        if type(p).forward is not nn.Sequential.forward or not isinstance(p, nn.Sequential):
            out.extend((n,) for n in members)
            continue
        children = [f"{parent}.{c}" if parent else c for c, _ in p.named_children()]
        span = children[children.index(members[0]):children.index(members[-1]) + 1]
        runs = math.ceil(len(span) / k)
        for r in range(runs):
            run = tuple(span[r * len(span) // runs:(r + 1) * len(span) // runs])
            if run:
                out.append(run)
    return out


def _identity(x):
    return x


def _exact(name: str) -> str:
    """A module name as an fnmatch pattern that matches only it."""
    return re.sub(r"([*?[])", r"[\1]", name)


@contextlib.contextmanager
def segmented(model: nn.Module, segments: Sequence[Segment]):
    """Run ``segments`` under non-reentrant checkpointing: a single module exactly as
    ``--checkpoint NAME`` does (``checkpointing.checkpointed``); a run as one checkpoint
    over its modules' forwards in turn (its first module's forward runs them all, the
    others pass their input on)."""
    modules = dict(named_modules_unique(model))
    patched = []
    try:
        for run in (s for s in segments if len(s) > 1):
            forwards = [modules[n].forward for n in run]

            def chain(*args, _forwards=forwards, **kwargs):
                x = _forwards[0](*args, **kwargs)
                for f in _forwards[1:]:
                    x = f(x)
                return x

            def first(*args, _chain=chain, **kwargs):
                # RNG state not restored, as in checkpointing.py (no memory difference)
                return checkpoint(_chain, *frozen_args(args), use_reentrant=False, preserve_rng_state=False,
                                  **kwargs)

            modules[run[0]].forward = first
            for n in run[1:]:
                modules[n].forward = _identity
            patched.extend(modules[n] for n in run)
        with checkpointed(model, [_exact(s[0]) for s in segments if len(s) == 1]):
            yield
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)


class Unmeasurable(RuntimeError):
    """A checkpoint set whose training step fails (torch's own error, first line)."""


class Bench:
    """One model at one input: measured steps of checkpoint sets, cached. Each is a whole
    step under ``CountingStep``: its peak, and its backward's MACs, whose excess over the
    step without checkpointing is the set's recompute (the count of ``backward_pass``,
    from the same pass). ``adopt(profile)``: the profiled step is the set without
    checkpointing, measured."""

    def __init__(self, model: nn.Module, inputs: Tuple[torch.Tensor, ...], optimizer: str, budget_bytes: int):
        self.model, self.inputs, self.budget = model, inputs, budget_bytes
        self.step = TrainingStep(model, optimizer)
        self.input_bytes = sum(t.untyped_storage().nbytes() for t in {id(t): t for t in inputs}.values())
        self.cache: Dict[FrozenSet[Segment], StepMemory] = {}

    def adopt(self, prof: Profile) -> None:
        self.cache[frozenset()] = prof.step

    def measure(self, label: str, segments: Sequence[Segment]) -> Evaluation:
        """The set's step, measured; ``Unmeasurable`` when the step fails with it (a module
        that writes into a tensor a checkpoint keeps, for one)."""
        key = frozenset(segments)
        if key not in self.cache:
            try:
                with segmented(self.model, segments):
                    self.cache[key] = self.step.measure(self.inputs, scratch=False, live=CountingStep)  # tensors
            except RuntimeError as exc:
                self.cache[key] = Unmeasurable(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        r = self.cache[key]
        if isinstance(r, Unmeasurable):
            raise r
        needed = r.train_peak_bytes + self.input_bytes
        return Evaluation(label, list(segments), r.train_peak_bytes, needed, r.peak_phase, needed <= self.budget)

    @property
    def plain_backward_macs(self) -> int:
        """The backward's MACs without checkpointing."""
        self.measure("none", [])
        return self.cache[frozenset()].backward_macs

    def recompute(self, e: Evaluation) -> Evaluation:
        """``e`` with its recompute MACs: its step's backward MACs less the plain step's."""
        if e.recompute_macs is None:
            self.measure(e.label, e.segments)
            e.recompute_macs = self.cache[frozenset(e.segments)].backward_macs - self.plain_backward_macs \
                if e.segments else 0
        return e


def search(bench: Bench, prof: Profile, seconds: float = 20.0, max_sets: int = 40, refine: int = 4):
    """``seconds``: of this process's CPU time (``time.process_time``), so that a loaded
    machine does not cut the search short. (plan or None, sets measured, complete, least needed bytes measured): the measured
    sets in increasing estimated recompute, each the cheapest not yet measured whose
    estimate fits; the first that fits is the plan. After three estimates that were too
    low, the cap is lowered by the largest error seen (the search then no longer
    guarantees the least recompute under the estimate: ``complete`` False). Then, if the
    plan's estimate was above its measurement (the estimate is pessimistic there), up to
    ``refine`` cheaper sets are measured, each the cheapest whose estimate fits the cap
    raised by that error: one that fits with less measured recompute is the plan."""
    cap = bench.budget - bench.input_bytes - prof.base_bytes
    prob = problem(prof.curve, prof.modules.values(), prof.kept_bytes, prof.death)
    measured: List[FrozenSet[str]] = []
    errors: List[int] = []
    complete, least, found = True, None, None
    deadline = time.process_time() + seconds

    def try_set(names):
        nonlocal least
        measured.append(frozenset(names))
        try:
            e = bench.recompute(bench.measure("plan", [(n,) for n in names]))
        except Unmeasurable:
            return None  # excluded, like a set that does not fit
        e.estimated_bytes = prof.estimate(names) + bench.input_bytes
        least = e.needed_bytes if least is None else min(least, e.needed_bytes)
        return e

    while len(measured) < max_sets and time.process_time() < deadline:
        shift = max(errors) if len(errors) >= 3 else 0
        names, done = cheapest(prob, cap - shift, set(measured), seconds=max(0.1, min(5.0, deadline - time.process_time())))
        complete = complete and done and shift == 0
        if names is None:
            break
        e = try_set(names)
        if e is not None and e.fits:
            found = e
            break
        if e is not None:
            errors.append(e.needed_bytes - e.estimated_bytes)
    else:
        complete = False
    slack = found.estimated_bytes - found.needed_bytes if found is not None else 0
    for _ in range(refine if slack > 0 else 0):
        if time.process_time() > deadline:
            break
        names, _ = cheapest(prob, cap + slack, set(measured), seconds=max(0.1, min(5.0, deadline - time.process_time())),
                            below=set_macs(prob, [s[0] for s in found.segments]))
        if names is None:
            break
        e = try_set(names)
        if e is not None and e.fits and e.recompute_macs < found.recompute_macs:
            found = e
    return found, len(measured), complete, least


def plan_batch(model: nn.Module, inputs: Tuple[torch.Tensor, ...], budget_bytes: int, optimizer: str = "adam",
               name: str = "", references: bool = True, seconds: float = 20.0) -> PlanResult:
    """The plan for ``model`` at ``inputs`` (see the module doc); ``references``: also
    measure the three references."""
    bench = Bench(model, inputs, optimizer, budget_bytes)
    prof = profile(bench.step, inputs)
    bench.adopt(prof)  # the step without checkpointing: measured by the profile's own pass
    batch = int(inputs[0].shape[0]) if inputs and inputs[0].dim() else 1
    res = PlanResult(name or type(model).__name__, batch, budget_bytes, optimizer, None, {},
                     prof.forward_macs, 0, blocks(model))
    none = bench.measure("none", [])
    if none.fits:
        res.plan, res.measured_sets, res.best_needed_bytes = none, 1, none.needed_bytes
    else:
        res.plan, res.measured_sets, res.search_complete, res.best_needed_bytes = search(bench, prof, seconds)
        res.best_needed_bytes = min(x for x in (res.best_needed_bytes, none.needed_bytes) if x is not None)
    if res.plan is not None:
        res.plan.label = "plan"
        bench.recompute(res.plan)
        res.patterns = patterns(model, [s[0] for s in res.plan.segments])
    if references:
        res.references["none"] = bench.recompute(none)
        for label, segs in (("blocks", [(n,) for n in res.blocks]), ("sqrt-n", sqrt_segments(model, res.blocks))):
            try:
                res.references[label] = bench.recompute(bench.measure(label, segs)) if segs else None
            except Unmeasurable as exc:
                res.references[label] = None
                res.notes.append(f"{label}: the step fails with it checkpointed ({exc})")
        if res.blocks and all(len(s) == 1 for s in sqrt_segments(model, res.blocks)) and len(res.blocks) > 1:
            res.notes.append("sqrt-n: the blocks' parents are not nn.Sequential chains, so each block is its "
                             "own segment (the same set as 'blocks')")
    res.step_macs = prof.forward_macs + bench.plain_backward_macs
    if res.plan is None:
        res.notes.append(f"no measured set fits: the least needed was {res.best_needed_bytes:,} bytes "
                         f"({res.measured_sets} sets measured)")
        floor = prof.floor_bytes("step") + bench.input_bytes
        if floor > budget_bytes:
            res.notes.append(f"the optimizer step alone needs {floor:,} bytes (weights, buffers, gradients, "
                             "optimizer state, its temporaries, the input): no checkpointing can lower that")
    return res


def patterns(model: nn.Module, names: Sequence[str]) -> List[str]:
    """``--checkpoint`` patterns that select exactly ``names``: 'parent.*' where every child
    of a parent is chosen, the names themselves otherwise (checked with the same matching
    as ``--checkpoint``)."""
    modules = dict(named_modules_unique(model))
    chosen, out, done = set(names), [], set()
    for n in names:
        parent = n.rpartition(".")[0]
        if parent in done:
            continue
        kids = [f"{parent}.{c}" if parent else c for c, _ in modules[parent].named_children()]
        if parent and len(kids) > 1 and all(k in chosen for k in kids):
            out.append(f"{parent}.*")
            done.add(parent)
        else:
            out.append(n)
    if not names or sorted(checkpoint_segments(model, out)) == sorted(names):
        return out
    return list(names)


def snippet(names: Sequence[str]) -> str:
    """Python that wraps the modules ``names`` of ``model`` in torch.utils.checkpoint."""
    listed = ",\n".join(f"    {n!r}" for n in names)
    return ("import functools\n"
            "from torch.utils.checkpoint import checkpoint\n\n"
            f"for name in [\n{listed},\n]:\n"
            "    m = model.get_submodule(name)\n"
            "    m.forward = functools.partial(checkpoint, m.forward, use_reentrant=False)\n")


def largest_planned_batch(build_inputs, model: nn.Module, budget_bytes: int, optimizer: str = "adam",
                          max_batch: int = 1 << 16, seconds: float = 10.0):
    """(batch, needed bytes per measured batch): the largest batch for which ``plan_batch``
    finds a set that fits (0: not even batch 1). ``build_inputs(b)`` makes the inputs.
    Each candidate batch's answer is a measured set; the search between batches is
    ``fit``'s (needed bytes nearly affine in the batch)."""
    from archcost.memory.fit import largest_batch

    seen: Dict[int, int] = {}

    def needed(b: int) -> int:
        if b not in seen:
            r = plan_batch(model, build_inputs(b), budget_bytes, optimizer, references=False, seconds=seconds)
            seen[b] = r.plan.needed_bytes if r.plan is not None else r.best_needed_bytes
        return seen[b]

    return largest_batch(needed, budget_bytes, max_batch), seen


def plan(name: str, budget_bytes: int, batch: Optional[int] = 1, max_batch: bool = False, optimizer: str = "adam",
         dtype: str = "float32", input_size=None, freeze: Sequence[str] = (), batch_limit: int = 1 << 16,
         seconds: float = 20.0) -> PlanResult:
    """``plan_batch`` for a zoo name or file.py:builder, on meta tensors. ``max_batch``: at
    the largest batch for which a plan fits (``largest_planned_batch``); ``batch`` then
    ignored. Nothing fitting even at batch 1: the result at batch 1, ``plan`` None."""
    from archcost.conditions import DTYPES
    from archcost.count.build import build_model
    from archcost.count.inputs import input_shapes, make_inputs
    from archcost.zoo.sources import resolve_model
    from archcost.memory.training import frozen_builder

    if dtype not in DTYPES:
        raise AnalysisError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    label, spec, builder, module = resolve_model(name, {})
    if module is not None:
        raise AnalysisError("plan takes a zoo name or a file.py:builder reference")
    if freeze:
        builder = frozen_builder(builder, freeze)
    model = build_model(builder, "meta", DTYPES[dtype])[0]
    default = spec.input_size if spec else None

    def inputs(b):
        return make_inputs(input_shapes(input_size, default, b, name=label, model=model), "meta", DTYPES[dtype])

    curve: Dict[int, int] = {}
    if max_batch:
        batch, curve = largest_planned_batch(inputs, model, budget_bytes, optimizer, batch_limit, seconds / 2)
    res = plan_batch(model, inputs(max(batch, 1)), budget_bytes, optimizer, label, seconds=seconds)
    if max_batch:
        res.notes.append(f"--max-batch: batch {batch} is the largest with a plan that fits "
                         + (f"(batch {batch + 1} measured: no plan found)" if batch + 1 in curve else
                            f"(the limit, {batch_limit})" if batch == batch_limit else "")
                         if batch else "--max-batch: no plan fits even at batch 1")
    return res
