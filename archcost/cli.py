"""archcost command line: a thin click group. Heavy modules (torch, pandas, matplotlib)
are imported inside the commands, so ``archcost --help`` answers without torch."""

import pathlib
import sys

import click

FORMATS = ("text", "csv", "json", "markdown")
LINEUP = ["lenet5", "alexnet", "zfnet", "vgg16", "vgg19", "googlenet", "resnet18", "resnet50",
          "resnet152", "densenet121", "xception", "se_resnet50", "mobilenet_v2"]
TABLE_COLUMNS = ["model", "input_shape", "params", "macs", "flops", "activations",
                 "activation_bytes", "param_bytes"]
LAYER_COLUMNS = ["layer", "type", "output_shape", "params", "macs", "activations",
                 "activation_bytes", "aliased"]


class UserError(Exception):
    """A mistake in the user's input: printed as one line, exit code 2."""


def fail(message: str):
    raise UserError(message)


class Group(click.Group):
    """Turns usage errors and UserError into one line on stderr (exit 2), no traceback."""

    def main(self, args=None, prog_name=None, **kwargs):
        try:
            rv = super().main(args=args, prog_name=prog_name or "archcost", standalone_mode=False, **kwargs)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("archcost: aborted", err=True)
            sys.exit(1)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx else "archcost"
            click.echo(f"{where}: error: {e.format_message()} (see '{where} --help')", err=True)
            sys.exit(2)
        except UserError as e:
            click.echo(f"archcost: error: {e}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"archcost: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except BrokenPipeError:
            sys.exit(0)
        sys.exit(rv if isinstance(rv, int) else 0)


def _user_errors():
    """The exception types that mean a user mistake, imported lazily."""
    from archcost.analysis.engine import AnalysisError
    from archcost.report.files import OutputDirError
    from archcost.zoo.custom import BuilderError

    return (AnalysisError, OutputDirError, BuilderError)


def guarded(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except _user_errors() as exc:
        fail(str(exc))


def parse_sizes(values):
    from archcost.analysis.analyze import parse_input_size

    sizes = []
    for v in values:
        try:
            sizes.append(parse_input_size(v))
        except ValueError as exc:
            fail(str(exc))
    if not sizes:
        return None
    return sizes[0] if len(sizes) == 1 else sizes


def resolve_models(patterns, default=None):
    """Names, wildcards ('resnet*'), families ('vgg') or file.py:builder references."""
    from archcost.zoo.registry import list_models, unknown_model_message

    names = []
    for pat in patterns or default or []:
        if ":" in pat:
            names.append(pat)
            continue
        found = list_models(pat)
        if not found:
            fail(unknown_model_message(pat) if not any(ch in pat for ch in "*?[")
                 else f"no model matches {pat!r}: see `archcost list`")
        names += [n for n in found if n not in names]
    return names


def out_dir(out, no_save):
    if no_save:
        return None
    from archcost.report.files import ensure_dir

    return guarded(ensure_dir, out)


def file_stem(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name.split("/")[-1])


def emit(text: str):
    click.echo(text, nl=False)


def wrote(paths):
    if paths:
        click.echo("wrote " + ", ".join(str(p) for p in paths), err=True)


input_size_option = click.option(
    "--input-size", "input_size", multiple=True, metavar="N|CxHxW",
    help="Input size without batch: 224 (square, the model's channels) or 3x224x224. "
         "Repeat for models with several inputs. Default: the model's paper input.")
batch_option = click.option("--batch-size", "-b", type=click.IntRange(min=1), default=1,
                            show_default=True, help="Batch size.")
format_option = click.option("--format", "fmt", type=click.Choice(FORMATS), default="text",
                             show_default=True, help="Output format (csv/json carry raw integers).")
out_option = click.option("--out", type=click.Path(file_okay=False), default="reports",
                          show_default=True, help="Folder for the CSV and plot.")
nosave_option = click.option("--no-save", is_flag=True, help="Print only; write no files.")
engine_option = click.option("--engine", type=click.Choice(["auto", "meta", "cpu", "fvcore"]),
                             default="auto", show_default=True,
                             help="auto: shape-only meta pass (falls back to real CPU tensors); "
                                  "fvcore: fvcore's JIT trace on real tensors.")
dtype_option = click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]),
                            default="float32", show_default=True, help="Element type of weights and activations.")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archcost")
def main():
    """What does a CNN architecture really cost? Parameters, multiply-adds (MACs),
    activation memory and time of the classic CNN lineage, measured.

    Conventions: 1 MAC = one fused multiply-add; FLOPs = 2 x MACs; *_bytes are bytes.
    """


@main.command("list")
@click.argument("pattern", required=False, default="*")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
def list_cmd(pattern, fmt):
    """List zoo models (PATTERN: a name, wildcard or family), grouped by family."""
    import pandas as pd

    from archcost.report.tables import render
    from archcost.zoo.registry import get_spec, list_models

    names = list_models(pattern)
    if not names:
        fail(f"no model matches {pattern!r}: try `archcost list` for all")
    rows = []
    for n in names:
        spec = get_spec(n)
        params = sum(p.numel() for p in _meta_build(spec).parameters())
        rows.append({**spec.as_row(), "params": params})
    frame = pd.DataFrame(rows).sort_values(["family"], kind="stable")
    if fmt != "text":
        emit(render(frame, fmt, ["name", "family", "input_size", "params", "depth", "year", "paper"]))
        return
    for fam, group in frame.groupby("family", sort=True):
        click.echo(f"{fam}")
        for r in group.itertuples():
            acc = f"top-1 {r.top1}%" if r.top1 == r.top1 and r.top1 is not None else (
                f"top-5 {r.top5}%" if r.top5 == r.top5 and r.top5 is not None else "")
            click.echo(f"  {r.name:<16} {r.input_size:<10} {r.params / 1e6:>8.2f}M params  "
                       f"depth {r.depth:<4} {r.paper} ({r.year})" + (f"  [{acc}, {r.accuracy_dataset}]" if acc else ""))
    click.echo("\nparams: trainable parameters; depth: weight layers as the paper counts them; "
               "accuracies are published figures (see --format csv for sources and notes).")


def _meta_build(spec):
    import torch

    with torch.device("meta"):
        return spec.builder()


@main.command()
@click.argument("models", nargs=-1)
@input_size_option
@batch_option
@format_option
@out_option
@nosave_option
@engine_option
@dtype_option
def table(models, input_size, batch_size, fmt, out, no_save, engine, dtype):
    """One row per model: params, MACs, FLOPs, activation memory.

    MODELS are names, wildcards ('resnet*'), families (vgg) or path/file.py:builder.
    With none, the lecture line-up. Writes reports/table.csv and
    reports/memory_vs_compute.png unless --no-save.
    """
    import pandas as pd

    from archcost.analysis import analyze
    from archcost.report.files import write_csv
    from archcost.report.tables import render

    names = resolve_models(models, LINEUP)
    sizes = parse_sizes(input_size)
    folder = out_dir(out, no_save)
    rows = [guarded(analyze, n, input_size=sizes, batch_size=batch_size, engine=engine, dtype=dtype).summary
            for n in names]
    frame = pd.concat(rows, ignore_index=True)
    notes = _uncounted_notes(frame)
    emit(render(frame, fmt, TABLE_COLUMNS, notes=notes))
    if folder is not None:
        from archcost.report.plots import memory_vs_compute

        paths = [write_csv(folder / "table.csv", frame)]
        memory_vs_compute(frame, folder / "memory_vs_compute.png")
        wrote(paths + [folder / "memory_vs_compute.png"])


def _uncounted_notes(frame):
    ops = sorted({o.split(" x")[0] for s in frame["uncounted_ops"] for o in s.split("; ") if o})
    if not ops:
        return []
    return ["", "not counted as MACs (no fvcore rule; per-model counts in the CSV's uncounted_ops): "
            + ", ".join(ops)]


@main.command("layer-breakdown")
@click.argument("model")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Show modules at this depth (and shallower leaves) instead of every leaf.")
@input_size_option
@batch_option
@format_option
@out_option
@nosave_option
@engine_option
@dtype_option
def layer_breakdown(model, depth, input_size, batch_size, fmt, out, no_save, engine, dtype):
    """Per-layer params, MACs and activation memory of MODEL, with a total row equal to
    its `archcost table` row. Writes reports/<model>_layers.csv and .png unless --no-save."""
    import pandas as pd

    from archcost.analysis import analyze
    from archcost.report.files import write_csv
    from archcost.report.tables import render

    name = resolve_models([model])[0] if ":" not in model else model
    sizes = parse_sizes(input_size)
    folder = out_dir(out, no_save)
    a = guarded(analyze, name, input_size=sizes, batch_size=batch_size, engine=engine, dtype=dtype)
    rows = a.breakdown(depth)
    s = a.row
    total = {"layer": "(total)", "type": s["model"], "depth": 0, "is_leaf": False,
             "output_shape": "", "params": s["params"], "macs": s["macs"],
             "activations": s["activations"], "activation_bytes": s["activation_bytes"],
             "aliased": False, "calls": 1}
    frame = pd.concat([rows, pd.DataFrame([total])], ignore_index=True)
    frame.insert(0, "model", s["model"])
    notes = [f"model {s['model']}, input {s['input_shape']}; the total row comes from the whole model "
             "(activations count each storage once: in-place rows add nothing)."] + _uncounted_notes(a.summary)
    emit(render(frame, fmt, LAYER_COLUMNS, notes=notes))
    if folder is not None:
        from archcost.report.plots import layer_breakdown as plot

        stem = file_stem(name)
        paths = [write_csv(folder / f"{stem}_layers.csv", frame), folder / f"{stem}_layers.png"]
        plot(a.layers, s["model"], paths[1])
        wrote(paths)


@main.command()
@click.argument("model")
@input_size_option
@batch_option
@format_option
def ops(model, input_size, batch_size, fmt):
    """MACs by operator, cross-checked against torch.utils.flop_counter, with why they differ."""
    from archcost.analysis.crosscheck import cross_check
    from archcost.report.tables import render

    name = resolve_models([model])[0] if ":" not in model else model
    frame = guarded(cross_check, name, input_size=parse_sizes(input_size), batch_size=batch_size)
    emit(render(frame, fmt, ["operator", "macs", "torch_macs", "difference", "why"],
                notes=["torch_macs: torch.utils.flop_counter.FlopCounterMode's FLOPs / 2, on the same input."]))


@main.command()
@click.argument("models", nargs=-1)
@click.option("--baseline", default="reports/baseline.csv", show_default=True,
              type=click.Path(dir_okay=False), help="CSV with model, input_shape, params, macs.")
@click.option("--update", is_flag=True, help="Rewrite the baseline (atomically) with the current counts; "
              "with MODELS, add or refresh just those.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Allowed relative MAC drift (params are always exact), e.g. 0.01 for 1%.")
@input_size_option
@batch_option
def check(models, baseline, update, tolerance, input_size, batch_size):
    """Regression check for CI: recompute the baseline's models and fail (exit 1) when a
    parameter count changes, or MACs drift beyond --tolerance."""
    from archcost.analysis.check import build_baseline, compare, read_baseline
    from archcost.report.files import ensure_dir, write_csv
    from archcost.report.tables import render

    path = pathlib.Path(baseline)
    if update:
        existing = guarded(read_baseline, path) if path.exists() else None
        names = [m for m in models if ":" in m] + resolve_models([m for m in models if ":" not in m]) if models else []
        if existing is None and not names:
            fail(f"baseline {str(path)!r} does not exist: name the models to put in it")
        frame = guarded(build_baseline, names, existing, parse_sizes(input_size), batch_size)
        guarded(ensure_dir, path.parent if str(path.parent) else ".")
        write_csv(path, frame)
        click.echo(f"wrote {path} ({len(frame)} models)", err=True)
        return
    base = guarded(read_baseline, path)
    drift = guarded(compare, base, list(models), tolerance)
    checked = len(base) if not models else len(models)
    if len(drift):
        click.echo(render(drift, "text", ["model", "column", "baseline", "now", "delta"]).split("\n\ncolumns")[0])
        click.echo(f"archcost check: {len(drift)} count(s) drifted in {drift['model'].nunique()} of "
                   f"{checked} model(s); if intended, run `archcost check --update --baseline {path}`", err=True)
        sys.exit(1)
    click.echo(f"archcost check: {checked} model(s) match {path} (params exact, MACs "
               + ("exact" if tolerance == 0 else f"within {tolerance:.2%}") + ")")


def entry():  # console script
    main()


if __name__ == "__main__":
    entry()
