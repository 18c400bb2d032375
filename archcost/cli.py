"""archcost command line: a thin click group. Heavy modules (torch, pandas, matplotlib)
are imported inside the commands, so ``archcost --help`` answers without torch."""

import contextlib
import json
import pathlib
import sys
import textwrap

import click

FORMATS = ("text", "csv", "json", "markdown")
LINEUP = ["lenet5", "alexnet", "zfnet", "vgg16", "vgg19", "googlenet", "resnet18", "resnet50",
          "resnet152", "densenet121", "xception", "se_resnet50", "mobilenet_v2"]
TABLE_COLUMNS = ["model", "input_shape", "params", "macs", "flops", "activations",
                 "activation_bytes", "param_bytes", "saved_bytes", "peak_bytes", "train_bytes"]
LAYER_COLUMNS = ["layer", "type", "output_shape", "params", "macs", "activations",
                 "activation_bytes", "saved_bytes", "peak_bytes", "aliased"]
TRAIN_COLUMNS = ["trainable_params", "backward_macs", "train_macs", "train_peak_bytes", "train_peak_phase"]
LATENCY_COLUMNS = ["latency_ms", "latency_p20_ms", "latency_p80_ms", "latency_spread", "images_per_s",
                   "achieved_tflops", "peak_fraction"]


class UserError(Exception):
    """A mistake in the user's input: printed as one line, exit code 2."""


def fail(message: str):
    raise UserError(message)


def say(message: str):
    """One line on stderr: control characters from the user's input (newlines, \\r) escaped."""
    click.echo("".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message), err=True)


class Group(click.Group):
    """Turns usage errors and UserError into one line on stderr (exit 2), no traceback."""

    def main(self, args=None, prog_name=None, **kwargs):
        try:
            rv = super().main(args=args, prog_name=prog_name or "archcost", standalone_mode=False, **kwargs)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.exceptions.Abort as e:
            if isinstance(e.__cause__, KeyboardInterrupt) or isinstance(e.__context__, KeyboardInterrupt):
                click.echo("archcost: interrupted; reports already on disk were left as they were", err=True)
                sys.exit(130)
            click.echo("archcost: aborted", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("archcost: interrupted; reports already on disk were left as they were", err=True)
            sys.exit(130)
        except click.UsageError as e:
            no_args = getattr(click.exceptions, "NoArgsIsHelpError", None)
            if (no_args and isinstance(e, no_args)) or (e.ctx and e.message == e.ctx.get_help()):
                click.echo(e.ctx.get_help(), err=True)  # a bare command: its help, as written
                sys.exit(2)
            where = e.ctx.command_path if e.ctx else "archcost"
            say(f"{where}: error: {e.format_message()} (see '{where} --help')")
            sys.exit(2)
        except UserError as e:
            say(f"archcost: error: {e}")
            sys.exit(2)
        except click.ClickException as e:
            say(f"archcost: error: {e.format_message()}")
            sys.exit(e.exit_code)
        except BrokenPipeError:
            sys.exit(0)
        except Exception as e:  # never a traceback: one line, and how to see the traceback
            import os

            if os.environ.get("ARCHCOST_TRACEBACK"):
                raise
            if isinstance(e, _user_errors()):  # e.g. a report write that failed (full disk)
                say(f"archcost: error: {e}")
                sys.exit(2)
            from archcost.analysis.limits import is_out_of_memory, out_of_memory_message

            if is_out_of_memory(e):
                say(f"archcost: error: {out_of_memory_message(e)}")
                sys.exit(2)
            first = (str(e).strip().splitlines() or [""])[0][:300]
            say(f"archcost: internal error: {type(e).__name__}: {first} (a bug: please report it with "
                "the command; ARCHCOST_TRACEBACK=1 shows the traceback)")
            sys.exit(3)
        sys.exit(rv if isinstance(rv, int) else 0)


def _user_errors():
    """The exception types that mean a user mistake, imported lazily."""
    from archcost.analysis.engine import AnalysisError
    from archcost.report.files import OutputDirError
    from archcost.zoo.custom import BuilderError

    return (AnalysisError, OutputDirError, BuilderError)


def guarded(fn, *args, **kwargs):
    from archcost.analysis.limits import is_out_of_memory, out_of_memory_message

    try:
        return fn(*args, **kwargs)
    except _user_errors() as exc:
        fail(str(exc))
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        fail(out_of_memory_message(exc))


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


def one_model(pattern):
    """The one model a per-model command (layer-breakdown, ops, memory) takes."""
    if ":" in pattern:
        return pattern
    names = resolve_models([pattern])
    if len(names) > 1:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        fail(f"{pattern!r} matches {len(names)} models ({shown}); this command takes one: name it, "
             "or use `archcost table` for one row per model")
    return names[0]


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
    help="Input size without batch. CxHxW (3x224x224) is that image; N (224) is a square N x N image "
         "with the model's input channels (a zoo model's paper's; your model's first convolution's; a model "
         "without convolutions: N features). A Conv2d model takes only these two forms; other models "
         "take the dimensions as given (16x100 for a Conv1d). Repeat for models with several inputs. "
         "Default: the model's paper input.")
batch_option = click.option("--batch-size", "-b", type=click.IntRange(min=1), default=1,
                            show_default=True, help="Batch size.")
format_option = click.option("--format", "fmt", type=click.Choice(FORMATS), default="text",
                             show_default=True, help="Output format (csv/json carry raw integers).")
out_option = click.option("--out", type=click.Path(file_okay=False), default="reports",
                          show_default=True, help="Folder for the CSV and plot.")
nosave_option = click.option("--no-save", is_flag=True, help="Print only; write no files.")
name_option = click.option("--name", default=None, metavar="NAME",
                           help="Last part of the report file names, instead of the one derived from the "
                                "models (README: 'Report names').")
engine_option = click.option("--engine", type=click.Choice(["auto", "meta", "cpu", "fvcore"]),
                             default="auto", show_default=True,
                             help="auto: shape-only meta pass (falls back to real CPU tensors); "
                                  "fvcore: fvcore's JIT trace on real tensors.")
dtype_option = click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]),
                            default="float32", show_default=True,
                            help="Element type: the model and input are cast to it (with --amp: autocast to it).")


def stack_options(*options):
    """One decorator applying ``options`` in the order listed (as --help shows them)."""
    def apply(fn):
        for opt in reversed(options):
            fn = opt(fn)
        return fn
    return apply


# What is analysed and how it is reported (table, layer-breakdown).
analysis_options = stack_options(input_size_option, batch_option, format_option, out_option, nosave_option,
                                 name_option, engine_option, dtype_option)

# Where and how memory and time are measured (table, layer-breakdown, sweep).
run_options = stack_options(
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                 help="Where latency (and on CUDA, memory) is measured; auto = cuda if available."),
    click.option("--amp", is_flag=True, help="torch.autocast to --dtype with float32 weights, instead of "
                 "casting the model (timm's 'amp' precision)."),
    click.option("--channels-last", is_flag=True, help="Model and input in NHWC memory format."),
    click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam", "adamw"]), default="sgd",
                 show_default=True, help="Optimizer state counted in train_bytes (none, 1 or 2 tensors per weight) "
                 "and run in --train's step (torch.optim, foreach)."),
    click.option("--repeat", type=click.IntRange(min=1), default=20, show_default=True,
                 help="Timed forwards for latency."),
    click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True,
                 help="Untimed forwards before timing."),
)


# A training step (table, layer-breakdown): the optimizer comes from run_options.
train_options = stack_options(
    click.option("--train", is_flag=True, help="Also measure one whole training step (forward, backward, "
                 "optimizer step): train_peak_bytes and the phase of its peak."),
    click.option("--freeze", multiple=True, metavar="PATTERN",
                 help="Freeze the parameters whose name matches (fnmatch, e.g. 'features.*'); repeatable. "
                      "Changes trainable_params, saved/train bytes and the training step."),
    click.option("--checkpoint", multiple=True, metavar="SEGMENTS",
                 help="With --train: activation checkpointing of the outermost modules matching (fnmatch: "
                      "'layer?' = ResNet's stages, 'layer?.*' = every block; 'top' = each child); repeatable."),
)


def conditions(device, dtype, amp, channels_last, batch=None, **more) -> str:
    """File-name tag of the run's conditions (the rule: archcost/report/naming.py)."""
    from archcost.analysis.devices import slug
    from archcost.report.naming import conditions as tag

    return tag(slug(device), dtype, amp, channels_last, batch, **more)


def _target_tag(target) -> str:
    """File-name part of a roofline --target (its rows carry extra columns)."""
    return "" if not target else "bound-" + "".join(c if c.isalnum() or c == "-" else "-" for c in target.lower())


def progress(items, label, describe=str):
    """Progress on stderr for runs of several items: a bar on a terminal, else one line
    per item (``archcost: [2/13] measuring vgg16``), so a long run is never silent."""
    if len(items) < 2:
        return contextlib.nullcontext(items)
    if sys.stderr.isatty():
        return click.progressbar(items, label=label, file=sys.stderr,
                                 item_show_func=lambda x: describe(x) if x is not None else "")

    def lines():
        for i, item in enumerate(items, 1):
            click.echo(f"archcost: [{i}/{len(items)}] {label} {describe(item)}", err=True)
            yield item

    return contextlib.nullcontext(lines())


def step(text):
    """One progress line on stderr for a long single step (``archcost: [..] text``)."""
    click.echo(f"archcost: [..] {text}", err=True)


def run_device(device):
    from archcost.analysis.analyze import resolve_device

    return guarded(resolve_device, device)


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
    from archcost.report.tables import terminal_width
    from archcost.report.units import si
    from archcost.zoo.registry import get_spec, list_models, unknown_model_message

    width = terminal_width()

    names = list_models(pattern)
    if not names:
        fail(unknown_model_message(pattern) if not any(ch in pattern for ch in "*?[")
             else f"no model matches {pattern!r}: try `archcost list` for all")
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
            click.echo(textwrap.fill(f"  {r.name:<16} {r.input_size:<10} {si(r.params):>6} params  depth "
                                     f"{r.depth:<4} {r.paper} ({r.year})" + (f"  [{acc}, {r.accuracy_dataset}]"
                                                                             if acc else ""),
                                     width, subsequent_indent=" " * 56, break_on_hyphens=False))
    click.echo("\n" + textwrap.fill("params: parameters, trainable and not (buffers such as BN statistics excluded), "
                                    "each shared tensor once, as in `archcost table`; depth: weight layers as the "
                                    "paper counts them; accuracies are published figures (see --format csv for "
                                    "sources and notes).", width))


def _meta_build(spec):
    import torch

    with torch.device("meta"):
        return spec.builder()


@main.command()
@click.argument("models", nargs=-1)
@analysis_options
@click.option("--latency", is_flag=True, help="Also time the forward: median, p20, p80 ms, images/s, TFLOP/s.")
@click.option("--no-memory", is_flag=True, help="Skip the saved/peak/train memory passes (counts only; faster).")
@run_options
@click.option("--target", default=None, metavar="NAME|cpu|auto",
              help="Add the roofline time bound (time_bound_ms) and the share of it in memory-bound layers "
                   "(bound_share_memory) for this device (see `archcost devices` and `archcost roofline`).")
@train_options
def table(models, input_size, batch_size, fmt, out, no_save, name, engine, dtype, latency, no_memory, device, amp,
          channels_last, optimizer, repeat, warmup, target, train, freeze, checkpoint):
    """One row per model: params, MACs, FLOPs, activation memory, the memory a training
    step keeps (saved), the inference peak, the training total, and with --latency, time.

    With --train, also a whole training step: backward and train MACs, trainable
    parameters and the step's memory peak (train_peak_bytes) and its phase; --freeze and
    --checkpoint change what trains and what is kept.

    MODELS are names, wildcards ('resnet*'), families (vgg) or path/file.py:builder.
    With none, the lecture line-up. Writes reports/table_<conditions>.csv and
    reports/memory_vs_compute_<conditions>.png unless --no-save.
    """
    import pandas as pd

    from archcost.analysis import analyze
    from archcost.report.files import write_csv
    from archcost.report.spread import add_spread
    from archcost.report.tables import render

    names = resolve_models(models, LINEUP)
    sizes = parse_sizes(input_size)
    folder = out_dir(out, no_save)
    device = run_device(device)
    tgt = resolve_roofline_target(target, dtype) if target else None
    rows = []
    with progress(names, "measuring") as bar:
        for n in bar:
            a = guarded(analyze, n, input_size=sizes, batch_size=batch_size, engine=engine, dtype=dtype,
                        device=device, amp=amp, channels_last=channels_last, optimizer=optimizer,
                        latency=latency, repeats=repeat, warmup=warmup, memory=not no_memory,
                        record_ops=tgt is not None, train=train or bool(checkpoint), freeze=freeze,
                        checkpoint=checkpoint)
            if tgt is not None:
                _add_roofline_bound(a, tgt, device if latency else None)
            rows.append(a.summary)
    frame = pd.concat(rows, ignore_index=True)
    notes = (_uncounted_notes(frame) + _row_notes(frame) + _condition_notes(frame, latency) + add_spread(frame)
             + _train_notes(frame, freeze, checkpoint))
    columns = (TABLE_COLUMNS + (TRAIN_COLUMNS if train or freeze or checkpoint else [])
               + (["recompute_macs"] if checkpoint else [])
               + (["train_latency_ms", "train_images_per_s"] if latency and (train or checkpoint) else [])
               + (LATENCY_COLUMNS if latency else []))
    if tgt is not None:
        columns += ["time_bound_ms", "bound_share_memory"] + (["measured_over_bound"] if "measured_over_bound"
                                                              in frame else [])
        notes.append(f"roofline target: {tgt.note}")
    emit(render(frame, fmt, columns, notes=notes))
    if folder is not None:
        from archcost.report.files import file_set
        from archcost.report.naming import subset
        from archcost.report.plots import memory_vs_compute

        tag = conditions(device, dtype, amp, channels_last, batch_size, input_size=sizes,
                         optimizer=None if no_memory else optimizer,
                         extra=["latency" if latency else "", "nomem" if no_memory else "",
                                "train" if train or checkpoint else "", "freeze" if freeze else "",
                                "ckpt" if checkpoint else "", _target_tag(target)]) + subset(names, LINEUP, name)
        with file_set(folder):
            paths = [write_csv(folder / f"table_{tag}.csv", frame), folder / f"memory_vs_compute_{tag}.png"]
            memory_vs_compute(frame, paths[1], title=f"Memory vs compute ({_condition_title(frame)})")
        wrote(paths)


def _add_roofline_bound(a, tgt, measured_on):
    """time_bound_ms and bound_share_memory in the table row; measured / bound when the
    latency was measured on the target itself."""
    from archcost.analysis.roofline_pass import model_bound

    b = guarded(model_bound, a, tgt.roof)
    s = a.summary
    s["target"] = tgt.roof.device
    s["time_bound_ms"] = b["time_bound_ms"]
    s["bound_share_memory"] = b["bound_share_memory"]
    if measured_on is not None and measured_on == tgt.local:
        s["measured_over_bound"] = s["latency_ms"] / b["time_bound_ms"]


def _add_layer_bounds(frame, a, tgt, measured):
    """Per breakdown row: the roofline bound of the leaf layers under it (or of its own
    ops), the bound's kind for single layers, and measured / bound when timed on the target."""
    from archcost.analysis.roofline_pass import layer_rows

    import pandas as pd

    rows = guarded(layer_rows, a, tgt.roof)
    names = [n for n in frame["layer"] if n != "(total)"]
    # A container's own operators without MACs or params (ResNet's `out += identity`) have no
    # breakdown row, but they take time: add their rows, before the total.
    missing = [r for r in rows if not any(r["layer"] == n or r["layer"].startswith(n + ".") for n in names)]
    if missing:
        add = pd.DataFrame([{"layer": r["layer"], "type": "functional", "params": 0, "macs": r["macs"],
                             "is_leaf": False, "aliased": False} for r in missing])
        frame = pd.concat([frame.iloc[:-1], add, frame.iloc[-1:]], ignore_index=True)
    bounds, kinds = [], []
    for name in frame["layer"]:
        if name == "(total)":
            inside = rows
        else:
            inside = [r for r in rows if r["layer"] == name or r["layer"].startswith(name + ".")]
        bounds.append(sum(r["time_bound_ms"] for r in inside) if inside else float("nan"))
        kinds.append(inside[0]["bound"] if len(inside) == 1 else "")
    frame["time_bound_ms"] = bounds
    frame["bound"] = kinds
    cols = ["time_bound_ms", "bound"]
    if measured:
        frame["measured_over_bound"] = frame["latency_ms"] / frame["time_bound_ms"]
        cols.append("measured_over_bound")
    return frame, cols


def _condition_title(frame) -> str:
    r = frame.iloc[0]
    return f"{r['device_name']}, {r['dtype']}, batch {r['batch_size']}"


def _condition_notes(frame, latency):
    from archcost.report.units import human_bytes

    r = frame.iloc[0]
    if "saved_bytes" not in frame:
        return []
    batch = f"batch {r['batch_size']}" if frame["batch_size"].nunique() == 1 else "batch per row"
    notes = [f"conditions: {r['device_name']}, {r['dtype']}" + (", channels_last" if r["channels_last"] else "")
             + f", {batch}, torch {r['torch_version']}; memory measured on "
             f"{r.get('memory_measured_on', '-')} tensors"
             + (" (the same allocations as CPU tensors, tested)" if r.get("memory_measured_on") == "meta" else "")
             + f"; train = weights + grads + {r.get('optimizer', 'sgd')} state + saved."]
    if latency:
        notes.append(f"latency: {r['repeats']} forwards after {r['warmup']} warm-up, {r['clock']}"
                     + (f", {r['threads']} CPU threads" if r["clock"] == "perf_counter" else "")
                     + (f"; peak = {r['device_peak_tflops']} TFLOP/s {r.get('peak_dtype', '')} dense "
                        f"({r['peak_source']})"
                        if r.get("peak_dtype") else "; no datasheet peak known for this device and dtype"))
    if "peak_bytes_allocator" in frame:
        notes.append("CUDA caching allocator (max_memory_allocated) for comparison: " + ", ".join(
            f"{m} {human_bytes(b)}" for m, b in zip(frame["model"], frame["peak_bytes_allocator"])))
    return notes


def _train_notes(frame, freeze=(), checkpoint=()):
    notes = []
    if checkpoint:
        notes.append("activation checkpointing of the outermost modules matching " + ", ".join(repr(p) for p in checkpoint)
                     + ": train peak and bwd MACs (recomputation included; recompute = its MACs) measured with it; "
                     "saved is without it.")
    if freeze:
        notes.append("frozen (requires_grad off): parameters matching " + ", ".join(repr(p) for p in freeze))
    if "train_peak_bytes" in frame:
        r = frame.iloc[0]
        notes.append(f"train peak: one training step (zero_grad(set_to_none), forward, loss, backward, "
                     f"torch.optim {r['optimizer']} step, foreach); input batch excluded.")
        bad = frame[frame["train_note"].astype(bool)] if "train_note" in frame else frame.iloc[:0]
        notes += [f"{m}: {n}" for m, n in zip(bad["model"], bad["train_note"])]
    return notes


def _row_notes(frame):
    """Each row's ``notes`` (a count not taken on meta tensors, and why) as a line under the table."""
    if "notes" not in frame:
        return []
    return [f"{m}: {n}" for m, n in zip(frame["model"], frame["notes"]) if isinstance(n, str) and n]


def _uncounted_notes(frame):
    ops = sorted({o.split(" x")[0] for s in frame["uncounted_ops"] for o in s.split("; ") if o})
    if not ops:
        return []
    return ["", "not counted as MACs (no fvcore rule; per-model counts in the CSV's uncounted_ops): "
            + ", ".join(ops)]


@main.command("layer-breakdown")
@click.argument("model")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Show modules at this depth (and shallower leaves) instead of every leaf; a "
                   "container's activations are then the sum of its leaf layers', so rows add up to the total.")
@analysis_options
@click.option("--latency", is_flag=True, help="Also time each leaf layer (hooks; their overhead is stated).")
@run_options
@click.option("--target", default=None, metavar="NAME|cpu|auto",
              help="Add each layer's roofline time bound on this device (with --latency on it: measured / bound).")
@train_options
def layer_breakdown(model, depth, input_size, batch_size, fmt, out, no_save, name, engine, dtype, latency, device,
                    amp, channels_last, optimizer, repeat, warmup, target, train, freeze, checkpoint):
    """Per-layer params, MACs, activation memory, memory saved for backward and the live
    peak while the layer runs, with a total row equal to its `archcost table` row; with
    --train, each layer's backward MACs (the gradients autograd computes for it).
    Writes reports/<model>_layers_<conditions>.csv and .png unless --no-save."""
    import pandas as pd

    from archcost.analysis import analyze
    from archcost.report.files import write_csv
    from archcost.report.tables import render

    report_name = name
    name = one_model(model)
    sizes = parse_sizes(input_size)
    folder = out_dir(out, no_save)
    device = run_device(device)
    a = guarded(analyze, name, input_size=sizes, batch_size=batch_size, engine=engine, dtype=dtype,
                device=device, amp=amp, channels_last=channels_last, optimizer=optimizer,
                layer_latency=latency, repeats=repeat, warmup=warmup, record_ops=bool(target),
                train=train or bool(checkpoint), freeze=freeze, checkpoint=checkpoint)
    train = train or bool(checkpoint)
    rows = a.breakdown(depth)
    s = a.row
    total = {"layer": "(total)", "type": s["model"], "depth": 0, "is_leaf": False,
             "output_shape": "", "params": s["params"], "macs": s["macs"],
             "activations": s["activations"], "activation_bytes": s["activation_bytes"],
             "saved_bytes": s["saved_bytes"], "peak_bytes": s["peak_bytes"],
             "aliased": False, "calls": 1}
    if latency:
        total["latency_ms"] = s["latency_ms"]
    if train:
        total["backward_macs"] = s["backward_macs"]
    frame = pd.concat([rows, pd.DataFrame([total])], ignore_index=True)
    extra = []
    if target:
        tgt = resolve_roofline_target(target, dtype)
        frame, extra = _add_layer_bounds(frame, a, tgt, latency and device == tgt.local)
        notes_target = [f"roofline target: {tgt.note}"]
    frame.insert(0, "model", s["model"])
    notes = [f"model {s['model']}, input {s['input_shape']}; the total row comes from the whole model "
             "(activations count each storage once: in-place rows add nothing; saved is attributed to the "
             "layer that saved it first; peak is the model's live total while the layer ran)."]
    notes += (_uncounted_notes(a.summary) + _row_notes(a.summary) + _condition_notes(a.summary, False)
              + _train_notes(a.summary, freeze, checkpoint))
    if latency:
        notes.append(f"latency: median of {s['repeats']} forwards after {s['warmup']} warm-up with a "
                     f"{'CUDA event pair' if device == 'cuda' else 'perf_counter pair'} around each leaf; the "
                     f"whole forward takes {s['latency_ms']:.3f} ms plain and {s['hooked_latency_ms']:.3f} ms "
                     f"with the per-layer clocks (overhead {s['layer_timing_overhead_ms']:+.3f} ms per forward).")
        from archcost.report.spread import add_spread

        notes += add_spread(a.summary)
    shared = "shared_params" in frame and frame["shared_params"].fillna(0).gt(0).any()
    if depth:
        notes.append(f"at --depth {depth} a container row's activations are the sum of its leaf layers' outputs "
                     "(each storage once), so the rows add up to the total.")
    if target:
        notes += notes_target
    emit(render(frame, fmt, LAYER_COLUMNS + (["backward_macs"] if train else []) + (["shared_params"] if shared else []) + (["latency_ms"] if latency else [])
                + extra, notes=notes))
    if folder is not None:
        from archcost.report.files import file_set
        from archcost.report.naming import subset
        from archcost.report.plots import layer_breakdown as plot

        stem = file_stem(name) + "_layers_" + conditions(
            device, dtype, amp, channels_last, batch_size, input_size=sizes, optimizer=optimizer,
            extra=["latency" if latency else "", f"d{depth}" if depth else "", "train" if train else "",
                   "freeze" if freeze else "", "ckpt" if checkpoint else "", _target_tag(target)]) \
            + subset([], None, report_name)
        with file_set(folder):
            paths = [write_csv(folder / f"{stem}.csv", frame), folder / f"{stem}.png"]
            plot(a.layers, s["model"], paths[1])
        wrote(paths)


@main.command()
@click.argument("model")
@input_size_option
@batch_option
@format_option
@engine_option
@dtype_option
@click.option("--train", is_flag=True, help="Check the backward instead: archcost's backward MACs per ATen "
              "operator against FlopCounterMode over a real CPU backward (float32).")
@click.option("--freeze", multiple=True, metavar="PATTERN", help="With --train: freeze matching parameters.")
def ops(model, input_size, batch_size, fmt, engine, dtype, train, freeze):
    """MACs by operator, cross-checked against torch.utils.flop_counter, with why they differ."""
    from archcost.analysis.crosscheck import cross_check
    from archcost.report.tables import render

    name = one_model(model)
    if train:
        from archcost.analysis.traincheck import backward_cross_check

        frame = guarded(backward_cross_check, name, input_size=parse_sizes(input_size), batch_size=batch_size,
                        freeze=freeze)
        emit(render(frame, fmt, ["operator", "macs", "torch_macs", "difference", "why"],
                    notes=["backward of one training step (train mode, cross-entropy loss; the loss's own "
                           "backward left out); torch_macs: FlopCounterMode's FLOPs / 2 over a real CPU backward."]))
        return
    frame = guarded(cross_check, name, input_size=parse_sizes(input_size), batch_size=batch_size,
                    dtype=dtype, engine=engine)
    emit(render(frame, fmt, ["operator", "macs", "torch_macs", "difference", "why"],
                notes=["torch_macs: torch.utils.flop_counter.FlopCounterMode's FLOPs / 2, on the same input."]))


@main.command()
@click.argument("models", nargs=-1)
@click.option("--baseline", default="reports/baseline.csv", show_default=True,
              type=click.Path(dir_okay=False), help="CSV with model, input_shape, params, macs "
              "(and per-layer rows when made with --layers). file.py:builder paths in it are "
              "relative to its folder.")
@click.option("--update", is_flag=True, help="Rewrite the baseline (atomically, under a lock, merged with "
              "what other processes wrote meanwhile) with the current counts; with MODELS, add or refresh "
              "just those.")
@click.option("--layers", is_flag=True, help="With --update: also store one row per layer, so a drift "
              "names the layers that changed.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Allowed relative MAC drift (params are always exact), e.g. 0.01 for 1%.")
@input_size_option
@batch_option
@format_option
def check(models, baseline, update, layers, tolerance, input_size, batch_size, fmt):
    """Regression check for CI: recompute the baseline's models and fail (exit 1) when a
    parameter count changes, or MACs drift beyond --tolerance. When the baseline holds
    per-layer rows (--update --layers), the layers that changed are named."""
    from archcost.analysis.check import compare, measure_update, merge, read_baseline
    from archcost.report.baseline_file import update_locked
    from archcost.report.diffs import drift_report
    from archcost.report.files import ensure_dir

    path = pathlib.Path(baseline)
    folder = path.parent if str(path.parent) else pathlib.Path(".")
    if layers and not update:
        fail("--layers stores per-layer rows and goes with --update; a check uses the rows the baseline has")
    if update:
        existing = guarded(read_baseline, path) if path.exists() else None
        names = [m for m in models if ":" in m] + resolve_models([m for m in models if ":" not in m]) if models else []
        if existing is None and not names:
            fail(f"baseline {str(path)!r} does not exist: name the models to put in it")
        guarded(ensure_dir, folder, "put the --baseline in a writable folder")
        measured = guarded(measure_update, names, existing, folder, parse_sizes(input_size), batch_size, layers)
        frame = guarded(update_locked, path, read_baseline, lambda current: merge(current, measured))
        n = frame["model"].nunique()
        click.echo(f"wrote {path} ({n} models" + (", with layer rows" if "layer" in frame else "") + ")", err=True)
        return
    base = guarded(read_baseline, path)
    drift = guarded(compare, base, list(models), tolerance, folder)
    checked = (base["layer"] == "").sum() if not models else len(models)
    emit(drift_report(drift, fmt))
    if len(drift):
        totals = drift[drift["layer"] == "(total)"]
        click.echo(f"archcost check: {len(totals)} count(s) drifted in {totals['model'].nunique()} of "
                   f"{checked} model(s); if intended, run `archcost check --update --baseline {path}`", err=True)
        sys.exit(1)
    click.echo(f"archcost check: {checked} model(s) match {path} (params exact, MACs "
               + ("exact" if tolerance == 0 else f"within {tolerance:.2%}") + ")",
               err=fmt in ("csv", "json"))


def _diff_side(ref, sizes, batch_size, memory):
    from archcost.analysis.diff_sides import baseline_side, is_baseline_ref, model_side

    if is_baseline_ref(ref):
        return guarded(baseline_side, ref)
    if ":" not in ref:
        found = resolve_models([ref])
        if len(found) > 1:
            fail(f"{ref!r} matches {len(found)} models ({', '.join(found[:5])}{' ...' if len(found) > 5 else ''}); "
                 "diff compares two models: name one each side")
        ref = found[0]
    return guarded(model_side, ref, sizes, batch_size, memory)


@main.command()
@click.argument("model_a", metavar="A")
@click.argument("model_b", metavar="B")
@input_size_option
@batch_option
@format_option
@click.option("--all", "show_all", is_flag=True, help="Show the layers that are the same too.")
@click.option("--no-memory", is_flag=True, help="Skip the activation-memory and saved-bytes columns' "
              "memory pass (counts only; faster).")
@out_option
@nosave_option
def diff(model_a, model_b, input_size, batch_size, fmt, show_all, no_memory, out, no_save):
    """Two models layer by layer: params, MACs and memory of A and B and the delta (B - A).

    A and B are names, wildcards matching one model, path/file.py:builder, or a baseline
    row as path/baseline.csv:MODEL (its layer rows when it stores them, see `check
    --update --layers`). Rows are aligned by module name, then by execution order;
    added (+), removed (-) and changed (~) rows are marked; totals at the bottom. Writes
    reports/diff_<A>_vs_<B>.csv and a plot of the per-layer deltas unless --no-save.
    """
    from archcost.analysis.diff import diff as diff_frames
    from archcost.analysis.diff_sides import input_of, is_baseline_ref
    from archcost.report.diffs import diff_report

    sizes = parse_sizes(input_size)
    folder = out_dir(out, no_save)
    a = _diff_side(model_a, sizes, batch_size, not no_memory)
    b_sizes, b_batch = sizes, batch_size
    if is_baseline_ref(model_a) and sizes is None:
        b_sizes, b_batch = input_of(a)  # B measured at the baseline row's recorded input
    b = _diff_side(model_b, b_sizes, b_batch, not no_memory)
    frame = diff_frames(a.layers, a.summary, b.layers, b.summary)
    notes = [n for n in (a.note, b.note) if n]
    if a.summary.get("input_shape") != b.summary.get("input_shape"):
        notes.append(f"inputs differ: A {a.summary.get('input_shape')}, B {b.summary.get('input_shape')}")
    emit(diff_report(frame, fmt, a.label, b.label, show_all, notes))
    if folder is not None:
        from archcost.report.files import write_csv
        from archcost.report.plots import diff_deltas

        stem = f"diff_{file_stem(a.label.replace(':', '_'))}_vs_{file_stem(b.label.replace(':', '_'))}"
        paths = [write_csv(folder / f"{stem}.csv", frame), folder / f"{stem}.png"]
        diff_deltas(frame, paths[1], a.label, b.label)
        wrote(paths)


@main.command()
@click.argument("model")
@input_size_option
@batch_option
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@dtype_option
@format_option
@click.option("--train", is_flag=True, help="Check train_peak_bytes instead: one whole training step on meta "
              "tensors against the CPU allocator's events over the same step on real tensors (float32).")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam", "adamw"]), default="sgd",
              show_default=True, help="With --train: the step's torch.optim optimizer.")
def memory(model, input_size, batch_size, device, dtype, fmt, train, optimizer):
    """Check peak_bytes and saved_bytes of MODEL against independent measurements of the
    same forward: the CPU profiler's allocator events, or the CUDA caching allocator."""
    from archcost.analysis import analyze
    from archcost.analysis.memcheck import compare
    from archcost.report.tables import render

    name = one_model(model)
    sizes = parse_sizes(input_size)
    if train:
        from archcost.analysis.traincheck import compare_step

        frame = guarded(compare_step, name, input_size=sizes, batch_size=batch_size, optimizer=optimizer)
        emit(render(frame, fmt, ["quantity", "archcost", "independent", "relative_difference", "by", "why"],
                    notes=[f"model {name}, batch {batch_size}, float32, one training step on cpu "
                           "(input batch excluded on both sides)."]))
        return
    device = run_device(device)
    guarded(analyze, name, input_size=sizes, batch_size=batch_size, memory=False, dtype=dtype)  # input errors
    step(f"memory: measuring {name} on meta and real {device} tensors, then with the "
         + ("CPU profiler" if device == "cpu" else "CUDA caching allocator") + " (takes a few seconds)")
    frame = guarded(compare, name, input_size=sizes, batch_size=batch_size, device=device, dtype=dtype)
    emit(render(frame, fmt, ["quantity", "archcost", "independent", "relative_difference", "by", "why"],
                notes=[f"model {name}, batch {batch_size}, {dtype}, on {device}."]))


def parse_batch_sizes(text: str):
    """'1,2,4,8', or with an ellipsis continuing the pattern up to the last value:
    '1,2,4,...,64' doubles (1..64), '8,16,24,...,64' adds 8."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    usage = f"--batch-sizes {text!r} is not a list like 1,2,4,8 or 1,2,4,...,64"
    try:
        if "..." in parts:
            i = parts.index("...")
            head = [int(p) for p in parts[:i]]
            if len(parts) != i + 2 or len(head) < 2:
                fail(usage)
            last = int(parts[i + 1])
            a, b = head[-2], head[-1]
            if last < b:  # the pattern would run past its stated end
                fail(usage)
            if a > 0 and b % a == 0 and b // a > 1:
                step = lambda x: x * (b // a)  # noqa: E731
            elif b > a:
                step = lambda x: x + (b - a)  # noqa: E731
            else:
                fail(usage)
            sizes = list(head)
            while step(sizes[-1]) <= last:
                sizes.append(step(sizes[-1]))
            if sizes[-1] != last:
                sizes.append(last)
        else:
            sizes = [int(p) for p in parts]
    except ValueError:
        fail(usage)
    if not sizes or any(b < 1 for b in sizes):
        fail(f"--batch-sizes {text!r}: batch sizes must be positive integers")
    return sorted(set(sizes))


@main.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--batch-sizes", default="1,2,4,...,64", show_default=True,
              help="Comma-separated, or 1,2,4,...,N to keep doubling up to N.")
@input_size_option
@dtype_option
@click.option("--no-latency", is_flag=True, help="Memory only (no timing).")
@run_options
@format_option
@out_option
@nosave_option
@name_option
def sweep(models, batch_sizes, input_size, dtype, no_latency, device, amp, channels_last, optimizer, repeat,
          warmup, fmt, out, no_save, name):
    """Memory and latency of MODELS against batch size (as in Canziani et al. 2016 and
    Bianco et al. 2018). Writes reports/sweep_<conditions>.csv and .png unless --no-save.
    A batch that does not fit in memory (or is refused as too large) is recorded as such,
    with the rows measured before it, and ends that model's sweep."""
    import pandas as pd

    from archcost.analysis import analyze
    from archcost.analysis.analyze import OutOfDeviceMemory
    from archcost.analysis.limits import is_out_of_memory
    from archcost.report.files import write_csv
    from archcost.report.tables import render

    names = resolve_models(models)
    sizes = parse_sizes(input_size)
    batches = parse_batch_sizes(batch_sizes)
    folder = out_dir(out, no_save)
    device = run_device(device)
    rows = []
    jobs = [(n, b) for n in names for b in batches]
    stopped, measured = set(), set()
    with progress(jobs, "sweeping", lambda j: f"{j[0]} batch {j[1]}") as bar:
        for n, b in bar:
            if n in stopped:
                continue
            try:
                a = analyze(n, input_size=sizes, batch_size=b, dtype=dtype, device=device, amp=amp,
                            channels_last=channels_last, optimizer=optimizer, latency=not no_latency,
                            repeats=repeat, warmup=warmup)
            except (OutOfDeviceMemory, MemoryError, RuntimeError) as exc:
                if not isinstance(exc, OutOfDeviceMemory) and not is_out_of_memory(exc):
                    raise
                stopped.add(n)  # the rows measured so far are kept
                rows.append(pd.DataFrame([{"model": n, "batch_size": b, "note": "out of memory"}]))
                continue
            except _user_errors() as exc:
                if n not in measured:  # the input itself is wrong: one line
                    fail(str(exc))
                stopped.add(n)  # a larger batch refused (e.g. beyond 2^40 elements): keep the rows so far
                rows.append(pd.DataFrame([{"model": n, "batch_size": b, "note": str(exc)}]))
                continue
            measured.add(n)
            rows.append(a.summary.assign(note=""))
    frame = pd.concat(rows, ignore_index=True)
    if "params" not in frame or frame["params"].isna().all():
        fail(f"no batch size of {batch_sizes} fits in {device} memory for {', '.join(names)}: "
             "try smaller --batch-sizes or --input-size")
    from archcost.report.spread import add_spread

    cols = ["model", "batch_size", "saved_bytes", "peak_bytes", "train_bytes"] + (
        [] if no_latency else ["latency_ms", "latency_spread", "images_per_s", "achieved_tflops"])
    spread = add_spread(frame)
    emit(render(frame, fmt, cols, notes=_condition_notes(frame.dropna(subset=["params"]), not no_latency) + spread))
    if folder is not None:
        from archcost.report.files import file_set
        from archcost.report.naming import subset
        from archcost.report.plots import sweep as plot

        tag = conditions(device, dtype, amp, channels_last, f"{batches[0]}-{batches[-1]}", input_size=sizes,
                         optimizer=optimizer, extra=["nolatency" if no_latency else ""]) + subset(names, None, name)
        with file_set(folder):
            paths = [write_csv(folder / f"sweep_{tag}.csv", frame), folder / f"sweep_{tag}.png"]
            plot(frame, paths[1], _sweep_title(frame.dropna(subset=["params"])), latency=not no_latency)
        wrote(paths)


FIT_COLUMNS = ["model", "batch", "needed_bytes", "headroom_bytes", "weight_bytes", "optimizer_state_bytes",
               "gradients_at_peak", "activations_at_peak", "transient_at_peak", "input_bytes", "peak_phase"]


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

    from archcost.analysis.budgets import describe, parse_memory
    from archcost.analysis.fit import fit as fit_one
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
            row = {"model": r.model, "mode": r.mode, "optimizer": optimizer if train else "", "dtype": dtype,
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

        tag = (f"{'train-' + optimizer if train else 'inference'}_{dtype}_{file_stem(budget)}"
               + ("_ckpt" if checkpoint else ""))
        curve_frame = pd.DataFrame(curve)
        paths = [write_csv(folder / f"fit_{tag}.csv", frame), write_csv(folder / f"fit_curve_{tag}.csv", curve_frame),
                 folder / f"fit_{tag}.png"]
        fit_curves(curve_frame, frame, budget_bytes, paths[2],
                   f"What fits in {budget.strip()} ({what}, {dtype})",
                   "memory needed (GiB): " + ("train peak" if train else "weights + inference peak") + " + input")
        wrote(paths)


@main.command()
@click.argument("experiments", nargs=-1)
@format_option
@out_option
@nosave_option
@name_option
def reproduce(experiments, fmt, out, no_save, name):
    """The lecture's design arguments, measured: EXPERIMENTS among bottleneck, stacked-3x3,
    gap-vs-fc, resnet-bottleneck, grouped-conv, depthwise-separable, se-overhead,
    dense-connectivity, aux-classifiers, roofline, claims (all when none is named). With all of
    them, writes reports/reproductions.csv, claims.csv, one plot per experiment and
    REPRODUCTIONS.md."""
    import pandas as pd

    from archcost import reproduce as rp
    from archcost.report.files import write_csv, write_text
    from archcost.report.tables import render

    unknown = [e for e in experiments if e not in rp.NAMES]
    if unknown:
        fail(f"unknown experiment {unknown[0]!r}: choose from {', '.join(rp.NAMES)}")
    names = list(dict.fromkeys(experiments)) or rp.NAMES
    folder = out_dir(out, no_save)
    rows, claim_rows = rp.run(names, progress=(lambda e: step(f"reproduce: {e}")) if len(names) > 1 else None)
    frame = pd.DataFrame(rows, columns=rp.ROW_COLUMNS + (rp.EXTRA_COLUMNS if rows else []))
    frame = frame.loc[:, [c for c in frame.columns if c in rp.ROW_COLUMNS or frame[c].notna().any()]]
    claims = pd.DataFrame(claim_rows, columns=rp.CLAIM_COLUMNS)
    parts = []
    if fmt == "json":  # one document: {"experiments": [...], "claims": [...]}
        from archcost.report.clean import records

        parts.append(json.dumps({"experiments": records(frame), "claims": records(claims)}, indent=1,
                                allow_nan=False) + "\n")
    elif len(frame):
        parts.append(render(frame, fmt, ["experiment", "variant", "input_shape", "params", "macs",
                                         "activation_bytes", "ratio_params", "ratio_macs", "note"]))
    if len(claims) and fmt != "json":
        parts.append(render(claims, fmt, rp.CLAIM_COLUMNS))
    emit(("\n" if fmt in ("text", "markdown") else "").join(parts))
    if folder is not None:
        from archcost.report.files import file_set
        from archcost.report.naming import subset
        from archcost.report.plots import experiment_bars

        paths = []
        every = set(names) == set(rp.NAMES)
        what = subset([n for n in names if n != "claims"], None, name) if name or not every else ""
        with file_set(folder):
            if len(frame):
                paths.append(write_csv(folder / f"reproductions{what}.csv", frame))
                for exp, group in frame.groupby("experiment", sort=False):
                    target = folder / f"reproduce_{exp}.png"
                    if exp == "roofline":
                        from archcost.report.plots_roofline import batch_experiment

                        batch_experiment(group.to_dict("records"), target)
                    elif exp == "training-cost":
                        from archcost.report.plots import ratio_bars

                        ratio_bars(group.to_dict("records"), target,
                                   "training-cost: a training step's MACs (forward + backward) / the forward's",
                                   "train_macs / macs (forward = 1)", 3.0, "\"about three forwards\"")
                    else:
                        experiment_bars(group.to_dict("records"), target, f"{exp}: params and MACs per variant")
                    paths.append(target)
            if len(claims):
                paths.append(write_csv(folder / "claims.csv", claims))
            if every:
                paths.append(write_text(folder / "REPRODUCTIONS.md", rp.markdown_report(frame, claims)))
        wrote(paths)


# --- roofline (issue #15) -------------------------------------------------------------------

ROOFLINE_LAYER_COLUMNS = ["layer", "type", "macs", "bytes_read", "bytes_written", "arithmetic_intensity",
                          "time_compute_ms", "time_memory_ms", "time_bound_ms", "bound", "share_of_bound",
                          "ridge_batch"]
ROOFLINE_SUMMARY_COLUMNS = ["model", "batch_size", "flops", "bytes_moved", "arithmetic_intensity", "time_bound_ms",
                            "time_bound_per_image_ms", "bound_share_memory", "bound_share_never_compute",
                            "ridge_batch_heaviest", "last_to_cross"]


def resolve_roofline_target(target, dtype, launch_overhead_us=0.0, refresh=False):
    from archcost.analysis.roofline_pass import resolve_target

    return guarded(resolve_target, target, dtype, launch_overhead_us, refresh)


target_option = click.option("--target", default="auto", show_default=True, metavar="NAME|cpu|auto",
                             help="Device whose roofline bounds the layers: a name from `archcost devices` "
                                  "(datasheet figures), cpu (this machine, calibrated), or auto (this GPU, else cpu).")
overhead_option = click.option("--launch-overhead-us", type=click.FloatRange(min=0), default=0.0, show_default=True,
                               help="Per-operator kernel-launch overhead in microseconds (0: not modelled).")


@main.command("devices")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
def devices_cmd(fmt):
    """The roofline targets: dense datasheet peaks per dtype and memory bandwidth, with sources."""
    import pandas as pd

    from archcost.analysis import calibrate, devices
    from archcost.report.tables import render

    rows = []
    for d in devices.DEVICES:
        rows.append({"target": d.key, "name": d.name, **{f"{k}_tflops": d.tflops.get(k) for k in devices.DTYPE_KEYS},
                     "bandwidth_gbs": d.bandwidth_gbs,
                     "ridge_float32": d.peak_flops(devices.peak_dtype(d, "float32")) / d.bandwidth_bytes_per_s,
                     "source": d.source, "bandwidth_source": d.bandwidth_source})
    frame = pd.DataFrame(rows)
    if fmt in ("csv", "json"):
        emit(frame.to_csv(index=False) if fmt == "csv" else _strict_json(frame.to_dict("records")))
        return
    show = frame.assign(**{c: frame[c].map(lambda v: "-" if v is None or v != v else f"{v:g}")
                           for c in frame.columns if c.endswith("_tflops") or c == "bandwidth_gbs"},
                        ridge_float32=frame["ridge_float32"].map(lambda v: f"{v:.0f}"))
    cols = ["target", "name", "float32_tflops", "tf32_tflops", "float16_tflops", "bfloat16_tflops", "bandwidth_gbs",
            "ridge_float32"]
    text = render(show, fmt, cols).split("\n\ncolumns:")[0].split("\n\n- ")[0]
    cached = calibrate.load(calibrate.cache_dir() / f"cpu-{calibrate.machine_key()}.json")
    notes = ["", "TFLOP/s dense (no sparsity), FLOPs = 2 x MACs; float16/bfloat16 tensor cores with FP32 "
             "accumulate; bandwidth in GB/s (10^9 bytes/s); ridge_float32: FLOP/byte where float32 "
             "(as TF32 where the GPU has it) turns compute-bound.",
             "cpu: this machine, measured (--target cpu): "
             + (cached.describe() if cached else "not calibrated yet; `archcost roofline MODEL --target cpu` measures it"),
             "", "sources:"] + [f"  {d.key}: {d.source}; bandwidth: {d.bandwidth_source}" for d in devices.DEVICES]
    emit(text.rstrip("\n") + "\n" + "\n".join(notes) + "\n")


def _strict_json(obj) -> str:
    """JSON without NaN (null instead) and with numpy scalars as plain numbers."""
    import json
    import math

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if v is not None and not isinstance(v, (str, int, float, bool)):
            try:
                if v != v:  # pd.NA and friends
                    return None
            except TypeError:
                return None
            return str(v)
        return v

    return json.dumps(clean(obj), indent=1, allow_nan=False) + "\n"


@main.command("roofline")
@click.argument("models", nargs=-1, required=True)
@target_option
@input_size_option
@batch_option
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32",
              show_default=True, help="Element type of the model and input (bytes per element, and the peak's column).")
@overhead_option
@click.option("--latency", is_flag=True, help="Also measure each leaf layer and the whole forward on the target "
              "(this machine's CPU or GPU) and give measured / bound.")
@click.option("--repeat", type=click.IntRange(min=1), default=20, show_default=True, help="Timed forwards (--latency).")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed forwards first.")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Text/markdown: only the N layers with the "
              "largest time bound (files keep every layer).")
@click.option("--recalibrate", is_flag=True, help="--target cpu: measure this CPU again instead of using the cache.")
@format_option
@out_option
@nosave_option
def roofline_cmd(models, target, input_size, batch_size, dtype, launch_overhead_us, latency, repeat, warmup, top,
                 recalibrate, fmt, out, no_save):
    """Per layer: bytes read and written, arithmetic intensity (FLOPs / byte), the time the
    target's compute and memory bandwidth allow, which of them bounds the layer, and the
    batch from which it is compute-bound; per model: the time bound per image, the share
    of it in memory-bound layers, and the batch where the heaviest layers cross the ridge.
    Writes reports/roofline_<model>_<target>_<dtype>_b<batch>.csv and .png and
    roofline_<target>_<dtype>_b<batch>.csv (one row per model) unless --no-save."""
    import pandas as pd

    from archcost.analysis.roofline_pass import run
    from archcost.report.files import write_csv
    from archcost.report.tables import render

    names = resolve_models(models)
    sizes = parse_sizes(input_size)
    folder = out_dir(out, no_save)
    tgt = resolve_roofline_target(target, dtype, launch_overhead_us, recalibrate)
    layer_frames, summaries = [], []
    with progress(names, "bounding") as bar:
        for n in bar:
            layers, summary = guarded(run, n, tgt, batch_size=batch_size, dtype=dtype, input_size=sizes,
                                      latency=latency, repeats=repeat, warmup=warmup)
            layer_frames.append(layers)
            summaries.append(summary)
    summary = pd.concat(summaries, ignore_index=True)
    lcols = ROOFLINE_LAYER_COLUMNS[:]
    scols = ROOFLINE_SUMMARY_COLUMNS[:]
    if launch_overhead_us:
        lcols.insert(lcols.index("time_bound_ms"), "time_overhead_ms")
        scols.insert(scols.index("ridge_batch_heaviest"), "bound_share_overhead")
    if latency:
        lcols += ["latency_ms", "measured_over_bound"]
        scols += ["latency_ms", "measured_over_bound"]
    notes = _roofline_notes(tgt, summary, latency)
    if fmt == "csv":
        emit(pd.concat(layer_frames, ignore_index=True).to_csv(index=False))
    elif fmt == "json":
        emit(_strict_json({"target": tgt.note, "summary": summary.to_dict("records"),
                           "layers": pd.concat(layer_frames, ignore_index=True).to_dict("records")}))
    else:
        parts = []
        for layers in layer_frames:
            shown = layers.nlargest(top, "time_bound_ms").sort_index() if top else layers
            title = f"{layers['model'].iloc[0]}, batch {batch_size}, {dtype}" + (
                f" (the {top} layers with the largest bound)" if top else "")
            parts.append(render(shown, fmt, lcols, title=title).split("\n\ncolumns:")[0]
                         .split("\n\n- ")[0].rstrip("\n"))
        parts.append(render(summary, fmt, scols, title="per model", notes=notes))
        emit("\n\n".join(parts))
    if folder is not None:
        from archcost.analysis.devices import slug
        from archcost.report.plots_roofline import roofline as plot

        tslug = "cpu" if tgt.local == "cpu" and target.lower() in ("cpu", "auto") else \
            slug("cuda") if tgt.local == "cuda" and target.lower() == "auto" else target.lower()
        tag = f"{tslug}_{dtype}_b{batch_size}"
        paths = []
        for layers, row in zip(layer_frames, summary.to_dict("records")):
            stem = f"roofline_{file_stem(row['model'])}_{tag}"
            paths.append(write_csv(folder / f"{stem}.csv", layers))
            plot(layers, row, folder / f"{stem}.png", tgt.roof.device + f", {tgt.roof.dtype} peak",
                 f"Roofline: {row['model']}, batch {batch_size}, {dtype}")
            paths.append(folder / f"{stem}.png")
        paths.append(write_csv(folder / f"roofline_{tag}.csv", summary.assign(target_note=tgt.note)))
        wrote(paths)


def _roofline_notes(tgt, summary, latency):
    r = tgt.roof
    notes = [f"target: {tgt.note}",
             f"roof: {r.peak_flops / 1e12:.4g} TFLOP/s ({r.dtype}), {r.bandwidth / 1e9:.4g} GB/s, ridge "
             f"{r.ridge:.3g} FLOP/byte" + (f", launch overhead {r.launch_overhead_s * 1e6:g} us per operator"
                                           if r.launch_overhead_s else ""),
             "bytes: each operand of each ATen operator crosses DRAM once (no cache reuse across operators, "
             "no im2col workspace, no fused epilogues); an in-place ReLU reads and writes its storage; "
             "operators without MACs count 0 FLOPs; the model's bound is the sum over layers (run one after "
             "another)."]
    if latency:
        s = summary.iloc[0]
        notes.append(f"measured: median of {s['repeats']} forwards ({s['clock']}, {s['threads']} threads); "
                     f"per-layer clocks add {s['layer_timing_overhead_ms']:+.3f} ms per forward.")
    return notes


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
    from archcost.analysis.lineage import lineage_frame
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
    target = pathlib.Path(output or pathlib.Path(csv).with_suffix(".png"))
    if target.suffix.lower() not in (".png", ".svg", ".pdf"):
        fail(f"--output {str(target)!r} must end in .png, .svg or .pdf")
    from archcost.report.files import ensure_dir

    guarded(ensure_dir, target.parent, "choose another --output")  # created if missing
    rows = frame.dropna(subset=["params"]) if "params" in frame else frame
    draw(frame, target, _sweep_title(rows), latency="latency_ms" in frame and frame["latency_ms"].notna().any())
    wrote([target])


def _sweep_title(frame) -> str:
    if not len(frame):
        return "Batch-size sweep (no batch fitted)"
    r = frame.iloc[0]
    return f"Batch-size sweep ({r['device_name']}, {r['dtype']}, batch {frame['batch_size'].min()} to {frame['batch_size'].max()})"


def entry():  # console script
    main()


if __name__ == "__main__":
    entry()
