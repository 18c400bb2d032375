"""Benchmark archcost against fvcore, ptflops, torchinfo and thop on the same models.

Each tool runs as a whole process (imports included, as a user meets it), --repeat
times; the median wall time and the peak resident memory are reported, with ratios to
fvcore's per-layer table (FlopCountAnalysis + ActivationCountAnalysis + flop_count_table).
Peers are optional (pip install -e ".[bench]"); a missing one is skipped and said so.

    python bench/bench.py [--repeat 3] [--models alexnet vgg16 googlenet resnet50]

Writes reports/bench.md (atomically) unless --no-save. The machine's CPU and its load
average at the start and the end are stated. archcost runs with a fresh cache folder: its
first run measures the CPU's kernel scratch (memory/scratch.py) and is reported alone; the
rounds then read that cache, as every run after a user's first does.
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


def measure(cmds, repeat):
    """Median wall time, peak RSS and last stdout of each command. The commands run in
    rounds (each once per round), so a machine that speeds up or slows down during the
    benchmark shifts every tool alike instead of whichever ran at that moment."""
    walls = {k: [] for k in cmds}
    rss = {k: 0 for k in cmds}
    outs = {}
    for _ in range(repeat):
        for key, cmd in cmds.items():
            try:
                wall, peak, outs[key] = run(cmd)
            except Exception as exc:
                outs[key] = exc
                continue
            walls[key].append(wall)
            rss[key] = max(rss[key], peak)
    return {k: ((statistics.median(walls[k]), rss[k], outs[k]) if walls[k] else (None, None, outs[k]))
            for k in cmds}


def macs_of(out):
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line.strip()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["alexnet", "vgg16", "googlenet", "resnet50"])
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    import tempfile

    cli = [sys.executable, "-m", "archcost.cli"]
    archcost_cmd = cli + ["table", *args.models, "--no-save", "--format", "csv"]
    labels = {
        "ours": "archcost table (all default columns, memory passes included)",
        "ours-no-memory": "archcost table --no-memory (the columns fvcore gives)",
        "ours-saved": "archcost table as a user runs it (text table, CSV and plot written)",
        "floor": "floor: `python -c \"import torch, pandas\"` (no analysis at all)",
    }
    out_dir = tempfile.mkdtemp(prefix="archcost-bench-")
    os.environ["ARCHCOST_CACHE_DIR"] = tempfile.mkdtemp(prefix="archcost-bench-cache-")  # inherited by the runs
    load_start = os.getloadavg()[0]
    first_wall = run(archcost_cmd)[0]  # kernel scratch measured and cached
    cmds = {"ours": archcost_cmd, "ours-no-memory": archcost_cmd + ["--no-memory"],
            "ours-saved": cli + ["table", *args.models, "--out", out_dir],
            # The floor under any tool built on this stack: starting Python and importing
            # torch and pandas, nothing measured.
            "floor": [sys.executable, "-c", "import torch, pandas"]}
    cmds.update({tool: [sys.executable, "-c", code, *args.models] for tool, code in PEERS.items()})
    results = measure(cmds, args.repeat)
    lines = results["ours"][2].strip().splitlines()
    header = lines[0].split(",")
    ours = {r.split(",")[0]: int(r.split(",")[header.index("macs")]) for r in lines[1:]}
    rows = []
    for key, (wall, rss, out) in results.items():
        if wall is None:
            rows.append((key, None, None, f"skipped: {str(out).splitlines()[-1] if str(out) else 'failed'}"))
        else:
            rows.append((labels.get(key, key), wall, rss, ours if key in labels else macs_of(out)))
    fv = next(r for r in rows if r[0] == "fvcore")
    extra = measure({"zoo": cli + ["table", "*", "--no-save"], "help": cli + ["--help"]}, max(args.repeat, 3))
    (zoo_wall, zoo_rss, _), (help_wall, _, _) = extra["zoo"], extra["help"]
    import shutil

    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.rmtree(os.environ["ARCHCOST_CACHE_DIR"], ignore_errors=True)
    load_end = os.getloadavg()[0]
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.machine()) if os.path.exists("/proc/cpuinfo") else platform.machine()
    import torch

    lines = [
        "# archcost benchmark",
        "",
        f"Machine: {cpu}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}; load average {load_start:.2f} at the start, {load_end:.2f} at the end "
        f"(1-minute; {os.cpu_count()} cores). Models: {', '.join(args.models)} at their default input, batch 1. "
        f"Each figure is the median of {args.repeat} whole-process runs (imports included), the tools "
        "taking turns round by round; memory is the peak resident set size of the process. archcost's "
        f"first run, with an empty cache folder (the CPU's kernel scratch measured and cached), took "
        f"{first_wall:.2f} s; the rounds read that cache.",
        "",
        "| tool | wall time | ratio to fvcore | peak RSS | MACs equal to fvcore's |",
        "|:---|---:|---:|---:|:---|",
    ]
    for tool, wall, rss, macs in rows:
        if wall is None:
            lines.append(f"| {tool} | - | - | - | {macs} |")
            continue
        if tool == labels["floor"]:
            lines.append(f"| {tool} | {wall:.2f} s | {wall / fv[1]:.2f} | {rss / 2**20:.0f} MiB | - |")
            continue
        same = "yes" if isinstance(macs, dict) and isinstance(fv[3], dict) and all(
            macs.get(m) == fv[3].get(m) for m in args.models) else (
            "no: " + ", ".join(f"{m} {macs.get(m)}" for m in args.models if macs.get(m) != fv[3].get(m)))
        ratio = f"{wall / fv[1]:.2f}" if fv[1] else "-"
        lines.append(f"| {tool} | {wall:.2f} s | {ratio} | {rss / 2**20:.0f} MiB | {same} |")
    target = rows[0][1] / fv[1] if fv[1] else None
    floor = next((r[1] for r in rows if r[0] == labels["floor"]), None)
    lines += ["", f"Target of issues #12-#16: archcost's table at most 0.35 of fvcore's time: ratio "
              f"{target:.2f}, {'met' if target <= 0.35 else 'NOT met'}"
              + (f"; importing torch and pandas alone takes {floor / fv[1]:.2f} of fvcore's time here, and "
                 f"archcost's own work {max(rows[0][1] - floor, 0):.2f} s." if floor else ".")
              if target is not None else "Target: fvcore not installed, ratio not measured."]
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
