"""`archcost table MODELS --jobs N`: a zoo in one command. Each model runs in its own worker
with a time and a memory limit; rows stream to reports/<what>_zoo_<conditions>.csv as they
finish and a rerun adds only the missing ones (archcost/compare/zoo_run.py)."""

import click

from archcost.cli.common import FiniteFloat, conditions, emit, fail, guarded, out_dir, say, wrote

zoo_options = (
    click.option("--jobs", type=click.IntRange(min=1), default=None, metavar="N",
                 help="Run the models as a zoo: each in its own worker process, N at a time, with --timeout and "
                      "--memory-limit; a crash, an out-of-memory or a hang is a row with its status, the rest go on; "
                      "rows stream to reports/<what>_zoo_<conditions>.csv, and a rerun adds only the missing rows."),
    click.option("--shard", default=None, metavar="I/N",
                 help="With --jobs: only the I-th of N deterministic slices of the model list (1/4 ... 4/4), for a "
                      "Slurm array or a CI matrix; the shards' CSVs concatenate."),
    click.option("--timeout", "timeout_s", type=FiniteFloat(min=1), default=600.0, show_default=True,
                 help="With --jobs: seconds a model may take before its worker is killed (status timeout)."),
    click.option("--memory-limit", default="3GiB", show_default=True, metavar="SIZE",
                 help="With --jobs: resident memory a worker may hold (all of it, the libraries it shares with the other workers "
                      "included: what ps shows) before it is killed (status memory)."),
    click.option("--retry-failed", is_flag=True, help="With --jobs: run again the models whose row is not ok."),
    click.option("--fvcore", is_flag=True, help="With --jobs: also fvcore's count (traced on real CPU tensors, weights "
                 "zeroed, not initialised), and the difference named by operator with the operators fvcore has no "
                 "rule for (skipped where the model would take over half the memory limit)."),
)

_REFUSED = {"latency": "--latency", "train": "--train", "target": "--target", "freeze": "--freeze",
            "checkpoint": "--checkpoint", "amp": "--amp", "channels_last": "--channels-last"}


def check_zoo_options(jobs, shard, retry_failed, fvcore, given):
    """--shard, --retry-failed and --fvcore belong to a zoo run; a zoo run counts on CPU
    and refuses the measuring options (timing and training runs belong in a plain table)."""
    if jobs is None:
        for flag, on in (("--shard", shard), ("--retry-failed", retry_failed), ("--fvcore", fvcore)):
            if on:
                fail(f"{flag} goes with --jobs N (a zoo run)")
        return
    for key, flag in _REFUSED.items():
        if given.get(key):
            fail(f"{flag} is not part of a zoo run (--jobs): run `archcost table` on the models without --jobs")
    if given.get("device") == "cuda":
        fail("a zoo run (--jobs) measures on cpu: drop --device cuda")
    if given.get("no_save"):
        fail("a zoo run (--jobs) streams its rows to a CSV, so it resumes: drop --no-save (--out DIR chooses where)")


def zoo_table(patterns, names, sizes, batch_size, dtype, fmt, out, name, no_memory, jobs, shard, timeout_s,
              memory_limit, retry_failed, fvcore):
    import pandas as pd

    from archcost.compare.zoo_run import ZooOptions, run_zoo
    from archcost.devices.budgets import parse_memory
    from archcost.report.naming import zoo_stem
    from archcost.zoo import workers

    try:
        limit = parse_memory(memory_limit)
    except ValueError as exc:
        fail(f"--memory-limit: {exc}")
    part = ""
    if shard:
        try:
            i, n = workers.parse_shard(shard)
        except ValueError as exc:
            fail(str(exc))
        names = workers.shard(names, i, n)
        part = f"_shard{i}of{n}"
    folder = out_dir(out, False)
    tag = conditions("cpu", dtype, False, False, batch_size, input_size=sizes, extra=["nomem" if no_memory else ""])
    stem = f"{zoo_stem(patterns, name)}_zoo_{tag}{part}"
    options = ZooOptions(input_size=sizes, batch_size=batch_size, dtype=dtype, memory=not no_memory, fvcore=fvcore,
                         memory_limit_bytes=limit, conditions=tag)
    run = guarded(run_zoo, names, folder / f"{stem}.csv", options, jobs=jobs, timeout_s=timeout_s,
                  retry_failed=retry_failed, write=say)
    frame = pd.read_csv(folder / f"{stem}.csv")
    frame = frame[frame["conditions"] == tag]
    from archcost.report.zoo_plot import zoo_figure, zoo_summary

    zoo_figure(frame, folder / f"{stem}.png", f"{zoo_stem(patterns, name)} zoo, cpu, {dtype}, batch {batch_size}")
    if fmt in ("csv", "json"):
        emit(frame.to_csv(index=False) if fmt == "csv" else frame.to_json(orient="records", indent=1) + "\n")
    else:
        emit(zoo_summary(frame, run.added, run.skipped, run.seconds, jobs) + "\n")
    wrote([folder / f"{stem}.csv", folder / f"{stem}.png"])
