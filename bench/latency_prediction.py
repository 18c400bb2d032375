"""Predicted against measured latency (issue #21): the zoo and networks of other families.

    python bench/latency_prediction.py [--target cpu|auto] [--batches 1 16] [--threads N]
                                        [--models NAME ...] [--out reports] [--quick]

For each network and batch: ``predicted_ms`` from archcost's counts on meta tensors (per
operator: its compute and memory times over its class's efficiencies, the larger, + the
class's overhead and Python's time per kernel; archcost/roofline/latency.py)
and the forward measured on this machine with archcost's timer (warm-up, then repeats:
p20, median, p80, and the fastest). Per model the error is predicted / measured median - 1;
the summary gives the median and p90 of |error| over the rows of networks outside the CPU
fit's calibration set (``roofline/latency_nets.py``; those measured here are listed, with a
``calibration`` column, but not counted), and, since the machine may be
shared, the same against the fastest run (other jobs only ever slow a run down). The load
average is recorded before and after and beside every model.

On the CPU the roof and the efficiencies are measured afresh first (``--threads`` sets torch's
thread count for everything: the roof, the fit and the timings). ``--target auto`` on a GPU
machine uses its datasheet rates and the stated GPU defaults (bench/gpu_reports.sh runs it).

Writes reports/latency_prediction_<target>.md and .csv (atomically).
"""

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

# Networks of other families, built here from torchvision's and timm's code (random weights,
# nothing downloaded): (name, family, source, builder name, input shape without batch).
OTHERS = [
    ("mobilenet_v3_small", "mobile", "torchvision", "mobilenet_v3_small", (3, 224, 224)),
    ("mobilenet_v3_large", "mobile", "torchvision", "mobilenet_v3_large", (3, 224, 224)),
    ("shufflenet_v2_x1_0", "mobile", "torchvision", "shufflenet_v2_x1_0", (3, 224, 224)),
    ("squeezenet1_1", "mobile", "torchvision", "squeezenet1_1", (3, 224, 224)),
    ("efficientnet_b0", "mobile", "timm", "efficientnet_b0", (3, 224, 224)),
    ("ghostnet_100", "mobile", "timm", "ghostnet_100", (3, 224, 224)),
    ("mnasnet_100", "mobile", "timm", "mnasnet_100", (3, 224, 224)),
    ("regnety_004", "mobile", "timm", "regnety_004", (3, 224, 224)),
    ("lcnet_050", "mobile", "timm", "lcnet_050", (3, 224, 224)),
    ("vit_tiny_patch16_224", "transformer", "timm", "vit_tiny_patch16_224", (3, 224, 224)),
    ("vit_small_patch16_224", "transformer", "timm", "vit_small_patch16_224", (3, 224, 224)),
    ("mixer_s16_224", "transformer", "timm", "mixer_s16_224", (3, 224, 224)),
    ("text_encoder_4x256", "transformer", "bench", "text_encoder", (128, 256)),
    ("mobilevit_xxs", "hybrid", "timm", "mobilevit_xxs", (3, 256, 256)),
    ("levit_128s", "hybrid", "timm", "levit_128s", (3, 224, 224)),
    ("convnext_atto", "hybrid", "timm", "convnext_atto", (3, 224, 224)),
    ("edgenext_xx_small", "hybrid", "timm", "edgenext_xx_small", (3, 256, 256)),
    ("poolformer_s12", "hybrid", "timm", "poolformer_s12", (3, 224, 224)),
]
# (warm-up, timed repeats) by batch: a VGG forward at batch 16 takes seconds on 2 cores.
REPEATS = {1: (2, 8), 16: (1, 3)}  # per round (--rounds)


def text_encoder():
    """A BERT-mini-sized encoder (4 layers, d=256, 4 heads, FFN 1024) on 128 token vectors."""
    import torch.nn as nn

    layer = nn.TransformerEncoderLayer(256, 4, 1024, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)


def build(entry):
    name, family, source, fn, shape = entry
    if source == "zoo":
        from archcost.zoo.registry import get_model

        return get_model(name)
    if source == "torchvision":
        import torchvision

        return getattr(torchvision.models, fn)(weights=None)
    if source == "timm":
        import timm

        return timm.create_model(fn, pretrained=False)
    return text_encoder()


def zoo_entries():
    from archcost.zoo.registry import get_spec, list_models

    return [(n, "zoo:" + get_spec(n).family, "zoo", n, tuple(get_spec(n).input_size)) for n in list_models()]


def predict(model, shape, batch, rates, eff):
    import torch

    from archcost.count.engine import run_pass
    from archcost.roofline.attention_bytes import AttentionCalls, fuse
    from archcost.roofline.latency import conv_kinds, predict_ops, totals

    meta = copy.deepcopy(model).to("meta").eval()
    x = torch.empty((batch,) + tuple(shape), device="meta")
    with AttentionCalls() as cap:
        res = run_pass(meta, (x,), record_ops=True)
    ops, fused = fuse(res.ops, cap.calls)
    t = totals(predict_ops(ops, rates, eff, conv_kinds(model)))
    return {**t, "macs": int(res.macs), "attention_calls_fused": fused}


def measure(model, shape, batch, warmup, repeats, device="cpu"):
    """archcost's forward timer (warm-up, then repeats: p20, median, p80; CUDA events on a
    GPU); on a CPU each call is also read on the process's CPU-time clock (time.process_time),
    which other jobs do not inflate: with one thread, the quiet machine's wall time."""
    import torch

    from archcost.measure.timing import quantile, time_calls

    x = torch.randn((batch,) + tuple(shape), device=device)
    model.eval()
    with torch.inference_mode():
        if device != "cpu":
            ms = time_calls(lambda: model(x), device, repeats, warmup)
            cpu = None
        else:
            for _ in range(warmup):
                model(x)
            ms, cpu = [], []
            for _ in range(repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                model(x)
                ms.append((time.perf_counter() - w0) * 1e3)
                cpu.append((time.process_time() - c0) * 1e3)
    out = {"latency_ms": statistics.median(ms), "latency_p20_ms": quantile(ms, 0.2),
           "latency_p80_ms": quantile(ms, 0.8), "latency_min_ms": min(ms), "repeats": repeats}
    if cpu:
        out.update(cpu_ms=statistics.median(cpu), cpu_p20_ms=quantile(cpu, 0.2), cpu_min_ms=min(cpu))
    return out


def host_gflops(device="cpu"):
    """The machine's speed just now: the best of three float32 512-square products, GFLOP/s
    (a shared host's slow spells show here as they do in the measurements beside it)."""
    import torch

    a = torch.randn(512, 512, device=device)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(4):
            if device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            torch.mm(a, a)
            if device != "cpu":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    return 2 * 512 ** 3 / best / 1e9


def gpu_target(target, tf32):
    """(rates, efficiencies, name) of this machine's GPU from the device table."""
    import torch

    from archcost.devices import find_peak
    from archcost.roofline.latency import GPU_DEFAULTS, Rates

    if not torch.cuda.is_available():
        raise SystemExit("--target auto needs a CUDA GPU here; use --target cpu")
    name = torch.cuda.get_device_name()
    peak = find_peak(name)
    if peak is None:
        raise SystemExit(f"no datasheet figures for {name} in archcost's device table")
    return (Rates(peak.name, {k: v * 1e12 for k, v in peak.tflops.items()}, peak.bandwidth_bytes_per_s, "float32", tf32),
            GPU_DEFAULTS, name)


def slug_of(name):
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-").replace("--", "-")


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def pct(x):
    return f"{x:+.0%}"


def display(frame):
    """Milliseconds to 3 significant digits and errors as signed percentages (the CSV keeps the
    raw values); columns the report's table knows (``tables.COLUMNS``) are left to its formats."""
    from archcost.report.tables import COLUMNS

    d = frame.copy()
    for c in d.columns:
        if c in COLUMNS:
            continue
        if c.endswith("_ms") and d[c].dtype.kind == "f":
            d[c] = d[c].map(lambda v: f"{v:.3g}")
        elif c.startswith("error"):
            d[c] = d[c].map(lambda v: f"{v:+.0%}")
    d["load_1min"] = d["load_1min"].map(lambda v: f"{v:.1f}")
    if "host_gflops" in d:
        d["host_gflops"] = d["host_gflops"].map(lambda v: f"{v:.0f}")
    return d


def cpu_rows(frame):
    if "error_vs_cpu" not in frame:
        return []
    med, p90 = summary_lines(frame, "error_vs_cpu")
    return [f"| CPU time of the forward (one thread: the quiet machine's wall time) | {med:.1%} | {p90:.1%} | "
            "<= 15% / <= 30% |"]


def load_lines(frame):
    """How far off wall-clock numbers are under the load of this run."""
    out = [f"Load average (1 min) while measuring: median {frame['load_1min'].median():.1f}, max "
           f"{frame['load_1min'].max():.1f}, on {os.cpu_count()} CPUs."]
    if "cpu_ms" in frame:
        ratio = frame["latency_ms"] / frame["cpu_ms"]
        out.append(f"Under that load the wall-clock median of a forward was {ratio.median():.2f}x its CPU time "
                   f"(range {ratio.min():.2f}-{ratio.max():.2f}x): the time other jobs held the core. A quiet "
                   "machine's wall time is the CPU time (one thread); CPU time itself still carries what sharing "
                   "caches and memory bandwidth with other jobs costs, so even it reads high under load.")
    return out + [""]


def summary_lines(frame, col):
    errs = (frame[col]).abs()
    p90 = errs.quantile(0.9)
    return errs.median(), p90


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--models", nargs="+", default=None, help="names from the zoo or the OTHERS list")
    p.add_argument("--out", default="reports")
    p.add_argument("--tf32", default="torch-default", choices=["torch-default", "on", "off"])
    p.add_argument("--quick", action="store_true", help="5 zoo models and 5 others (a smoke run)")
    p.add_argument("--rounds", type=int, default=2,
                   help="measure every network this many times, round-robin over the list; the round with the "
                        "lowest median is kept (a shared host's slow spells last seconds to minutes)")
    args = p.parse_args(argv)

    import pandas as pd
    import torch

    from archcost.files import ensure_dir, write_text
    from archcost.report.files import write_csv
    from archcost.report.tables import render
    from archcost.roofline import calibrate as cpu_calibration, latency_calibrate
    from archcost.roofline.latency_nets import CALIBRATION_NETWORKS

    if args.threads:
        torch.set_num_threads(args.threads)
    out = ensure_dir(args.out)
    entries = zoo_entries() + OTHERS
    if args.models:
        entries = [e for e in entries if e[0] in args.models]
    elif args.quick:
        entries = entries[:0] + [e for e in entries if e[0] in ("alexnet", "resnet18", "googlenet", "mobilenet_v2",
                                                                "lenet5")] + OTHERS[:5]
    load_before, started = uptime(), time.time()
    print(load_before, file=sys.stderr)
    device, cal = "cpu", None
    if args.target == "cpu":
        cal = cpu_calibration.calibration(refresh=True)
        if cal.warning:
            print("warning: " + cal.warning, file=sys.stderr)
        rates = latency_calibrate.cpu_rates(cal)
        eff = latency_calibrate.cpu_efficiencies(rates, refresh=True, stable=cal.stable,
                                                log=lambda m: print(m, file=sys.stderr))
        roof_line = cal.describe() + (f" **warning: {cal.warning}**" if cal.warning else "")
        machine = cal.machine
    else:  # a GPU here: its datasheet rates (precision as torch's defaults run it), the stated defaults
        rates, eff, machine = gpu_target(args.target, args.tf32)
        device = "cuda"
        roof_line = f"{machine}: datasheet rates {dict(rates.columns)} FLOP/s, {rates.bandwidth / 1e9:g} GB/s, " \
                    f"--tf32 {args.tf32}; efficiencies: {eff.source}"
    rows, models = {}, {}
    for r in range(args.rounds):  # round-robin: a slow spell of the host lands on one round of a model, not all
        for b in args.batches:
            warmup, repeats = REPEATS.get(b, (1, 5))
            for e in entries:
                name, family, source, _, shape = e
                print(f"round {r + 1}/{args.rounds}: {name} batch {b} ...", file=sys.stderr, flush=True)
                model = models.get(name)
                if model is None:
                    model = models[name] = build(e).eval().to(device)
                key = (name, b)
                if key not in rows:
                    rows[key] = {"model": name, "family": family, "source": source, "batch_size": b,
                                 "input_shape": "x".join(str(d) for d in (b,) + tuple(shape)),
                                 **predict(model, shape, b, rates, eff), "round_medians_ms": []}
                probe = host_gflops(device)
                load = os.getloadavg()[0]
                meas = measure(model, shape, b, warmup, repeats, device)
                row = rows[key]
                row["round_medians_ms"].append(round(meas["latency_ms"], 3))
                if "latency_ms" not in row or meas["latency_ms"] < row["latency_ms"]:
                    row.update(meas, load_1min=load, host_gflops=probe, threads=torch.get_num_threads())
    for row in rows.values():
        row["round_medians_ms"] = ";".join(f"{v:g}" for v in row["round_medians_ms"])
    frame = pd.DataFrame(list(rows.values()))
    frame["error"] = frame["predicted_ms"] / frame["latency_ms"] - 1
    frame["error_vs_fastest"] = frame["predicted_ms"] / frame["latency_min_ms"] - 1
    if "cpu_ms" in frame:
        frame["error_vs_cpu"] = frame["predicted_ms"] / frame["cpu_ms"] - 1
    frame["predicted_over_bound"] = frame["predicted_ms"] / frame["bound_ms"]
    frame["calibration"] = frame["model"].isin(CALIBRATION_NETWORKS) if device == "cpu" else False
    load_after = uptime()
    tag = "cpu" if device == "cpu" else slug_of(machine)
    paths = [write_csv(out / f"latency_prediction_{tag}.csv", frame)]
    held = frame[~frame["calibration"]]  # the error is stated on networks the fit has not seen
    med, p90 = summary_lines(held, "error")
    med_f, p90_f = summary_lines(held, "error_vs_fastest")
    below = frame[frame["predicted_ms"] < frame["bound_ms"]]["model"].tolist()
    nets = held["model"].nunique()
    fam = held.drop_duplicates("model")["family"].map(lambda f: "zoo" if f.startswith("zoo:") else f)
    cal_nets = [n for n in CALIBRATION_NETWORKS if n in set(frame["model"])]
    lines = [
        f"# Predicted against measured latency on {'this CPU' if device == 'cpu' else machine}", "",
        "Generated by `python bench/latency_prediction.py" + (f" --threads {args.threads}" if args.threads else "")
        + "`; do not edit by hand. The prediction is an estimate: per operator, its compute time (FLOPs at the "
        "rate of its precision; the CPU's is its modelled hardware peak) and its memory time (bytes at the calibrated "
        "bandwidth), each divided by the efficiency its class attains on that side of the roof, the larger of the "
        "two, plus a per-kernel overhead of its class and Python's time per kernel (archcost/roofline/latency.py). "
        "On the CPU all of these are fitted on this machine on the operators of the calibration networks, timed inside those networks "
        "(latency_calibrate.py, latency_nets.py); the errors below are on the networks outside that set.", "",
        f"- machine: {machine}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"- load before: `{load_before}`",
        f"- load after: `{load_after}` ({(time.time() - started) / 60:.1f} minutes)",
        f"- roof: {roof_line}",
        "- efficiencies (class: compute, memory, overhead per kernel): "
        + ", ".join("{} {:.3f}, {:.3f}, {:.1f} us".format(c, *eff.of(c)[:2], eff.of(c)[2] * 1e6) for c in eff.efficiency)
        + f"; Python's time {eff.python_s * 1e6:.1f} us per kernel",
        f"- calibration networks (fitted on, not counted in the summary): {', '.join(CALIBRATION_NETWORKS)}"
        + (f"; of them, {', '.join(cal_nets)} also measured below" if cal_nets else ""),
        f"- networks: {nets} ({', '.join(f'{k} {v}' for k, v in fam.value_counts().items())}), batches "
        f"{', '.join(map(str, args.batches))}; timer: archcost's forward timer, (warm-up, repeats) by batch {REPEATS}, "
        f"in {args.rounds} rounds over the whole list (round-robin); each network's figures are those of its round "
        "with the lowest median (`round_medians_ms` lists every round's), since this machine is a virtual one whose "
        "host has slow spells (the `host_gflops` column: a 512-square float32 product just before the kept round; "
        f"over the run {frame['host_gflops'].min():.0f}-{frame['host_gflops'].max():.0f} GFLOP/s)", "",
        "## Summary", "",
        "| against | median abs. error | p90 abs. error | target |", "| --- | ---: | ---: | --- |",
        f"| measured median | {med:.1%} | {p90:.1%} | <= 15% / <= 30% |",
        f"| fastest run (robust to other jobs) | {med_f:.1%} | {p90_f:.1%} | |",
        *cpu_rows(held), "",
        *load_lines(frame),
        f"Models predicted below their roofline bound: {', '.join(below) if below else 'none'} "
        "(each operator's prediction is at least its bound, by construction).", "",
        "## Per model", "",
        render(display(frame), "markdown", ["model", "family", "batch_size", "macs", "bound_ms", "predicted_ms", "latency_ms",
                                   "latency_p20_ms", "latency_p80_ms", "latency_min_ms", "error", "error_vs_fastest"]
               + (["cpu_ms", "error_vs_cpu"] if "cpu_ms" in frame else [])
               + ["round_medians_ms", "calibration", "load_1min", "host_gflops"]), ""]
    paths.append(write_text(out / f"latency_prediction_{tag}.md", "\n".join(lines)))
    print("wrote " + ", ".join(str(x) for x in paths), file=sys.stderr)
    print(f"median |error| {med:.1%}, p90 {p90:.1%}; against the fastest run {med_f:.1%}, {p90_f:.1%}", file=sys.stderr)
    if "error_vs_cpu" in frame:
        print("against CPU time: median |error| {:.1%}, p90 {:.1%}".format(*summary_lines(held, "error_vs_cpu")),
              file=sys.stderr)


if __name__ == "__main__":
    main()
