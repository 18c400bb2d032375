"""What every command shares: one-line errors and exit codes, option definitions, model and
size parsing, progress lines. Imports no torch, pandas or matplotlib at module level."""

import contextlib
import sys

import click

FORMATS = ("text", "csv", "json", "markdown")

LINEUP = ["lenet5", "alexnet", "zfnet", "vgg16", "vgg19", "googlenet", "resnet18", "resnet50",
          "resnet152", "densenet121", "xception", "se_resnet50", "mobilenet_v2"]

class UserError(Exception):
    """A mistake in the user's input: printed as one line, exit code 2."""

def fail(message: str):
    raise UserError(message)

def say(message: str):
    """One line on stderr: control characters from the user's input (newlines, \\r) escaped."""
    click.echo("".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message), err=True)

def user_errors():
    """The exception types that mean a user mistake, imported lazily."""
    from archcost.errors import AnalysisError
    from archcost.report.files import OutputDirError
    from archcost.zoo.custom import BuilderError

    return (AnalysisError, OutputDirError, BuilderError)

def model_call(fn, *args, **kwargs):
    """Call library code that runs the user's model: its ``print`` goes to stderr (stdout
    carries only the report), a ``sys.exit``/``SystemExit``/``GeneratorExit`` from it is one
    line naming the model (exit 2), and an ``os.chdir`` in it is undone afterwards. Other
    errors pass through."""
    import os

    cwd = os.getcwd()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return fn(*args, **kwargs)
    except (SystemExit, GeneratorExit) as exc:
        fail(model_exit_message(exc))
    except BaseException as exc:  # a bare BaseException subclass from the model's code
        if isinstance(exc, (Exception, KeyboardInterrupt)):
            raise
        fail(model_exit_message(exc))
    finally:
        try:
            if os.getcwd() != cwd:
                os.chdir(cwd)
        except OSError:  # the model removed the folder it moved to
            os.chdir(cwd)


def guarded(fn, *args, **kwargs):
    """Call the library (as :func:`model_call`): a user error becomes one line (exit 2)."""
    from archcost.count.limits import is_out_of_memory, out_of_memory_message

    try:
        return model_call(fn, *args, **kwargs)
    except user_errors() as exc:
        fail(str(exc))
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        fail(out_of_memory_message(exc))


def model_exit_message(exc) -> str:
    from archcost.zoo.sources import running_model

    what = (f"sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else type(exc).__name__)
    name = running_model()
    return (f"model {name!r} " if name else "the model's code ") + f"ended the run by raising {what} while it was " \
        "built or run; archcost stopped (a model must return a module and outputs, not exit)"


def parse_sizes(values, seq_len=None):
    """The --input-size values as the input-size rule takes them; with --seq-len, a SeqLen
    holding both (text models read the tokens, image models the sizes)."""
    sizes = _parse_sizes(values)
    if seq_len is None:
        return sizes
    from archcost.zoo.sources import SeqLen

    return SeqLen(seq_len, sizes)


def _parse_sizes(values):
    from archcost.conditions import parse_input_size

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
    """Names, wildcards ('resnet*'), families ('vgg'), library models and their wildcards
    ('timm:*convnext*', 'tv:resnet50', 'hf:gpt2') or file.py:builder references."""
    from archcost.zoo.registry import list_models, unknown_model_message
    from archcost.zoo.sources import is_source, list_sources

    names = []
    for pat in patterns or default or []:
        if is_source(pat):
            found = guarded(list_sources, pat)
            if not found:
                fail(f"no model matches {pat!r}: see `archcost list '{pat.split(':')[0]}:*'`")
            names += [n for n in found if n not in names]
            continue
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
    from archcost.zoo.sources import is_source

    if ":" in pattern and not is_source(pattern):
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

    import os

    return guarded(ensure_dir, os.path.abspath(out))  # absolute before any builder runs (os.chdir)

def file_stem(name: str) -> str:
    """File-name form of a model (the rule: archcost/report/naming.py)."""
    from archcost.report.naming import stem

    return stem(name)

def emit(text: str):
    click.echo(text, nl=False)

def wrote(paths):
    import os

    def shown(p):
        rel = os.path.relpath(p)
        return str(p) if rel.startswith("..") else rel

    if paths:
        click.echo("wrote " + ", ".join(shown(p) for p in paths), err=True)

_input_size = click.option(
    "--input-size", "input_size", multiple=True, metavar="N|CxHxW",
    help="Input size without batch. CxHxW (3x224x224) is that image; N (224) is a square N x N image "
         "with the model's input channels (a zoo model's paper's; your model's first convolution's; a model "
         "without convolutions: N features; a text model: N tokens). A Conv2d model takes only these two "
         "forms; other models take the dimensions as given (16x100 for a Conv1d). Repeat for models with "
         "several inputs. Default: the model's paper input, or its library's (timm's pretrained_cfg, "
         "torchvision's documented size).")

_seq_len = click.option(
    "--seq-len", "seq_len", type=click.IntRange(min=1), default=None, metavar="N",
    help="Tokens per sequence for text models (hf:gpt2, hf:bert, ...; default 128, at most the model's "
         "positions); image models keep --input-size or their default.")

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


input_size_option = stack_options(_input_size, _seq_len)

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
    from archcost.devices.table import slug
    from archcost.report.naming import conditions as tag

    return tag(slug(device), dtype, amp, channels_last, batch, **more)

def target_tag(target) -> str:
    """File-name part of a roofline --target (its rows carry extra columns)."""
    return "" if not target else "bound-" + "".join(c if c.isalnum() or c == "-" else "-" for c in target.lower())

def eta_seconds(done, left) -> float:
    """Seconds the items ``left`` will take, from the items ``done``: a line t = a + k * w
    through the done items' (work, seconds) pairs (least squares; a and k kept >= 0: a fixed
    cost per item, such as a time budget, and a cost per unit of work), applied to each left
    item's work. A work of None (not known yet) counts as the mean of the known ones; with no
    work known at all, each item left takes the mean time of those done."""
    pairs = [(w, t) for w, t in done if w is not None]
    if not done:
        return 0.0
    if not pairs:
        return sum(t for _, t in done) / len(done) * len(left)
    n = len(pairs)
    mw, mt = sum(w for w, _ in pairs) / n, sum(t for _, t in pairs) / n
    var = sum((w - mw) ** 2 for w, _ in pairs)
    if var > 0:
        k = sum((w - mw) * (t - mt) for w, t in pairs) / var
        a = mt - k * mw
        if k < 0:
            a, k = mt, 0.0
        elif a < 0:
            a, k = 0.0, sum(w * t for w, t in pairs) / max(sum(w * w for w, _ in pairs), 1e-300)
    else:
        a, k = (0.0, mt / mw) if mw > 0 else (mt, 0.0)
    known = [w for w, _ in pairs] + [w for w in left if w is not None]
    fill = sum(known) / len(known)
    return sum(a + k * (fill if w is None else w) for w in left)


def progress(items, label, describe=str, work=None):
    """Progress on stderr for runs of several items: a bar on a terminal, else one line per
    item (``archcost: [2/13] measuring vgg16, ETA 0:41``), so a long run is never silent.
    The ETA is :func:`eta_seconds` of the items done: with ``work`` (an item's work, e.g. its
    MACs, or None while unknown; asked again at every item) a fixed cost per item plus a cost
    per unit of work, else the mean time of the items done."""
    if len(items) < 2:
        return contextlib.nullcontext(items)
    import time

    done = []
    state = {"start": None, "item": None}

    def eta():
        now = time.perf_counter()
        if state["item"] is not None:
            done.append((None if work is None else work(state["item"]), now - state["start"]))
            if work is not None:  # work learnt since: ask again for every item done
                done[:] = [(work(it), t) for it, (_, t) in zip(items, done)]
        state["start"] = now
        if not done:
            return ""
        left = eta_seconds(done, [None if work is None else work(it) for it in items[len(done):]])
        return ", ETA " + eta_text(left)

    if sys.stderr.isatty():
        def shown(x):
            return "" if x is None else describe(x) + state.get("eta", "")

        bar = click.progressbar(items, label=label, file=sys.stderr, show_eta=False, item_show_func=shown)

        def bar_items():
            with bar:
                for item in bar:
                    state["eta"] = eta()
                    state["item"] = item
                    yield item

        return contextlib.nullcontext(bar_items())

    def lines():
        for i, item in enumerate(items, 1):
            text = eta()
            state["item"] = item
            click.echo(f"archcost: [{i}/{len(items)}] {label} {describe(item)}{text}", err=True)
            yield item

    return contextlib.nullcontext(lines())

def step(text):
    """One progress line on stderr for a long single step (``archcost: [..] text``)."""
    click.echo(f"archcost: [..] {text}", err=True)

def run_device(device):
    from archcost.conditions import resolve_device

    return guarded(resolve_device, device)

def resolve_roofline_target(target, dtype, launch_overhead_us=0.0, refresh=False, tf32="torch-default"):
    from archcost.roofline.layers import resolve_target

    return guarded(resolve_target, target, dtype, launch_overhead_us, refresh, tf32)


tf32_option = click.option("--tf32", type=click.Choice(["torch-default", "on", "off"]), default="torch-default",
                           show_default=True, help="On a GPU target: float32 products and convolutions as TF32 "
                           "(on), at FP32 (off), or as torch's defaults run them (products at FP32, convolutions "
                           "as TF32).")

target_option = click.option("--target", default="auto", show_default=True, metavar="NAME|cpu|auto",
                             help="Device whose roofline bounds the layers: a name from `archcost devices` "
                                  "(datasheet figures), cpu (this machine, calibrated), or auto (this GPU, else cpu).")

class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinities (``nan`` would pass every comparison)."""

    def convert(self, value, param, ctx):
        import math

        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v

    def __repr__(self):
        return "FiniteFloat"


overhead_option = click.option("--launch-overhead-us", type=FiniteFloat(min=0), default=0.0, show_default=True,
                               help="Per-operator kernel-launch overhead in microseconds (0: not modelled).")


MAX_BATCH_SIZES = 1000


def eta_text(seconds: float) -> str:
    """``0:41``, ``12:05`` (minutes:seconds), ``3h07m``; beyond 99 hours ``over 99 h`` (a
    sweep to huge batches predicts its points from their MACs, which can be absurd)."""
    if not seconds == seconds or seconds < 0:  # NaN
        return "unknown"
    if seconds >= 99 * 3600:
        return "over 99 h"
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def parse_batch_sizes(text: str, option: str = "--batch-sizes", what: str = "batch sizes"):
    """'1,2,4,8', or with an ellipsis continuing the pattern up to the last value:
    '1,2,4,...,64' doubles (1..64), '8,16,24,...,64' adds 8. ``option`` and ``what`` name
    the values in messages (--decode takes contexts in the same syntax)."""
    parts = [p.strip() for p in text.split(",")]
    usage = f"{option} {text!r} is not a list like 1,2,4,8 or 1,2,4,...,64"
    if "" in parts:  # '1,,2' or a trailing comma: a typo, not a list
        fail(usage)
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
            ratio = b // a if a > 0 and b % a == 0 and b // a > 1 else None
            count = (last.bit_length() - b.bit_length()) // max(1, ratio.bit_length() - 1) if ratio else \
                (last - b) // (b - a)
            if count > MAX_BATCH_SIZES:
                fail(f"--batch-sizes {text!r} gives about {count:,} batch sizes; at most {MAX_BATCH_SIZES} "
                     "are measured in one sweep")
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
        fail(f"{option} {text!r}: {what} must be positive integers")
    if len(set(sizes)) > MAX_BATCH_SIZES:
        fail(f"{option} {text!r} gives {len(set(sizes)):,} {what}; at most {MAX_BATCH_SIZES} "
             "are measured in one sweep")
    return sorted(set(sizes))
