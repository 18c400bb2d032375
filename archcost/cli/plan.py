"""`archcost plan`: what to checkpoint so that a training step fits, at the least recompute."""

import json

import click

from archcost.cli.app import main
from archcost.cli.common import (FiniteFloat, dtype_option, emit, fail, file_stem, format_option, guarded, input_size_option,
                                 nosave_option, one_model, out_dir, out_option, parse_sizes, step, wrote)


@main.command()
@click.argument("model")
@click.option("--memory", "budget", required=True, metavar="SIZE|DEVICE",
              help="Memory budget: 16GiB, 16GB (10^9), 80G (= GiB), 512MiB, or a device name (h100, a100-80gb, "
                   "rtx4090, t4, ...: its nominal memory).")
@click.option("--train", is_flag=True, default=True, show_default=True,
              help="A whole training step (the only mode: checkpointing changes training memory only).")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=1, show_default=True, help="Batch size.")
@click.option("--max-batch", is_flag=True,
              help="Instead of -b: the largest batch that fits with checkpointing, and its plan.")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam", "adamw"]), default="sgd",
              show_default=True, help="torch.optim optimizer of the training step (foreach).")
@input_size_option
@dtype_option
@click.option("--freeze", multiple=True, metavar="PATTERN",
              help="Freeze the parameters whose name matches (fnmatch, e.g. 'features.*'); repeatable.")
@click.option("--seconds", type=FiniteFloat(min=0.5), default=20.0, show_default=True,
              help="CPU-time limit of the search, in seconds (the plan found by then is reported, and said "
                   "to be unproven).")
@format_option
@out_option
@nosave_option
@click.pass_context
def plan(ctx, model, budget, train, batch_size, max_batch, optimizer, input_size, seq_len, dtype, freeze, seconds, fmt, out,
         no_save):
    """Which modules of MODEL to checkpoint (torch.utils.checkpoint around each) so that a
    training step at -b B fits in --memory, with the least recompute MACs; or, with
    --max-batch, the largest batch that fits with checkpointing. The search ranks sets by an
    estimate from one profiled step; every set it reports is measured (a whole step on meta
    tensors, as `table --train --checkpoint`), and set beside three references measured the
    same way: no checkpointing, every block checkpointed, and Chen et al.'s sqrt(n)
    segments. Prints the plan as --checkpoint patterns and as Python. Writes
    reports/plan_<model>_<conditions>.csv and .png unless --no-save."""
    from archcost.devices.budgets import describe, parse_memory
    from archcost.memory.plan import plan as plan_one, snippet

    try:
        budget_bytes = parse_memory(budget)
    except ValueError as exc:
        fail(str(exc))
    if max_batch and ctx.get_parameter_source("batch_size") == click.core.ParameterSource.COMMANDLINE:
        fail("give -b B (plan at that batch) or --max-batch (the largest batch with a plan), not both")
    name = one_model(model)
    sizes = parse_sizes(input_size, seq_len)
    folder = out_dir(out, no_save)
    if max_batch:
        step(f"plan: searching the largest batch of {name} that fits {budget.strip()} with checkpointing")
    r = guarded(plan_one, name, budget_bytes, batch=batch_size, max_batch=max_batch, optimizer=optimizer,
                dtype=dtype, input_size=sizes, freeze=freeze, seconds=seconds)
    mods = [s[0] for s in r.plan.segments] if r.plan is not None else []
    _render(r, fmt, r.patterns, snippet(mods) if mods else "", describe(budget))
    if folder is not None:
        _save(folder, r, name, optimizer, dtype, budget)


def _render(r, fmt, pats, code, budget_text):
    import pandas as pd

    from archcost.report.plan_table import PLAN_COLUMNS, plan_json, plan_rows, plan_text
    from archcost.report.tables import render

    if fmt == "json":
        emit(json.dumps(plan_json(r, pats, code), indent=1, allow_nan=False) + "\n")
    elif fmt == "text":
        emit(plan_text(r, pats, code, budget_text) + "\n")
    else:
        notes = [f"--checkpoint patterns: {' '.join(pats)}"] if pats and fmt == "markdown" else []
        emit(render(pd.DataFrame(plan_rows(r)), fmt, PLAN_COLUMNS, notes=notes + list(r.notes)))


def _save(folder, r, name, optimizer, dtype, budget):
    import pandas as pd

    from archcost.report.files import file_set, write_csv
    from archcost.report.plan_table import plan_rows
    from archcost.report.plots_plan import plan_chart

    rows = plan_rows(r)
    tag = f"plan_{file_stem(name)}_train-{optimizer}_{dtype}_b{r.batch}_{file_stem(budget)}"
    paths = [folder / f"{tag}.csv", folder / f"{tag}.png"]
    with file_set(folder):
        write_csv(paths[0], pd.DataFrame(rows))
        plan_chart([x for x in rows if x["recompute_macs"] is not None], r.budget_bytes,
                   f"{r.model}, batch {r.batch}, {optimizer}: checkpoint sets, measured", paths[1])
    wrote(paths)
