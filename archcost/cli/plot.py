"""`archcost plot`: figures from the zoo or from a CSV archcost wrote."""

import pathlib

import click

from archcost.cli.app import main
from archcost.cli.common import fail, guarded, out_dir, out_option, resolve_models, wrote
from archcost.report.notes import sweep_title


@main.group(invoke_without_command=True)
@click.pass_context
def plot(ctx):
    """Figures from the zoo or from a CSV archcost wrote."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())

@plot.command("lineage")
@click.argument("models", nargs=-1)
@click.option("--memory", "memory_col", type=click.Choice(["train_bytes", "peak_bytes"]), default="train_bytes",
              show_default=True, help="Memory column of the second figure.")
@out_option
def plot_lineage(models, memory_col, out):
    """Published top-1 accuracy against GMACs (reports/accuracy_vs_macs.png) and against
    memory (reports/accuracy_vs_<memory>.png, batch 1): bubble area = params on one
    absolute scale, colour = family, marker = accuracy protocol. MODELS: names, wildcards
    or families of the zoo (default: all). Also writes reports/lineage.csv."""
    from archcost.compare.lineage import lineage_frame
    from archcost.report.files import write_csv
    from archcost.report.plots import accuracy_vs_cost

    names = [n for n in resolve_models(models, ["*"]) if ":" not in n]
    if len(names) != len(resolve_models(models, ["*"])):
        fail("plot lineage takes zoo models (their published accuracy is stored with them), not file.py:builder")
    folder = out_dir(out, False)
    frame = guarded(lineage_frame, names)
    targets = [folder / "accuracy_vs_macs.png", folder / f"accuracy_vs_{memory_col}.png"]
    accuracy_vs_cost(frame, targets[0], "macs", "Published ImageNet top-1 accuracy against multiply-adds")
    accuracy_vs_cost(frame, targets[1], memory_col, "Published ImageNet top-1 accuracy against "
                     + ("training memory" if memory_col == "train_bytes" else "inference peak memory") + " (batch 1)")
    wrote([write_csv(folder / "lineage.csv", frame)] + targets)

@plot.command("sweep")
@click.argument("csv", type=click.Path(dir_okay=False, exists=True))
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="PNG to write (default: the CSV's name with .png).")
def plot_sweep(csv, output):
    """Redraw a sweep's figure from its CSV (reports/sweep_<conditions>.csv), without
    measuring again."""
    import pandas as pd

    from archcost.report.plots import sweep as draw

    try:
        frame = pd.read_csv(csv)
    except Exception as exc:
        fail(f"{csv!r} is not a readable CSV: {exc}")
    need = {"model", "batch_size", "peak_bytes", "train_bytes"}
    if not need <= set(frame.columns):
        fail(f"{csv!r} is not a sweep CSV: it lacks {', '.join(sorted(need - set(frame.columns)))} "
             "(write one with `archcost sweep`)")
    if frame["batch_size"].nunique() < 2:
        fail(f"{csv!r} is not a sweep CSV: it holds one batch size ({', '.join(map(str, frame['batch_size'].unique()))}), "
             "a sweep several (write one with `archcost sweep MODEL --batch-sizes 1,2,4`)")
    target = pathlib.Path(output or pathlib.Path(csv).with_suffix(".png"))
    if target.suffix.lower() not in (".png", ".svg", ".pdf"):
        fail(f"--output {str(target)!r} must end in .png, .svg or .pdf")
    from archcost.report.files import ensure_dir

    guarded(ensure_dir, target.parent, "choose another --output")  # created if missing
    rows = frame.dropna(subset=["params"]) if "params" in frame else frame
    draw(frame, target, sweep_title(rows), latency="latency_ms" in frame and frame["latency_ms"].notna().any())
    wrote([target])
