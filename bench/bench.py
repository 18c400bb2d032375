"""Benchmark archcost against fvcore, ptflops, torchinfo and thop on the same models.

Each tool runs as a whole process (imports included, as a user meets it), --repeat
times; the median wall time and the peak resident memory are reported, with ratios to
fvcore's per-layer table (FlopCountAnalysis + ActivationCountAnalysis + flop_count_table).
Peers are optional (pip install -e ".[bench]"); a missing one is skipped and said so.

    python bench/bench.py [--repeat 3] [--models alexnet vgg16 googlenet resnet50]

Writes reports/bench.md (atomically) unless --no-save.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

PEERS = {
    "fvcore": """
import sys, warnings, torch, archcost
from fvcore.nn import FlopCountAnalysis, ActivationCountAnalysis, flop_count_table
for name in sys.argv[1:]:
    m = archcost.get_model(name).eval()
    x = torch.randn(1, *archcost.get_spec(name).input_size)
    f, a = FlopCountAnalysis(m, x), ActivationCountAnalysis(m, x)
    for o in (f, a):
        o.unsupported_ops_warnings(False); o.uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flop_count_table(f, activations=a)
    print(name, int(f.total()))
""",
    "ptflops": """
import sys, torch, archcost
from ptflops import get_model_complexity_info
for name in sys.argv[1:]:
    m = archcost.get_model(name).eval()
    macs, params = get_model_complexity_info(m, archcost.get_spec(name).input_size, as_strings=False,
                                             print_per_layer_stat=True, ost=open('/dev/null', 'w'))
    print(name, int(macs))
""",
    "torchinfo": """
import sys, torch, archcost
from torchinfo import summary
for name in sys.argv[1:]:
    m = archcost.get_model(name).eval()
    s = summary(m, input_size=(1, *archcost.get_spec(name).input_size), verbose=0)
    print(name, int(s.total_mult_adds))
""",
    "thop": """
import sys, torch, archcost
from thop import profile
for name in sys.argv[1:]:
    m = archcost.get_model(name).eval()
    macs, params = profile(m, inputs=(torch.randn(1, *archcost.get_spec(name).input_size),), verbose=False)
    print(name, int(macs))
""",
}


def run(cmd):
    """(wall seconds, peak RSS bytes of that process, stdout) of one process."""
    import tempfile

    with tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            msg = err.read().strip()
            raise RuntimeError(msg.splitlines()[-1] if msg else "failed")
    return wall, usage.ru_maxrss * 1024, out  # ru_maxrss is in KiB on Linux


def measure(cmd, repeat):
    walls, rss = [], []
    for _ in range(repeat):
        wall, peak, out = run(cmd)
        walls.append(wall)
        rss.append(peak)
    return statistics.median(walls), max(rss), out


def macs_of(out):
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line.strip()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["alexnet", "vgg16", "googlenet", "resnet50"])
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    rows = []
    archcost_cmd = [sys.executable, "-m", "archcost.cli", "table", *args.models, "--no-save", "--format", "csv"]
    wall, rss, out = measure(archcost_cmd, args.repeat)
    lines = out.strip().splitlines()
    header = lines[0].split(",")
    ours = {r.split(",")[0]: int(r.split(",")[header.index("macs")]) for r in lines[1:]}
    rows.append(("archcost table (all default columns, memory passes included)", wall, rss, ours))
    wall, rss, _ = measure(archcost_cmd + ["--no-memory"], args.repeat)
    rows.append(("archcost table --no-memory (the columns fvcore gives)", wall, rss, ours))
    for tool, code in PEERS.items():
        try:
            w, r, o = measure([sys.executable, "-c", code, *args.models], args.repeat)
            rows.append((tool, w, r, macs_of(o)))
        except Exception as exc:
            rows.append((tool, None, None, f"skipped: {exc}"))
    fv = next(r for r in rows if r[0] == "fvcore")
    zoo_wall, zoo_rss, _ = measure([sys.executable, "-m", "archcost.cli", "table", "*", "--no-save"], args.repeat)
    help_wall, _, _ = measure([sys.executable, "-m", "archcost.cli", "--help"], max(args.repeat, 5))
    import torch

    lines = [
        "# archcost benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}. Models: {', '.join(args.models)} at their default input, batch 1. "
        f"Each figure is the median of {args.repeat} whole-process runs (imports included); "
        "memory is the peak resident set size of the process.",
        "",
        "| tool | wall time | ratio to fvcore | peak RSS | MACs equal to fvcore's |",
        "|:---|---:|---:|---:|:---|",
    ]
    for tool, wall, rss, macs in rows:
        if wall is None:
            lines.append(f"| {tool} | - | - | - | {macs} |")
            continue
        same = "yes" if isinstance(macs, dict) and isinstance(fv[3], dict) and all(
            macs.get(m) == fv[3].get(m) for m in args.models) else (
            "no: " + ", ".join(f"{m} {macs.get(m)}" for m in args.models if macs.get(m) != fv[3].get(m)))
        ratio = f"{wall / fv[1]:.2f}" if fv[1] else "-"
        lines.append(f"| {tool} | {wall:.2f} s | {ratio} | {rss / 2**20:.0f} MiB | {same} |")
    lines += ["", f"`archcost table '*'` (the whole zoo, {len(__import__('archcost').list_models())} models): "
              f"{zoo_wall:.2f} s, peak RSS {zoo_rss / 2**20:.0f} MiB.",
              f"`archcost --help`: {help_wall:.2f} s.", "",
              "Peers count differently (ptflops and thop add batch norm, pooling and activations their own way; "
              "torchinfo counts conv/linear multiply-adds only), so their MACs differ by design.",
              "", "Rerun: `pip install -e \".[bench]\" && python bench/bench.py`."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        from archcost.report.files import ensure_dir, write_text

        write_text(ensure_dir("reports") / "bench.md", text)


if __name__ == "__main__":
    main()
