"""How long the README's batch-size sweep takes on this machine, and how good its ETA is.

Runs the README's command as one process, as a user meets it (imports included):

    python -m archcost sweep alexnet googlenet resnet50 --batch-sizes 1,2,4,...,16

first with an empty cache folder (a fresh clone's first run: the CPU's kernel scratch is
measured at each batch, not read from ``scratch-*.json``), then again on that cache (a rerun).
Each run's wall time, CPU time (user + system of the process and its threads) and the
machine's load average (before and after, with ``os.cpu_count()`` cores) are written to
``reports/sweep_bench_cpu.md`` beside the target: under 3 minutes on this project's 2-core
machine (issue #22). Every point is timed to ``--time-budget`` (2 s by default: at least 3
forwards, at most ``--repeat``); the ETA the progress lines printed is compared with the
time that was in fact left. The first run's reports go to ``--out`` (the committed
``sweep_cpu_float32_b1-16_alexnet-googlenet-resnet50.*`` when it is ``reports``).

    python bench/sweep_bench.py [--out reports] [--runs cold,warm]
"""

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

COMMAND = ["sweep", "alexnet", "googlenet", "resnet50", "--batch-sizes", "1,2,4,...,16"]
TARGET_S = 180  # issue #22: "keep the README's sweep under 3 minutes here"
ETA = re.compile(r"\[(\d+)/(\d+)\] .*ETA (\d+):(\d+)")


def run_once(out: str, cache: str):
    """(wall s, CPU s, load before, load after, [(item, predicted s left, actual s left)]) of one run."""
    env = dict(os.environ, ARCHCOST_CACHE_DIR=cache, PYTHONPATH=str(pathlib.Path(__file__).resolve().parents[1]))
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "archcost", *COMMAND, "--out", out, "--format", "csv"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    seen, lines = [], []
    for line in proc.stderr:
        lines.append(line.rstrip())
        m = ETA.search(line)
        if m:
            seen.append((int(m[1]), int(m[2]), int(m[3]) * 60 + int(m[4]), time.perf_counter()))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("\n".join(lines[-5:]) or "the sweep failed")
    end = start + wall
    etas = [(i, n, predicted, end - t) for i, n, predicted, t in seen]
    return wall, usage.ru_utime + usage.ru_stime, load0, os.getloadavg()[0], etas


def eta_rows(etas):
    """The ETA printed at about a quarter, half and three quarters of the points."""
    if not etas:
        return []
    n = etas[0][1]
    picks = sorted({min(etas, key=lambda e: abs(e[0] - q * n)) for q in (0.25, 0.5, 0.75)})
    return [f"| {i}/{n} | {p:.0f} s | {a:.0f} s |" for i, n, p, a in picks]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports", help="where the first run writes the sweep's CSV and PNG")
    parser.add_argument("--runs", default="cold,warm", help="cold (an empty cache), warm (the cold run's cache)")
    args = parser.parse_args()
    runs = [r for r in args.runs.split(",") if r]
    import platform

    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as scratch_out:
        results = []
        for i, kind in enumerate(runs):
            results.append((kind, run_once(args.out if i == 0 else scratch_out, cache)))
            print(f"{kind}: {results[-1][1][0]:.0f} s wall, {results[-1][1][1]:.0f} s CPU", file=sys.stderr)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    import torch

    lines = ["# The README's sweep: how long it takes", "",
             f"Machine: {cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads. Command: `archcost {' '.join(COMMAND)}` "
             "(every point timed for about `--time-budget` 2 s, at least 3 forwards; memory passes with the "
             "kernel scratch measured on this CPU). Target: under 3 minutes (issue #22). Load average: the "
             f"1-minute figure at the start and at the end of each run ({os.cpu_count()} cores: "
             f"{os.cpu_count():.1f} is a full machine); the bench ran at niceness {os.nice(0)}"
             + (" (a low priority, beside other work)" if os.nice(0) > 0 else "") + ".", "",
             "| run | wall time | CPU time (user + system) | load at start | load at end | under 3 min: wall, CPU |",
             "|:---|---:|---:|---:|---:|:---|"]
    for kind, (wall, cpu_s, l0, l1, _) in results:
        what = "an empty cache: kernel scratch measured" if kind == "cold" else "the cache of the run before"
        lines.append(f"| {kind} ({what}) | {wall:.0f} s | {cpu_s:.0f} s | {l0:.2f} | {l1:.2f} | "
                     f"{'yes' if wall < TARGET_S else 'NO'}, {'yes' if cpu_s < TARGET_S else 'NO'} |")
    lines += ["", "The ETA the progress lines printed (each model's smallest batch first, then a fixed time "
              "per point plus a time per MAC, fitted to the points done) against the time that was in fact "
              "left, in the first run:", "",
              "| point | ETA printed | time left |", "|:---|---:|---:|"] + eta_rows(results[0][1][4])
    lines += ["", "Rerun: `python bench/sweep_bench.py` (writes this file and, with `--out reports`, "
              "the committed sweep report)."]
    from archcost.files import write_text

    print(f"wrote {write_text(pathlib.Path(args.out) / 'sweep_bench_cpu.md', chr(10).join(lines) + chr(10))}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
