"""``fit``, ``train_peak_bytes`` and ``peak_bytes`` against the CPU allocator.

The truth is the CPU allocator's own accounting: ``torch.profiler`` with
``profile_memory``, every allocation and free through one steady-state training step
(``measure.allocator.allocator_step``: the optimizer state made by an earlier step) or one
inference forward (``measure.allocator.profiler_memory``), on real CPU tensors, kernels' scratch
included. What a batch needs = what the allocator held before the step (weights, buffers,
optimizer state) + its highest running sum during it + the input batch.

1. ``fit``: archcost's answer B for a budget, then the allocator's need at B and B + 1:
   B must fit and B + 1 must not (``archcost fit resnet18 --memory 1GiB --train
   --optimizer sgd`` must answer 44, ``vgg16 --memory 3GiB --optimizer adam`` 13), and for
   five timm networks of other families (ConvNeXt-T, EfficientNet-B0, ViT-B/16, Swin-T,
   MobileNetV3-S) with sgd and adam, at budgets that put B between 4 and 8.
2. At batch 2, for ConvNeXt-T, EfficientNet-B0, ViT-B/16, Swin-T, ResNet-50 and
   MobileNetV3-S (timm's, random weights): ``train_peak_bytes`` (sgd, adam) and
   ``peak_bytes`` next to the allocator's peak, and what archcost said before kernel
   scratch was counted. ViT and Swin run on real CPU tensors (attention's fused kernel
   differs from its meta decomposition, as ``analyze`` does for them), the rest on meta.

    python bench/fit_cpu_check.py [--part fit|batch2|all] [--only MODEL ...] [--no-save]

Writes reports/fit_cpu_check.csv (raw bytes) and reports/fit_cpu_check.md. Slow: every
truth is a real step (VGG16 at batch 14: about 40 s on two cores); the machine's load is
written beside the results.
"""

import argparse
import os
import sys
import time
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402

GiB = 2 ** 30
MiB = 2 ** 20
# (model, budget bytes, optimizer, the answer the allocator says is right, or None: checked at B and B + 1).
# The five more are timm's (random weights), of other families than the zoo's: budgets that put B between
# 4 and 8, so that every truth is a real step of a few samples (fit itself runs each batch up to 8 once
# on real tensors for the kernels' scratch, cached on disk by signature).
NEW = [("timm:convnext_tiny", {"sgd": 860 * MiB, "adam": 1080 * MiB}),
       ("timm:efficientnet_b0", {"sgd": 576 * MiB, "adam": 616 * MiB}),
       ("timm:vit_base_patch16_224", {"sgd": 1100 * MiB, "adam": 1850 * MiB}),
       ("timm:swin_tiny_patch4_window7_224", {"sgd": 800 * MiB, "adam": 1024 * MiB}),
       ("timm:mobilenetv3_small_100", {"sgd": 120 * MiB, "adam": 136 * MiB})]
FIT_CASES = [(m, budgets[opt], opt, None) for m, budgets in NEW for opt in ("sgd", "adam")] + [
    ("resnet18", 1 * GiB, "sgd", 44), ("vgg16", 3 * GiB, "adam", 13)]
TIMM = [("convnext_tiny", "meta"), ("efficientnet_b0", "meta"), ("vit_base_patch16_224", "cpu"),
        ("swin_tiny_patch4_window7_224", "cpu"), ("resnet50", "meta"), ("mobilenetv3_small_100", "meta")]


def _zoo(name, device):
    from archcost.count.build import runner_model
    from archcost.zoo.sources import resolve_model

    _, spec, builder, _ = resolve_model(name, {})
    return runner_model(builder, None, None, device, torch.float32, False), spec.input_size


def true_need(name, batch, optimizer):
    """The allocator's bytes for one training step at ``batch`` (a zoo model, real tensors)."""
    from archcost.measure.allocator import allocator_step

    model, size = _zoo(name, "cpu")
    x = torch.randn(batch, *size)
    ev = allocator_step(model, (x,), optimizer)
    return ev["baseline_bytes"] + ev["allocator_peak"] + x.untyped_storage().nbytes()


def fit_rows(log, done=lambda rows: None, only=None, kept=()):
    """One row per case of FIT_CASES; ``only``: the models to run (the others' rows are taken
    from ``kept``, an earlier run's, when there)."""
    from archcost.memory.fit import fit

    rows = []
    for name, budget, optimizer, expected in FIT_CASES:
        if only and name not in only and f"{name}@{optimizer}" not in only:
            rows += [r for r in kept if (r["model"], r["optimizer"], r["budget_bytes"]) == (name, optimizer, budget)]
            continue
        t0 = time.perf_counter()
        r = fit(name, budget, train=True, optimizer=optimizer)
        fit_s = time.perf_counter() - t0
        b = r.batch
        rows.append({"check": "fit", "model": name, "optimizer": optimizer, "budget_bytes": budget, "batch": b,
                     "expected_batch": expected if expected is not None else "",
                     "archcost_bytes": r.curve.get(b), "allocator_bytes": true_need(name, b, optimizer),
                     "archcost_next_bytes": r.curve.get(b + 1), "allocator_next_bytes": true_need(name, b + 1, optimizer),
                     "scratch_at_answer_bytes": r.breakdown.get("scratch_at_peak"),
                     "breakers": " ".join(map(str, r.breakers)), "fit_seconds": round(fit_s, 1),
                     "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
                     "check_seconds": round(time.perf_counter() - t0 - fit_s, 1)})
        row = rows[-1]
        row["fits"] = row["allocator_bytes"] <= budget
        row["next_does_not"] = row["allocator_next_bytes"] > budget
        row["ok"] = row["fits"] and row["next_does_not"] and (expected is None or b == expected)
        log(f"fit {name} {optimizer} {budget / GiB:g} GiB: {b} (archcost {row['archcost_bytes']} / "
            f"{row['archcost_next_bytes']}, allocator {row['allocator_bytes']} / {row['allocator_next_bytes']} bytes at "
            f"{b} / {b + 1}) {'ok' if row['ok'] else 'WRONG'}")
        done(rows)
    return rows


def _timm(name, device):
    import timm

    torch.manual_seed(0)
    with torch.device(device):
        return timm.create_model(name, pretrained=False)


def batch2_rows(log):
    from archcost.measure.allocator import allocator_step, profiler_memory
    from archcost.memory.forward import peak_detail
    from archcost.memory.training import step_memory

    rows = []
    for name, device in TIMM:
        x = torch.zeros(2, 3, 224, 224, device=device)
        for optimizer in ("sgd", "adam"):
            ours = step_memory(_timm(name, device), (x,), optimizer)
            before = step_memory(_timm(name, device), (x,), optimizer, scratch=False)
            ev = allocator_step(_timm(name, "cpu"), (torch.randn(2, 3, 224, 224),), optimizer)
            true = ev["baseline_bytes"] + ev["allocator_peak"]
            rows.append({"check": f"train_peak_bytes ({optimizer})", "model": name, "optimizer": optimizer,
                         "batch": 2, "measured_on": device, "archcost_bytes": ours.train_peak_bytes,
                         "allocator_bytes": true, "without_scratch_bytes": before.train_peak_bytes,
                         "scratch_at_peak": ours.scratch_at_peak})
        peak, scratch = peak_detail(_timm(name, device), (x,), {})
        before = peak_detail(_timm(name, device), (x,), {}, scratch=False)[0]
        ev = profiler_memory(_timm(name, "cpu"), (torch.randn(2, 3, 224, 224),))
        rows.append({"check": "peak_bytes", "model": name, "optimizer": "", "batch": 2, "measured_on": device,
                     "archcost_bytes": peak, "allocator_bytes": ev["allocator_peak"], "without_scratch_bytes": before,
                     "scratch_at_peak": scratch})
        for row in rows[-3:]:
            row["relative_error"] = (row["archcost_bytes"] - row["allocator_bytes"]) / row["allocator_bytes"]
            row["before_relative_error"] = (row["without_scratch_bytes"] - row["allocator_bytes"]) / row["allocator_bytes"]
            row["ok"] = abs(row["relative_error"]) <= 0.005
            log(f"{row['check']} {name}: {row['relative_error']:+.4%} (without scratch {row['before_relative_error']:+.2%})")
    return rows


def _mib(n, digits=2):
    return f"{n / 2**20:.{digits}f} MiB"


def _section(title, header, rows):
    """A markdown table: text columns left, the rest right."""
    align = [":---" if isinstance(v, str) and not v.endswith("MiB") and not v.endswith("GiB") and "%" not in v
             else "---:" for v in rows[0]] if rows else [":---"] * len(header)
    return [title, "", "| " + " | ".join(header) + " |", "|" + "|".join(align) + "|",
            *("| " + " | ".join(str(v) for v in row) + " |" for row in rows), ""]


def _markdown(fit_df, b2_df, load, seconds):
    lines = ["# `fit` and the peaks against the CPU allocator", "",
             f"`python bench/fit_cpu_check.py`, torch {torch.__version__}, {torch.get_num_threads()} threads; "
             f"load average {load} at the start; {seconds / 60:.0f} min. The truth: `torch.profiler` "
             "(`profile_memory=True`), every allocation of one steady-state training step (or one inference "
             "forward) on real CPU tensors, plus what was allocated before it and the input batch.", ""]
    if fit_df is not None:
        lines += _section("## fit: B fits and B + 1 does not, by the allocator",
                          ["model", "optimizer", "budget", "fit answers", "archcost at B", "allocator at B",
                           "archcost at B + 1", "allocator at B + 1", "right"],
                          [[r.model, r.optimizer, _mib(r.budget_bytes, 0), r.batch, _mib(r.archcost_bytes, 1),
                            _mib(r.allocator_bytes, 1), _mib(r.archcost_next_bytes, 1), _mib(r.allocator_next_bytes, 1),
                            "yes" if r.ok else "NO"]
                           for _, r in fit_df.iterrows()])
    if b2_df is not None:
        lines += _section("## Peaks at batch 2 (timm's networks)",
                          ["model", "quantity", "measured on", "archcost", "allocator", "error", "without scratch",
                           "scratch at the peak"],
                          [[r.model, r.check, r.measured_on, _mib(r.archcost_bytes), _mib(r.allocator_bytes),
                            f"{r.relative_error:+.3%}", f"{r.before_relative_error:+.2%}", _mib(r.scratch_at_peak)]
                           for _, r in b2_df.iterrows()])
    return "\n".join(lines)


def _merge(paths, suffix, pd):
    from archcost.files import atomic_path

    frames = [pd.read_csv(p) for p in paths]
    rows = {(r["model"], r["optimizer"], int(r["budget_bytes"])): r for f in frames for r in f.to_dict("records")
            if r.get("check") == "fit"}
    order = [(m, o, b) for m, b, o, _ in FIT_CASES]
    df = pd.DataFrame([rows[k] for k in order if k in rows])
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reports")
    with atomic_path(os.path.join(out, f"fit_cpu_check{suffix}.csv")) as tmp:
        df.to_csv(tmp, index=False)
    loads = sorted({str(x) for x in df.get("load", pd.Series(dtype=str)).dropna()})
    md = _markdown(df, None, "see each run", 0).replace(
        "load average see each run at the start; 0 min.",
        "rows put together (--merge) from the runs " + ", ".join(f"`{os.path.basename(p)}`" for p in paths)
        + (f"; load averages (1, 5, 15 min) as cases ended: {', '.join(loads)}" if loads else "") + ".")
    missing = [f"{m} {o} ({b / MiB:.0f} MiB)" for m, o, b in order if (m, o, b) not in rows]
    if missing:
        md += ("\n\nNot measured yet (the runs were stopped; `--only MODEL@OPT --suffix X`, then `--merge`): "
               + ", ".join(missing) + ".")
    with atomic_path(os.path.join(out, f"fit_cpu_check{suffix}.md")) as tmp:
        with open(tmp, "w") as f:
            f.write(md + "\n")
    print(f"{len(df)} of {len(order)} cases;", "all right" if bool(df["ok"].all()) else "SOME WRONG")
    return 0 if len(df) == len(order) and bool(df["ok"].all()) else 1


def main():
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["fit", "batch2", "all"], default="all")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--only", nargs="+", metavar="MODEL[@OPT]",
                    help="run only these fit cases (a model, or model@optimizer); the others' rows are kept from "
                         "the report's CSV")
    ap.add_argument("--suffix", help="name the report fit_cpu_check_SUFFIX (default: the part), e.g. for runs in "
                                     "parallel, put together with --merge")
    ap.add_argument("--merge", nargs="+", metavar="CSV",
                    help="measure nothing: the fit rows of these reports' CSVs, in the order of FIT_CASES, as one "
                         "report (the machine's load as each run wrote it)")
    args = ap.parse_args()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    start = time.perf_counter()

    def log(msg):
        print(msg, flush=True)

    suffix = f"_{args.suffix}" if args.suffix else "" if args.part == "all" else f"_{args.part}"
    if args.merge:
        return _merge(args.merge, suffix, pd)

    def save(fit_df, b2):  # after every fit case too: a long run keeps what it measured
        if args.no_save:
            return
        from archcost.files import atomic_path

        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reports")
        frames = [f for f in (fit_df, b2) if f is not None]
        with atomic_path(os.path.join(out, f"fit_cpu_check{suffix}.csv")) as tmp:
            pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
        with atomic_path(os.path.join(out, f"fit_cpu_check{suffix}.md")) as tmp:
            with open(tmp, "w") as f:
                f.write(_markdown(fit_df, b2, load, time.perf_counter() - start) + "\n")

    b2 = pd.DataFrame(batch2_rows(log)) if args.part in ("batch2", "all") else None
    kept = []
    old_csv = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reports", f"fit_cpu_check{suffix}.csv")
    if args.only and os.path.exists(old_csv):
        kept = [r for r in pd.read_csv(old_csv).to_dict("records") if r.get("check") == "fit"]
    fit_df = (pd.DataFrame(fit_rows(log, lambda rows: save(pd.DataFrame(rows), b2), args.only, kept))
              if args.part in ("fit", "all") else None)
    seconds = time.perf_counter() - start
    save(fit_df, b2)
    ok = all(bool(f["ok"].all()) for f in (fit_df, b2) if f is not None)
    print("all right" if ok else "SOME WRONG", f"({seconds / 60:.1f} min, load {load})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
