"""`archcost fit`: the largest batch that fits a memory budget."""

import click

from archcost.cli.app import main
from archcost.cli.common import dtype_option, emit, fail, file_stem, format_option, guarded, input_size_option, nosave_option, out_dir, out_option, parse_sizes, progress, resolve_models, wrote
from archcost.report.columns import FIT_COLUMNS


@main.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--memory", "budget", required=True, metavar="SIZE|DEVICE",
              help="Memory budget: 16GiB, 16GB (10^9), 80G (= GiB), 512MiB, or a device name (h100, a100-80gb, "
                   "rtx4090, t4, ...: its nominal memory).")
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
def fit(models, budget, train, optimizer, input_size, dtype, amp, freeze, checkpoint, max_batch, fmt, out, no_save):
    """The largest batch of each of MODELS that fits in --memory, with what fills it at that
    batch (weights, optimizer state, gradients, activations, temporaries, input) and the
    headroom. Every candidate batch is measured (a meta pass), never extrapolated: the
    answer B fits and B + 1 was measured not to. Writes reports/fit_<conditions>.csv,
    fit_curve_<conditions>.csv and fit_<conditions>.png unless --no-save."""
    import pandas as pd

    from archcost.devices.budgets import describe, parse_memory
    from archcost.memory.fit import fit as fit_one
    from archcost.report.files import write_csv
    from archcost.report.tables import render
    from archcost.report.units import human_bytes

    try:
        budget_bytes = parse_memory(budget)
    except ValueError as exc:
        fail(str(exc))
    if amp:
        fail("fit --amp: autocast cannot run on the shape-only meta tensors the search measures; "
             "use --dtype float16 or bfloat16 (a model cast to it), or `archcost table --train --amp` at one batch")
    names = resolve_models(models)
    sizes = parse_sizes(input_size)
    folder = out_dir(out, no_save)
    rows, curve, notes = [], [], []
    with progress(names, "fitting") as bar:
        for n in bar:
            r = guarded(fit_one, n, budget_bytes, train=train, optimizer=optimizer, dtype=dtype,
                        input_size=sizes, freeze=freeze, max_batch=max_batch, curve_points=folder is not None,
                        checkpoint=checkpoint)
            row = {"model": r.model, "input_shape": r.breakdown.pop("input_shape", None), "mode": r.mode, "optimizer": optimizer if train else "", "dtype": dtype,
                   "budget_bytes": r.budget_bytes, "batch": r.batch, **r.breakdown,
                   "headroom_bytes": r.headroom_bytes,  # negative: over the budget (at batch 1)
                   "measured_batches": len(r.curve)}
            if r.batch == 0:
                notes.append(f"{r.model} does not fit at batch 1: it needs {human_bytes(r.needed_bytes)}, "
                             f"{human_bytes(r.needed_bytes - budget_bytes)} over the budget")
            elif r.capped:
                notes.append(f"{r.model}: batch {r.batch} is --max-batch; a larger batch may fit")
            rows.append(row)
            curve += [{"model": r.model, "batch_size": b, "needed_bytes": v} for b, v in r.curve.items()]
    frame = pd.DataFrame(rows)
    what = (f"one training step, torch.optim {optimizer} (foreach)" if train else "an inference forward (no grad)")
    notes = [f"budget {describe(budget)} = {budget_bytes:,} bytes; {what}, {dtype}"
             + (f"; frozen: {', '.join(freeze)}" if freeze else "")
             + (f"; checkpointed: {', '.join(checkpoint)}" if checkpoint else "") + ".",
             "needed = " + ("train peak" if train else "weights + buffers + inference peak")
             + " + input batch; the parts are what was alive at the peak (they sum to it); "
             "the usable memory of a GPU is less than its nominal size (CUDA context, allocator rounding)."] + notes
    emit(render(frame, fmt, FIT_COLUMNS, notes=notes))
    if folder is not None:
        from archcost.report.plots_fit import fit_curves

        from archcost.report.files import file_set
        from archcost.report.naming import size_token, subset

        size = size_token(sizes)
        tag = (f"{'train-' + optimizer if train else 'inference'}_{dtype}_{file_stem(budget)}"
               + (f"_in{size}" if size else "") + ("_freeze" if freeze else "") + ("_ckpt" if checkpoint else "")
               + subset(names))
        curve_frame = pd.DataFrame(curve)
        with file_set(folder):
            paths = [write_csv(folder / f"fit_{tag}.csv", frame),
                     write_csv(folder / f"fit_curve_{tag}.csv", curve_frame), folder / f"fit_{tag}.png"]
            fit_curves(curve_frame, frame, budget_bytes, paths[2],
                       f"What fits in {budget.strip()} ({what}, {dtype})",
                       "memory needed (GiB): " + ("train peak" if train else "weights + inference peak") + " + input")
        wrote(paths)
