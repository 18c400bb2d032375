"""`archcost fit`: the largest batch that fits a memory budget."""

import sys

import click

from archcost.cli.app import main
from archcost.cli.common import dtype_option, emit, fail, file_stem, format_option, guarded, input_size_option, nosave_option, out_dir, out_option, parse_sizes, progress, resolve_models, wrote
from archcost.report.columns import FIT_COLUMNS

GPU_FIT_COLUMNS = ["model", "gpu", "batch", "tensors_bytes", "rounding_bytes", "workspace_bytes",
                   "reserved_free_bytes", "context_bytes", "driver_used_bytes", "usable_bytes", "headroom_bytes",
                   "breakers"]


def _reserve(text, of_bytes):
    """--reserve: a size (512MiB, 1GB) or a percentage of ``of_bytes`` (10%)."""
    from archcost.devices import by_key, parse_memory

    if not text:
        return 0
    t = text.strip()
    if t.endswith("%"):
        try:
            pct = float(t[:-1])
        except ValueError:
            pct = -1
        if not 0 <= pct < 100:
            fail(f"--reserve {text!r}: a percentage is 0 to 100 (exclusive), e.g. 10%")
        return int(of_bytes * pct / 100)
    if by_key(t) is not None:
        fail(f"--reserve {text!r} is a device name: give a size (512MiB, 1GB) or a percentage (10%)")
    try:
        return parse_memory(t)
    except ValueError:
        fail(f"--reserve {text!r} is not understood: give a size (512MiB, 1GB) or a percentage (10%)")


@main.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--memory", "budget", required=True, metavar="SIZE|GPU",
              help="A GPU of `archcost devices` (t4, h100, a100-80gb, rtx4090 ...): its ledger (the total its "
                   "driver reports, less the CUDA context, against the caching allocator's reserved memory); or a "
                   "size: 16GiB, 16GB (10^9), 80G (= GiB), 512MiB: the tensors' ledger (or --gpu's).")
@click.option("--gpu", "gpu_name", metavar="GPU",
              help="With a --memory size: use this GPU's ledger (kernels, workspaces, context) with that size as "
                   "its usable memory (a shared or partitioned card).")
@click.option("--reserve", metavar="SIZE|PCT", help="Your own margin off the budget: 1GiB, or 10% (of the usable "
                                                    "memory, or of a size budget).")
@click.option("--cudnn-workspace", "cudnn_workspace", metavar="SIZE",
              help="cuDNN's workspace per convolution for a GPU ledger (it depends on the algorithm cuDNN picks at "
                   "run time; default 0, an estimate that says so).")
@click.option("--train/--inference", default=True, show_default=True,
              help="A whole training step (forward, backward, optimizer step) or an inference forward.")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam", "adamw"]), default="sgd",
              show_default=True, help="torch.optim optimizer of the training step (foreach).")
@input_size_option
@dtype_option
@click.option("--amp", is_flag=True, help="Not supported by fit: autocast needs real tensors (use --dtype).")
@click.option("--freeze", multiple=True, metavar="PATTERN",
              help="Freeze the parameters whose name matches (fnmatch, e.g. 'features.*'); repeatable.")
@click.option("--checkpoint", multiple=True, metavar="SEGMENTS",
              help="Activation checkpointing of the outermost modules matching (fnmatch: 'layer?', 'layer?.*'; "
                   "'top' = each child); repeatable.")
@click.option("--max-batch", type=click.IntRange(min=1), default=1 << 20, show_default=True,
              help="Largest batch size tried.")
@format_option
@out_option
@nosave_option
def fit(models, budget, gpu_name, reserve, cudnn_workspace, train, optimizer, input_size, seq_len, dtype, amp,
        freeze,
        checkpoint, max_batch, fmt, out, no_save):
    """The largest batch of each of MODELS that fits in --memory, such that every smaller
    batch fits too (memory is not assumed to grow with the batch; larger batches that fit
    anyway are named), with what fills the memory at that batch and the headroom. With a
    GPU, the answer is the GPU's ledger: tensors, allocator rounding, workspaces, cached
    segments and CUDA context, each marked exact, modelled or estimated. Writes
    reports/fit_<conditions>.csv, fit_curve_<conditions>.csv and fit_<conditions>.png
    unless --no-save. Exit status 1 when some model does not fit even at batch 1 (the
    report is still written), 2 for a usage error."""
    from archcost.devices import parse_memory
    from archcost.memory.ledger import gpu

    if amp:
        fail("fit --amp: autocast cannot run on the shape-only meta tensors the search measures; "
             "use --dtype float16 or bfloat16 (a model cast to it), or `archcost table --train --amp` at one batch")
    target = gpu(budget)
    if gpu_name:
        g = gpu(gpu_name)
        if g is None:
            fail(f"--gpu {gpu_name!r} is not a GPU of `archcost devices`")
        if target is not None:
            fail("--gpu takes a --memory size (the GPU's usable memory); --memory already names a GPU")
    try:
        size = None if target is not None else parse_memory(budget)
    except ValueError as exc:
        fail(str(exc))
    if gpu_name:
        from dataclasses import replace

        target = replace(g, usable_bytes=size, usable_kind="exact", usable_note=f"--memory {budget.strip()}")
    try:
        cudnn = parse_memory(cudnn_workspace) if cudnn_workspace else 0
    except ValueError as exc:
        fail(f"--cudnn-workspace: {exc}")
    if cudnn and target is None:
        fail("--cudnn-workspace applies to a GPU ledger: give --memory GPU or --gpu GPU")
    reserve_bytes = _reserve(reserve, target.usable_bytes if target is not None else size)
    names = resolve_models(models)
    sizes = parse_sizes(input_size, seq_len)
    folder = out_dir(out, no_save)
    run = dict(train=train, optimizer=optimizer, dtype=dtype, input_size=sizes, freeze=freeze, max_batch=max_batch,
               curve_points=folder is not None, checkpoint=checkpoint)
    what = (f"one training step, torch.optim {optimizer} (foreach)" if train else "an inference forward (no grad)")
    conditions = (f"{what}, {dtype}" + (f"; frozen: {', '.join(freeze)}" if freeze else "")
                  + (f"; checkpointed: {', '.join(checkpoint)}" if checkpoint else ""))
    if target is None:
        nothing = _tensor_ledger(names, budget, size, reserve_bytes, run, conditions, fmt, folder)
    else:
        nothing = _gpu_ledger(names, budget, target, reserve_bytes, cudnn, run, conditions, fmt, folder)
    if nothing:
        sys.exit(1)


def _tag(budget, train, optimizer, dtype, checkpoint, extra=""):
    return (f"{'train-' + optimizer if train else 'inference'}_{dtype}_{file_stem(budget)}" + extra
            + ("_ckpt" if checkpoint else ""))


def _tensor_ledger(names, budget, size, reserve_bytes, run, conditions, fmt, folder) -> bool:
    import pandas as pd

    from archcost.devices import describe
    from archcost.memory.fit import fit as fit_one
    from archcost.report.files import write_csv
    from archcost.report.tables import render
    from archcost.report.units import human_bytes

    budget_bytes = size - reserve_bytes
    rows, curve, notes = [], [], []
    with progress(names, "fitting") as bar:
        for n in bar:
            r = guarded(fit_one, n, budget_bytes, **run)
            rows.append({"model": r.model, "input_shape": r.breakdown.pop("input_shape", None), "mode": r.mode, "optimizer": run["optimizer"] if run["train"] else "",
                         "dtype": run["dtype"], "budget_bytes": r.budget_bytes, "batch": r.batch, **r.breakdown,
                         "headroom_bytes": r.headroom_bytes,  # negative: over the budget (at batch 1)
                         "breakers": " ".join(map(str, r.breakers)), "measured_batches": len(r.curve)})
            if r.batch == 0:
                notes.append(f"{r.model} does not fit at batch 1: it needs {human_bytes(r.needed_bytes)}, "
                             f"{human_bytes(r.needed_bytes - budget_bytes)} over the budget")
            elif r.capped:
                notes.append(f"{r.model}: batch {r.batch} is --max-batch; a larger batch may fit")
            if r.breakers:
                notes.append(f"{r.model}: batch {r.batch + 1} does not fit, yet {', '.join(map(str, r.breakers))} "
                             f"do: the answer is the largest batch that fits with every smaller one")
            if r.search_note:
                notes.append(f"{r.model}: {r.search_note}")
            curve += [{"model": r.model, "batch_size": b, "needed_bytes": v} for b, v in r.curve.items()]
    frame = pd.DataFrame(rows)
    notes = [f"budget {describe(budget)} = {size:,} bytes"
             + (f", less the reserve {reserve_bytes:,}" if reserve_bytes else "") + f"; {conditions}.",
             "ledger: tensors: needed = " + ("train peak" if run["train"] else "weights + buffers + inference peak")
             + " + input batch, what the tensors take (the parts, alive at the peak, sum to it); no allocator, "
             "workspace or CUDA context: for a GPU's ledger give --memory GPU (t4, a100 ...) or --gpu GPU."] + notes
    emit(render(frame, fmt, FIT_COLUMNS, notes=notes))
    if folder is not None:
        from archcost.report.plots_fit import fit_curves

        from archcost.report.files import file_set
        from archcost.report.naming import size_token, subset

        size = size_token(run["input_size"])
        tag = (_tag(budget, run["train"], run["optimizer"], run["dtype"], run["checkpoint"])
               + (f"_in{size}" if size else "") + ("_freeze" if run["freeze"] else "") + subset(names))
        curve_frame = pd.DataFrame(curve)
        with file_set(folder):
            paths = [write_csv(folder / f"fit_{tag}.csv", frame),
                     write_csv(folder / f"fit_curve_{tag}.csv", curve_frame), folder / f"fit_{tag}.png"]
            fit_curves(curve_frame, frame, budget_bytes, paths[2], f"What fits in {budget.strip()} ({conditions})",
                       "memory needed (GiB): " + ("train peak" if run["train"] else "weights + inference peak")
                       + " + input")
        wrote(paths)
    return any(r["batch"] == 0 for r in rows)


def _gpu_ledger(names, budget, target, reserve_bytes, cudnn, run, conditions, fmt, folder) -> bool:
    import pandas as pd

    from archcost.memory.fit_gpu import fit_gpu_named
    from archcost.report.files import write_csv
    from archcost.report.ledger_text import curve_rows, gpu_fit_row, ledger_line, part_errors
    from archcost.report.tables import render
    from archcost.report.units import human_bytes

    rows, curve, lines, notes, errors = [], [], [], [], []
    with progress(names, "fitting") as bar:
        for n in bar:
            r = guarded(fit_gpu_named, n, target, reserve_bytes=reserve_bytes, cudnn_workspace_bytes=cudnn, **run)
            rows.append(gpu_fit_row(r, run["optimizer"], run["dtype"]))
            lines.append(ledger_line(r))
            if r.batch == 0:
                notes.append(f"{r.model} does not fit at batch 1 on {target.key}: "
                             + (r.ledger.out_of_memory or "over the budget"))
            if r.search.breakers:
                notes.append(f"{r.model}: batch {r.batch + 1} does not fit, yet {', '.join(map(str, r.search.breakers))} "
                             "do: the answer is the largest batch that fits with every smaller one")
            if r.search.note:
                notes.append(f"{r.model}: {r.search.note}")
            notes += [f"{r.model}: {x}" for x in r.ledger.notes if x != target.usable_note]
            errors = errors or part_errors(r)
            curve += curve_rows(r)
    frame = pd.DataFrame(rows)
    budget_line = (f"ledger: {target.key} (compute capability {target.compute_capability[0]}."
                   f"{target.compute_capability[1]}): usable {target.usable_bytes:,} bytes ({target.usable_kind}: "
                   f"{target.usable_note}) - CUDA context {human_bytes(target.context_bytes)} (estimated)"
                   + (f" - reserve {human_bytes(reserve_bytes)}" if reserve_bytes else "")
                   + f" = {human_bytes(target.usable_bytes - target.context_bytes - reserve_bytes)} for the caching "
                   "allocator, against its predicted reserved memory (workspaces inside it); the run replayed "
                   f"through a model of the allocator, two passes; {conditions}.")
    notes = [budget_line] + lines + notes + ["how each part was obtained and how far off it could be:"] + errors
    emit(render(frame, fmt, GPU_FIT_COLUMNS, notes=notes))
    if folder is not None:
        from archcost.report.plots_ledger import ledger_parts

        tag = _tag(budget, run["train"], run["optimizer"], run["dtype"], run["checkpoint"],
                   "" if target.key == file_stem(budget) else f"_{target.key}")
        curve_frame = pd.DataFrame(curve)
        paths = [write_csv(folder / f"fit_{tag}.csv", frame), write_csv(folder / f"fit_curve_{tag}.csv", curve_frame),
                 folder / f"fit_{tag}.png"]
        ledger_parts(curve_frame, frame, target.usable_bytes, target.usable_bytes - reserve_bytes, paths[2],
                     f"What fits on {target.key} ({conditions}): the device ledger, predicted")
        wrote(paths)
    return any(r["batch"] == 0 for r in rows)
