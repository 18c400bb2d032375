"""The timm zoo report: every model ``timm.list_models()`` returns, counted in its own worker.

    python bench/timm_zoo.py [--jobs 2] [--timeout 180] [--shard I/N] [--summary-only]

runs ``archcost table 'timm:*' --jobs N`` (resumable: a rerun adds only the missing rows)
and writes ``reports/timm_zoo_cpu_float32_b1.csv`` and ``.png``, then
``reports/timm_zoo_cpu_float32_b1.md``: the run's wall time, the machine's load average
before and after, models done of the registry, statuses, seconds per model (median, mean,
slowest), the largest worker memory, and fvcore's agreement by operator.

Performance target (issue #23): the whole registry in <= 30 minutes with --jobs 2 on the
2-core development machine, <= 3 GB per worker. The summary says whether this run met it.
"""

import argparse
import os
import pathlib
import signal
import sys
import time
import types

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "timm_zoo_cpu_float32_b1"
TARGET_S = 30 * 60
WORKER_LIMIT = 3 * 2 ** 30


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per model")
    parser.add_argument("--shard", default=None)
    parser.add_argument("--summary-only", action="store_true", help="rewrite the .md from the CSV, run nothing")
    args = parser.parse_args(argv)
    # torchvision's CUDA wheel beside a CPU torch on the development machine (timm imports it)
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    sys.path.insert(0, str(ROOT))
    # Stopping the run (SIGTERM, or SIGINT even where a background shell ignores it) ends it
    # as Ctrl-C does: the workers are killed, the CSV keeps every finished row, the summary is written.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    load_before = os.getloadavg()
    csv = REPORT.with_suffix(".csv")
    args.rows_before = sum(1 for _ in open(csv)) - 1 if csv.exists() else 0
    start = time.monotonic()
    if not args.summary_only:
        from archcost.cli import main as cli

        command = ["table", "timm:*", "--jobs", str(args.jobs), "--timeout", str(args.timeout),
                   "--memory-limit", str(WORKER_LIMIT), "--out", str(REPORT.parent), "--fvcore"]
        if args.shard:
            command += ["--shard", args.shard]
        try:
            cli(command)  # archcost's Group.main exits with the command's code
        except SystemExit as exc:  # 130: stopped with Ctrl-C / SIGINT; the CSV keeps every finished row
            args.exit = exc.code
    wall = time.monotonic() - start
    write_summary(wall, load_before, os.getloadavg(), args)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def write_summary(wall, load_before, load_after, args):
    import pandas as pd
    import timm

    frame = pd.read_csv(REPORT.with_suffix(".csv"))
    total = len(timm.list_models())
    ok = frame[frame["status"] == "ok"]
    secs = frame["seconds"].astype(float)
    lines = [f"# timm zoo, CPU float32, batch 1 (timm {timm.__version__})", ""]
    if not args.summary_only:
        stopped = getattr(args, "exit", 0) not in (0, None)
        lines += [f"- this run: {wall / 60:.1f} min wall" + (f", stopped (exit {args.exit}) before the end"
                                                            if stopped else "")
                  + f" with --jobs {args.jobs} (timeout {args.timeout:g} s and "
                  f"{WORKER_LIMIT / 2 ** 30:g} GiB per worker) on {os.cpu_count()} cores; load average "
                  f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1-minute)"]
        added = len(frame) - args.rows_before
        if added > 0:
            lines += [f"- throughput: {added} models in {wall / 60:.1f} min = {wall / added:.1f} s of wall time per "
                      f"model; at this rate the whole registry takes {total * wall / added / 60:.0f} min"]
    lines += [f"- rows: {len(frame)} of the {total} models timm.list_models() returns; statuses: "
              + ", ".join(f"{s} {n}" for s, n in frame["status"].value_counts().items()),
              f"- seconds per model (worker wall time, counts + memory + fvcore): median {secs.median():.1f}, "
              f"mean {secs.mean():.1f}, slowest {secs.max():.1f} ({frame.loc[secs.idxmax(), 'model']}); "
              f"at the mean, the registry takes {total * secs.mean() / max(1, args.jobs) / 60:.0f} min with "
              f"--jobs {args.jobs} on a machine as loaded as this one",
              f"- largest worker resident memory: {frame['worker_max_rss_bytes'].max() / 2 ** 30:.2f} GiB "
              f"(limit {WORKER_LIMIT / 2 ** 30:g} GiB; a model over it is a `memory` row)"]
    fv = frame[frame["fvcore_status"] == "ok"]
    if len(fv):
        same = fv["fvcore_difference"].astype(float) == 0
        ops = fv["fvcore_difference_by_operator"].fillna("").str.split("; ").explode()
        ops = ops[ops != ""].str.rsplit(" ", n=1).str[0].value_counts()
        lines += [f"- fvcore ran on {len(fv)} models: equal on {int(same.sum())}; where they differ, by operator "
                  "(models): " + ", ".join(f"{op} {n}" for op, n in ops.items())]
        missed = frame.loc[frame["fvcore_status"] != "ok", "fvcore_status"].fillna("(counts failed)")
        if len(missed):
            lines += ["- fvcore not run or failed: " + ", ".join(f"{s} {n}" for s, n in missed.value_counts().items())]
    met = len(frame) >= total and not args.summary_only and wall <= TARGET_S
    lines += ["", "Target (issue #23): the whole registry in <= 30 min with --jobs 2, <= 3 GB per worker: "
              + ("met by this run." if met else "not shown by this run (see the figures above).")]
    REPORT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
