"""The checkpoint planner, measured: how long ``plan`` takes on the zoo, and whether its
plans fit by the CPU allocator, not only by archcost's own pass.

1. Speed: every zoo model (float32, Adam, meta tensors), at batch 32 or, where no
   reference set needs less than no checkpointing at 32 (AlexNet, VGG: their peak is the
   optimizer's, not the feature maps'), the first of 64, 128, ... 1024 where one does; the
   budget halfway between the least memory of the references (every block, Chen et al.'s
   sqrt(n) segments) and of no checkpointing, so the step does not fit without
   checkpointing. Timed: ``plan_batch`` with its three references, what ``archcost plan``
   does after building the model: CPU seconds of this process (``time.process_time``:
   other jobs sharing the cores do not count) and wall seconds (they do).
2. The allocator: ResNet-50 and a ViT-B/16-shaped network on real CPU tensors, at a small
   batch and the same kind of budget: the plan's modules run under ``--checkpoint`` through
   a real training step under the CPU profiler (``traincheck.allocator_step``); the
   allocator's live bytes (sampled as each top-level operator returns, and every
   allocation) + weights, buffers, optimizer state + the input, against the budget.

    nice -n 19 python bench/plan_bench.py [--models a,b] [--no-allocator] [--out reports/plan_bench_cpu.md]

The report states ``uptime`` before and after the run beside the times.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import torch  # noqa: E402

from archcost.count.build import build_model  # noqa: E402
from archcost.measure.allocator import allocator_step  # noqa: E402
from archcost.memory.plan import plan_batch  # noqa: E402
from archcost.report.units import human_bytes, si  # noqa: E402
from archcost.zoo.registry import get_spec, list_models  # noqa: E402


def _inputs(model_name, spec, batch, device):
    shape = spec.input_size if spec else (3, 224, 224)
    if device == "meta":
        return (torch.empty(batch, *shape, device="meta"),)
    return (torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0)),)


def halfway_budget(model, x):
    """(budget or None, the probe): halfway between the least needed bytes of the
    references with checkpointing and of no checkpointing (None: none needs less)."""
    probe = plan_batch(model, x, 1 << 62)
    none = probe.references["none"]
    least = min((e for e in (probe.references["sqrt-n"], probe.references["blocks"]) if e is not None),
                key=lambda e: e.needed_bytes, default=None)
    if least is None or least.needed_bytes >= none.needed_bytes:
        return None, probe
    return (least.needed_bytes + none.needed_bytes) // 2, probe


def timed(fn, *args, **kwargs):
    """(result, CPU seconds of this process, wall seconds)."""
    cpu, wall = time.process_time(), time.perf_counter()
    r = fn(*args, **kwargs)
    return r, time.process_time() - cpu, time.perf_counter() - wall


SPEED_HEAD = ["| model | batch | budget | plan CPU s | plan wall s | sets measured | plan | estimate - measured "
              "| sqrt(n) recompute |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]


def speed(names, batches, budgets, save=lambda: None):
    """Rows of the speed table; ``budgets``: {model: [batch, budget]} found earlier (a
    budget depends only on the references' measurements), filled for the others."""
    rows = []
    # One-time costs (torch.optim imports torch._dynamo at its first step, meta kernels'
    # first calls) out of the first model's time: a plan of ResNet-18 at batch 1 first.
    plan_batch(build_model(get_spec("resnet18").builder, "meta", torch.float32)[0],
               _inputs("resnet18", get_spec("resnet18"), 1, "meta"), 1 << 62)
    for name in names:
        spec = get_spec(name)
        model = build_model(spec.builder, "meta", torch.float32)[0]
        if name in budgets:
            batch, budget = budgets[name][:2]
        first = None
        for batch in ([] if name in budgets else batches):
            budget, probe = halfway_budget(model, _inputs(name, spec, batch, "meta"))
            first = first or probe
            budgets[name] = [batch, budget, "halfway"]
            if budget is not None:
                break
        else:
            if first is not None:  # no reference below the plain step: a budget 1 byte under it
                batch, budget = batches[0], first.references["none"].needed_bytes - 1
                budgets[name] = [batch, budget, "plain - 1 B"]
        save()
        x = _inputs(name, spec, batch, "meta")
        r, cpu, wall = timed(plan_batch, model, x, budget)
        sq = r.references["sqrt-n"] or r.references["blocks"]
        p = r.plan
        err = "" if p is None or p.estimated_bytes is None else f"{human_bytes(p.estimated_bytes - p.needed_bytes)}"
        how = budgets[name][2] if len(budgets[name]) > 2 else "halfway"
        rows.append(f"| {name} | {batch} | {human_bytes(budget)} ({how}) | {cpu:.1f} | {wall:.1f} | {r.measured_sets} | "
                    + (f"{len(p.segments)} modules, {human_bytes(p.needed_bytes)}, +{si(p.recompute_macs)} MACs | "
                       f"{err} | {'+' + si(sq.recompute_macs) + ' MACs' if sq else '-'} |" if p else "no plan | | |"))
        print(rows[-1], flush=True)
    return rows


def _milp_check(model, x, budget, plan_names):
    """The estimate's optimum by a mixed-integer programme (``plan_milp.py``), against the plan."""
    try:
        from plan_milp import milp_optimum
    except ImportError as exc:
        return f"not run ({exc})"
    from archcost.memory.plan import Bench
    from archcost.memory.plan_profile import profile
    from archcost.memory.plan_search import problem, set_macs

    bench = Bench(model, x, "adam", budget)
    prof = profile(bench.step, x)
    prob = problem(prof.curve, prof.modules.values(), prof.kept_bytes, prof.death)
    names, macs, proven = milp_optimum(prob, budget - bench.input_bytes - prof.base_bytes)
    if names is None:
        return "no solution"
    same = "the plan's set" if sorted(names) == sorted(plan_names) else f"{len(names)} other modules"
    return (f"+{si(macs)} MACs ({'proven' if proven else 'not proven'}), {same}; "
            f"the plan's estimate +{si(set_macs(prob, plan_names))} MACs")


def drop_one(names, budgets):
    """The plan against a stronger reference than its estimate: every set of the plan's
    modules but one, measured (a step each). One that fits would be a cheaper plan (every
    module recomputes something): the plan is then not the optimum."""
    from archcost.memory.plan import Bench

    rows = []
    for name in names:
        spec = get_spec(name)
        model = build_model(spec.builder, "meta", torch.float32)[0]
        batch, budget = budgets[name][:2]
        x = _inputs(name, spec, batch, "meta")
        r = plan_batch(model, x, budget, references=False)
        if r.plan is None or not r.plan.segments:
            continue
        bench = Bench(model, x, "adam", budget)
        fits = []
        for i, seg in enumerate(r.plan.segments):
            e = bench.measure("drop", r.plan.segments[:i] + r.plan.segments[i + 1:])
            if e.fits:
                fits.append((seg[0], e.needed_bytes))
        least = min(bench.measure("drop", r.plan.segments[:i] + r.plan.segments[i + 1:]).needed_bytes
                    for i in range(len(r.plan.segments)))
        exact = _milp_check(model, x, budget, [s[0] for s in r.plan.segments])
        rows.append(f"| {name} | {batch} | {human_bytes(budget)} | {len(r.plan.segments)} modules, "
                    f"{human_bytes(r.plan.needed_bytes)}, +{si(r.plan.recompute_macs)} MACs | "
                    f"{'yes' if r.search_complete else 'no'} | {exact} | {len(r.plan.segments)} | "
                    + (", ".join(f"{n} ({human_bytes(b)})" for n, b in fits) or f"none (least {human_bytes(least)})")
                    + " |")
        print(rows[-1], flush=True)
    return rows


def allocator(batch_resnet, batch_vit, only=None):
    from plan_nets import ViT

    cases = [("resnet50", lambda: get_spec("resnet50").builder(), batch_resnet),
             ("ViT-B/16-shaped", ViT, batch_vit)]
    rows = []
    for name, builder, batch in cases:
        if only and name != only:
            continue
        meta_model = build_model(builder, "meta", torch.float32)[0]
        xm = (torch.empty(batch, 3, 224, 224, device="meta"),)
        budget, probe = halfway_budget(meta_model, xm)
        if budget is None:
            rows.append(f"| {name} | {batch} | - | no sqrt(n) set below the plain step at this batch | | | | |")
            print(rows[-1], flush=True)
            continue
        r = plan_batch(meta_model, xm, budget, references=False)
        names = [s[0] for s in r.plan.segments]
        model = build_model(builder, "cpu", torch.float32)[0]
        x = (torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)),)
        input_bytes = x[0].untyped_storage().nbytes()
        for label, ckpt, ours in (("none", (), probe.references["none"].needed_bytes),
                                  ("plan", names, r.plan.needed_bytes)):
            a = allocator_step(model, x, "adam", checkpoint=ckpt)
            boundary = a["baseline_bytes"] + a["op_boundary_peak"] + input_bytes
            every = a["baseline_bytes"] + a["allocator_peak"] + input_bytes
            rows.append(f"| {name} | {batch} | {human_bytes(budget)} | {label} ({len(ckpt)} modules) | "
                        f"{ours:,} | {boundary:,} | {every:,} | "
                        f"{'yes' if boundary <= budget else 'NO'} / {'yes' if every <= budget else 'NO'} |")
            print(rows[-1], flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "reports", "plan_bench_cpu.md"))
    ap.add_argument("--models", default="", help="comma-separated zoo names (default: the whole zoo)")
    ap.add_argument("--batches", default="32,64,128,256,512,1024", help="batches tried in turn for a budget")
    ap.add_argument("--no-speed", action="store_true", help="only the allocator check")
    ap.add_argument("--no-allocator", action="store_true", help="only the speed on the zoo")
    ap.add_argument("--only", default=None, help="the allocator check of one network (resnet50, ViT-B/16-shaped)")
    ap.add_argument("--vit-batch", type=int, default=8)
    ap.add_argument("--drop-one", default="densenet201",
                    help="comma-separated models whose plan is checked against every subset one module smaller")
    ap.add_argument("--budgets", default=None,
                    help="JSON {model: [batch, budget]}: read if it exists (the budgets of an earlier run, so "
                         "another version of the code is timed on the same problems), else written")
    args = ap.parse_args()
    names = args.models.split(",") if args.models else list_models()
    batches = [int(b) for b in args.batches.split(",")]
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    budgets, fixed = {}, bool(args.budgets and os.path.exists(args.budgets))
    if fixed:
        with open(args.budgets) as f:
            budgets = json.load(f)

    def save():
        if args.budgets and not fixed:
            with open(args.budgets, "w") as f:
                json.dump(budgets, f, indent=1)

    speed_rows = [] if args.no_speed else speed(names, batches, budgets, save)
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out = ["# `archcost plan`, measured", "",
           f"Generated by `nice -n 19 python bench/plan_bench.py` ({os.cpu_count()} CPUs shared with other jobs, "
           f"torch {torch.__version__}). Load before: `{load}`; after the speed run: `{after}`.", "",
           "## Speed on the zoo (float32, Adam, meta tensors)", "",
           "Budget: halfway between the least memory of the references (every block; Chen et al.'s sqrt(n) "
           "segments) and of no checkpointing, at batch 32 or the first larger batch (up to 1024) where a "
           "reference needs less than no checkpointing (`halfway`); where none does, batch 32 and one byte under no "
           "checkpointing (`plain - 1 B`). Timed: `plan_batch` with its references (the profile, the search, "
           "the plan's measured step, the references' measured steps: what `archcost plan` does once the "
           "model is built), in a process that has run a plan before (a first plan in a process also pays "
           "one-time costs: torch.optim imports torch._dynamo at its first step). CPU s: this process's CPU time (`time.process_time`), what the plan costs; "
           "wall s: elapsed, which on these shared cores includes waiting for other jobs. `estimate - "
           "measured`: the search's estimate of the plan's needed bytes less its measured needed bytes. "
           "`no plan`: no set of single modules fits by the estimate, though a reference (Chen's runs of "
           "several consecutive modules as one checkpoint, which `--checkpoint` patterns cannot express "
           "and the search does not consider) may.", ""]
    out += SPEED_HEAD + speed_rows
    checked = [n for n in args.drop_one.split(",") if n and n in budgets and budgets[n][1] is not None]
    if checked:
        out += ["", "## Is the plan the optimum? (stronger references than the search)", "",
                "The search is a branch and bound on an estimate (`search complete`: it proved its set the "
                "cheapest under the estimate within its node and time limits). Two references: the estimate's "
                "own optimum solved exactly as a mixed-integer programme (`bench/plan_milp.py`, scipy's HiGHS; "
                "its MACs are the estimate's per-module recompute, summed); and, measured, every set of the "
                "plan's modules but one, a whole step each: a subset that fits would recompute less (every "
                "module in a plan recomputes something), so the plan would not be the optimum.", "",
                "| model | batch | budget | plan | search complete | MILP optimum of the estimate | "
                "subsets measured | subsets that fit |",
                "| --- | ---: | ---: | --- | --- | --- | ---: | --- |"]
        out += drop_one(checked, budgets)
    if not args.no_allocator:
        out += ["", "## The CPU allocator (real tensors, Adam)", "",
                "archcost's needed bytes (its pass on meta tensors) against the CPU allocator's over the same "
                "step with the plan's `--checkpoint` modules: weights, buffers, optimizer state and input + the "
                "most bytes the allocator held, sampled as each top-level operator returns / at any allocation "
                "(which adds kernels' scratch: im2col, oneDNN buffers, that no tensor holds).", "",
                "| network | batch | budget | checkpointing | archcost (bytes) | allocator, op boundaries | "
                "allocator, every allocation | fits (boundaries / every) |",
                "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
        out += allocator(8, args.vit_batch, args.only)
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
