"""The checkpoint planner, measured: how long ``plan`` takes on the zoo, and whether its
plans fit by the CPU allocator, not only by archcost's own pass.

1. Speed: for each zoo model at batch 32 (float32, Adam), the budget halfway between the
   memory of Chen et al.'s sqrt(n) segments and of no checkpointing (a batch that does not
   fit without checkpointing); the seconds of ``plan_batch`` (search and measured plan) and
   of the three references, on meta tensors.
2. The allocator: ResNet-50 and a ViT-B/16-shaped network on real CPU tensors, at a small
   batch and the same kind of budget: the plan's modules run under ``--checkpoint`` through
   a real training step under the CPU profiler (``traincheck.allocator_step``); the
   allocator's live bytes (sampled as each top-level operator returns, and every
   allocation) + weights, buffers, optimizer state + the input, against the budget.

    python bench/plan_bench.py [--all] [--out reports/plan_bench_cpu.md]

Timings depend on the machine's load; the report states ``uptime`` beside them.
"""

import argparse
import os
import subprocess
import sys
import time
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

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
    probe = plan_batch(model, x, 1 << 62)
    none, sqrt_n = probe.references["none"], probe.references["sqrt-n"] or probe.references["blocks"]
    if sqrt_n is None or sqrt_n.needed_bytes >= none.needed_bytes:
        return None, probe
    return (sqrt_n.needed_bytes + none.needed_bytes) // 2, probe


def speed(names, batch):
    rows = []
    for name in names:
        spec = get_spec(name)
        model = build_model(spec.builder, "meta", torch.float32)[0]
        x = _inputs(name, spec, batch, "meta")
        t = time.perf_counter()
        budget, probe = halfway_budget(model, x)
        t_refs = time.perf_counter() - t
        if budget is None:
            rows.append(f"| {name} | - | - | - | - | - | no sqrt(n) set below the plain step |")
            print(rows[-1], flush=True)
            continue
        t = time.perf_counter()
        r = plan_batch(model, x, budget, references=False)
        t_plan = time.perf_counter() - t
        sq = probe.references["sqrt-n"] or probe.references["blocks"]
        p = r.plan
        rows.append(f"| {name} | {human_bytes(budget)} | {t_plan:.1f} s | {t_refs:.1f} s | {r.measured_sets} | "
                    + (f"{len(p.segments)} modules, {human_bytes(p.needed_bytes)}, +{si(p.recompute_macs)} MACs | "
                       f"+{si(sq.recompute_macs)} MACs |" if p else "no plan | |"))
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
    ap.add_argument("--all", action="store_true", help="speed on the whole zoo (default: eight models)")
    ap.add_argument("--out", default=os.path.join(ROOT, "reports", "plan_bench_cpu.md"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--no-speed", action="store_true", help="only the allocator check")
    ap.add_argument("--only", default=None, help="the allocator check of one network (resnet50, ViT-B/16-shaped)")
    ap.add_argument("--vit-batch", type=int, default=8)
    args = ap.parse_args()
    names = list_models() if args.all else ["alexnet", "vgg16", "googlenet", "resnet50", "resnet152", "densenet121",
                                            "densenet201", "mobilenet_v2"]
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out = ["# `archcost plan`, measured", "",
           f"Machine: `{load}` ({os.cpu_count()} CPUs, torch {torch.__version__}). "
           "Generated by `python bench/plan_bench.py`.", "",
           f"## Speed on the zoo (batch {args.batch}, float32, Adam, meta tensors)", "",
           "Budget: halfway between the memory of Chen et al.'s sqrt(n) segments (every block where the blocks "
           "are not a chain) and of no checkpointing. `plan`: the profile, the search, the plan's measured "
           "step and recompute (what `archcost plan` does besides the references); `references`: the three "
           "references measured (steps and recomputes).", "",
           "| model | budget | plan | references | sets measured | plan | sqrt(n) recompute |",
           "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    out += [] if args.no_speed else speed(names, args.batch)
    out += ["", "## The CPU allocator (real tensors, Adam)", "",
            "archcost's needed bytes (its pass on meta tensors) against the CPU allocator's over the same step "
            "with the plan's `--checkpoint` modules: weights, buffers, optimizer state and input + the most "
            "bytes the allocator held, sampled as each top-level operator returns / at any allocation (which "
            "adds kernels' scratch: im2col, oneDNN buffers, that no tensor holds).", "",
            "| network | batch | budget | checkpointing | archcost (bytes) | allocator, op boundaries | "
            "allocator, every allocation | fits (boundaries / every) |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    out += allocator(8, args.vit_batch, args.only)
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
