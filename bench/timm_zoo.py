"""The timm zoo report: every model ``timm.list_models()`` returns, counted in its own worker.

    python bench/timm_zoo.py [--jobs 2] [--timeout 120] [--shard I/N] [--fresh] [--summary-only]

runs ``archcost table 'timm:*' --jobs N --fvcore`` (resumable: a rerun adds only the missing
rows; ``--fresh`` starts a new CSV) and writes ``reports/timm_zoo_cpu_float32_b1.csv`` and
``.png``, then ``reports/timm_zoo_cpu_float32_b1.md``: the run's wall time and CPU time, the
machine's load average before and after, models done of the registry, statuses, seconds per
model (median, mean, slowest), the largest worker memory, fvcore's agreement by operator
and the operators fvcore has no rule for, and what the memory columns hold (zoo rows: meta
tensors, no kernel scratch; ``compare/zoo_run.py``).

Performance target (issue #23): the whole registry in <= 30 minutes with --jobs 2 on the
2-core development machine, <= 3 GB per worker. The summary says whether this run met it.
"""

import argparse
import os
import pathlib
import re
import signal
import sys
import time
import types

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "timm_zoo_cpu_float32_b1"
TARGET_S = 30 * 60
WORKER_LIMIT = 3 * 10 ** 9  # 3 GB (issue #23): every resident page of a worker, its shared libraries included


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per model")
    parser.add_argument("--shard", default=None)
    parser.add_argument("--fresh", action="store_true", help="start a new CSV (the old one is removed first)")
    parser.add_argument("--summary-only", action="store_true", help="rewrite the .md from the CSV (the run's own time, load and CPU time from the .md before), run nothing")
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
    if args.fresh and not args.summary_only and csv.exists():
        csv.unlink()
    args.rows_before = sum(1 for _ in open(csv)) - 1 if csv.exists() else 0
    start = time.monotonic()
    cpu_start = _cpu_seconds()
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
    args.cpu_s = _cpu_seconds() - cpu_start
    write_summary(wall, load_before, os.getloadavg(), args)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _cpu_seconds() -> float:
    """CPU seconds of this process (the workers' own are in the CSV's cpu_seconds)."""
    t = os.times()
    return t.user + t.system


def write_summary(wall, load_before, load_after, args):
    import pandas as pd
    import timm

    frame = pd.read_csv(REPORT.with_suffix(".csv"))
    total = len(timm.list_models())
    secs = frame["seconds"].astype(float)
    lines = [f"# timm zoo, CPU float32, batch 1 (timm {timm.__version__})", ""]
    kept = []  # --summary-only: the run's own figures (not in the CSV) from the report before
    if args.summary_only and REPORT.with_suffix(".md").exists():
        kept = [line for line in REPORT.with_suffix(".md").read_text().splitlines()
                if line.startswith(("- this run:", "- throughput:", "- CPU time:"))]
        lines += kept
        found = re.search(r"this run: ([0-9.]+) min wall", kept[0]) if kept else None
        wall = float(found.group(1)) * 60 if found else float("inf")
    if not args.summary_only:
        stopped = getattr(args, "exit", 0) not in (0, None)
        lines += [f"- this run: {wall / 60:.1f} min wall" + (f", stopped (exit {args.exit}) before the end"
                                                            if stopped else "")
                  + f" with --jobs {args.jobs} (timeout {args.timeout:g} s and "
                  f"{WORKER_LIMIT / 1e9:g} GB of resident memory per worker) on {os.cpu_count()} cores; load average "
                  f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1-minute)"
                  + (f"; shard {args.shard}" if args.shard else "")]
        added = len(frame) - args.rows_before
        if added > 0:
            new = frame.iloc[len(frame) - added:]
            cpu = new["cpu_seconds"].astype(float)
            lines += [f"- throughput: {added} models in {wall / 60:.1f} min = {wall / added:.2f} s of wall time per "
                      f"model; at this rate the whole registry takes {total * wall / added / 60:.0f} min",
                      f"- CPU time: the workers {cpu.sum() / 60:.1f} min ({cpu.mean():.2f} s per model, "
                      f"{int(cpu.isna().sum())} killed before they said), this process {args.cpu_s / 60:.1f} min; "
                      f"on {args.jobs} idle cores the registry takes {total * cpu.mean() / args.jobs / 60:.0f} min "
                      f"+ this process's share (an estimate from the CPU time, valid for a machine with nothing "
                      "else running)"]
    # fvcore's stage at the limit: status memory, or (rows of a run before fvcore's stage said so)
    # an error whose reason is the allocation the worker's address-space cap refused
    fv_status = frame["fvcore_status"].copy()
    from archcost.zoo.workers import says_refused

    reasons = frame["fvcore_reason"].fillna("")
    refused = (fv_status == "error") & reasons.map(lambda r: "memoryerror" in r.lower() or says_refused(r))
    fv_status[refused] = "memory"
    frame["fvcore_status"] = fv_status
    hit = (frame["status"] == "memory") | (fv_status == "memory")
    n_memory = int(hit.sum())
    rss_done = frame.loc[~hit, "worker_max_rss_bytes"].astype(float)
    rss_all = frame["worker_max_rss_bytes"].astype(float)
    lines += [f"- rows: {len(frame)} of the {total} models timm.list_models() returns; statuses: "
              + ", ".join(f"{s} {n}" for s, n in frame["status"].value_counts().items()),
              f"- seconds per model (worker wall time, counts + memory + fvcore): median {secs.median():.2f}, "
              f"mean {secs.mean():.2f}, slowest {secs.max():.1f} ({frame.loc[secs.idxmax(), 'model']}); "
              f"at the mean, the registry takes {total * secs.mean() / max(1, args.jobs) / 60:.0f} min with "
              f"--jobs {args.jobs} on a machine as loaded as this one",
              f"- largest worker resident memory (every page it held, the libraries it shares with the server "
              f"included; `ru_maxrss` or the parent's reads of /proc): {rss_all.max() / 1e9:.2f} GB "
              f"({rss_all.max() / 2 ** 30:.2f} GiB) over all workers, {rss_done.max() / 1e9:.2f} GB over those that "
              f"never met the limit of {WORKER_LIMIT / 1e9:g} GB; {n_memory} met it (status or fvcore_status "
              "`memory`: an allocation refused under the worker's address-space cap, or the worker stopped; the "
              "counts are kept when they came before)",
              "- memory columns (`saved_bytes`, `peak_bytes`): measured on meta tensors (`memory_measured_on` "
              "meta; cpu where the forward needs values), without kernel scratch: `peak_bytes` leaves out what "
              "kernels allocate and free inside themselves (oneDNN reorders, im2col; `archcost table` on one model "
              "measures it on this CPU); attention and recurrent layers hold what meta's math decomposition holds "
              "(attention's score matrices), not CPU's fused kernels (the row's `notes` say so). "
              f"{int(frame['notes'].fillna('').str.contains('decomposition').sum())} rows have such layers"]
    fv = frame[frame["fvcore_status"] == "ok"]
    if len(fv):
        same = fv["fvcore_difference"].astype(float) == 0
        parts = fv["fvcore_difference_by_operator"].fillna("").str.split("; ").explode()
        parts = parts[parts != ""]
        ops = parts.str.extract(r"^(.*?) [+-]\d+", expand=False).value_counts()
        zeroed = int(fv["fvcore_reason"].fillna("").str.contains("not initialised").sum())
        lines += [f"- fvcore ran on {len(fv)} models, traced on real CPU tensors ({zeroed} with zeroed weights, not "
                  f"initialised; {len(fv) - zeroed} with the builder's initialisation, seed 0, where archcost counted on "
                  f"real tensors): equal on {int(same.sum())}; where they differ, by operator (models): "
                  + ", ".join(f"{op} {n}" for op, n in ops.items())]
        missing = parts.str.extract(r"no rule for (.*)\)$", expand=False).dropna().str.split(", ").explode()
        missing = missing.str.replace(r" x\d+$", "", regex=True).value_counts()
        if len(missing):
            lines += ["- operators fvcore has no rule for (it counts them 0), by the models they appear in: "
                      + ", ".join(f"{op} {n}" for op, n in missing.items())
                      + (" (aten::_convolution_mode: a convolution with padding='same', e.g. ConvMixer's depthwise "
                         "layers; fvcore's handle is aten::_convolution)" if "aten::_convolution_mode" in missing
                         else "")]
        missed = frame.loc[frame["fvcore_status"] != "ok", "fvcore_status"].fillna("(counts failed)")
        if len(missed):
            lines += ["- fvcore not run or failed: " + ", ".join(f"{s} {n}" for s, n in missed.value_counts().items())]
    met = (len(frame) >= total and (kept or not args.summary_only) and wall <= TARGET_S
           and rss_all.max() <= WORKER_LIMIT)
    lines += ["", "Target (issue #23): the whole registry in <= 30 min with --jobs 2, <= 3 GB per worker: "
              + ("met by this run." if met else "not shown by this run (see the figures above).")]
    REPORT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
