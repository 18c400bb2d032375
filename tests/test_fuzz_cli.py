"""CLI fuzz: hypothesis draws argument lists (odd names, sizes, batches, options, junk);
every run ends in exit 0, or exit 2 with exactly one error line on stderr saying what
would work, never a traceback or an internal error. Bounded and fast for CI: small
models, no files written, no timing; sizes stay small unless they are beyond the 2^40
element limit (refused before anything is allocated)."""

import json
import pathlib
import tempfile

from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from archcost.cli import main

NET = pathlib.Path(tempfile.mkdtemp()) / "net.py"  # a user's model that takes any image size >= 3x3
NET.write_text("import torch.nn as nn\n"
               "def build():\n"
               "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),\n"
               "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))\n")
HUGE = st.integers(2**41, 10**30)
dim = st.one_of(st.integers(-2, 40), HUGE)
size = st.one_of(
    st.sampled_from(["32", "1x32x32", "3x32x32", "3x8x8", "5", "3x3x3", "40", "1x33x31"]),
    st.lists(dim, min_size=1, max_size=4).map(lambda ds: "x".join(map(str, ds))),
    st.sampled_from(["", "x", "3x", "axb", "nan", "1e3", "3*32*32", "0x0", "-3", "32 ", "3X32X32", "١٢"]),
)
batch = st.one_of(st.integers(1, 4), st.integers(1, 4), st.integers(-3, 0), HUGE).map(str) | st.sampled_from(
    ["", "abc", "1.5", "0x10"])
model = st.sampled_from(["lenet5"] * 4 + [f"{NET}:build"] * 4 + ["mobilenet_v2", "LeNet5", "LENET5", "lenet*", "lenet", "nosuch", "vgg17", "", ":", "a:b",
                         "/etc/passwd:build", "/tmp:build", "missing.py:build", "os:path", "archcost:analyze",
                         "[", "*x*"])
junk = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
COMMON = [["--format", "json"], ["--format", "csv"], ["--format", "markdown"]]
ANALYSIS = COMMON + [["--dtype", "float16"], ["--dtype", "bfloat16"], ["--engine", "fvcore"], ["--engine", "meta"],
                     ["--engine", "cpu"], ["--optimizer", "adam"], ["--channels-last"], ["--amp"],
                     ["--device", "cpu"], ["--name", "x/y"]]
VALID = {"table": ANALYSIS + [["--no-memory"]] * 3, "layer-breakdown": ANALYSIS + [["--depth", "1"], ["--depth", "2"]],
         "sweep": COMMON + [["--dtype", "float16"], ["--optimizer", "adam"], ["--channels-last"], ["--amp"]],
         "ops": COMMON, "list": COMMON}
BAD = [["--format", "yaml"], ["--depth", "0"], ["--depth", "99"], ["--dtype", "int8"], ["--device", "tpu"],
       ["--tolerance", "-1"], ["--engine", "jit"]]


def options(cmd):
    return st.lists(st.sampled_from(VALID[cmd] * 3 + BAD), max_size=3)


def command(cmd, m, s, b, opts, extra):
    args = [cmd]
    if cmd != "list" or m:
        args.append(m)
    if s is not None and cmd != "list":
        args += ["--input-size", s]
    if b is not None and cmd not in ("list", "sweep"):
        args += ["--batch-size", b]
    args += [a for o in opts for a in o]
    if extra is not None:
        args.append(extra)
    if cmd in ("table", "layer-breakdown", "sweep"):
        args.append("--no-save")
    if cmd == "sweep":
        args += ["--no-latency", "--batch-sizes", "1,2"]
    return args


def _last_format(args):
    """The --format that takes effect: click keeps the last one given."""
    found = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--format"]
    return found[-1] if found else None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), cmd=st.sampled_from(["table", "table", "layer-breakdown", "ops", "list", "sweep"]),
       m=model, s=st.none() | size, b=st.none() | batch, extra=st.sampled_from([None] * 5) | junk)
def test_every_run_exits_0_or_one_line_2(data, cmd, m, s, b, extra):
    args = command(cmd, m, s, b, data.draw(options(cmd)), extra)
    r = CliRunner().invoke(main, args)
    event(f"exit {r.exit_code}")
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, repr(r.exception))
    assert r.exit_code in (0, 2), (args, r.exit_code, r.output[-500:])
    assert "Traceback" not in r.output and "internal error" not in r.output, (args, r.output[-500:])
    if r.exit_code == 2:
        lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("archcost: [")]  # progress
        assert len(lines) == 1, (args, r.stderr)
        assert "error" in lines[0] and len(lines[0]) < 600, (args, lines[0])
    elif _last_format(args) == "json" and not {"-h", "--help"} & set(args):  # junk may ask for the help text
        json.loads(r.stdout, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))


# Float options: NaN and infinities would pass every comparison (a CI gate that never fails).
real = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-0", "0", "0.01", "",
                                  "abc", "1,5", "0x10"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=real, which=st.sampled_from(["tolerance", "overhead"]))
def test_float_options_never_take_nan_or_inf(tmp_path_factory, value, which):
    import math

    folder = tmp_path_factory.mktemp("f")
    base = folder / "b.csv"
    base.write_text("model,input_shape,params,macs\nlenet5,1x1x32x32,1,1\n")  # drifted: exit 1 when checked
    args = (["check", "--baseline", str(base), "--tolerance", value] if which == "tolerance" else
            ["roofline", "lenet5", "--target", "a100", "--no-save", "--launch-overhead-us", value])
    r = CliRunner().invoke(main, args)
    assert "Traceback" not in r.output and "internal error" not in r.output, (args, r.output)
    try:
        finite = math.isfinite(float(value)) and float(value) >= 0
    except ValueError:
        finite = False
    if not finite:
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.output)
    else:
        assert r.exit_code == (1 if which == "tolerance" else 0), (args, r.output)  # params always exact


# A baseline's model column is data: it may name a zoo model or a file.py:builder inside
# its folder; anything else is one line, exit 2, and nothing is imported or run.
row_model = st.one_of(
    st.sampled_from(["os:abort", "http.server:test", "subprocess:call", "builtins:exit", "sys:exit",
                     "archcost:analyze", "os.path:join", "../outside.py:build", "/etc/passwd:build",
                     "net.py:build", "sub/net.py:build", "net.py:nosuch", "nosuch", "lenet5", "=HYPERLINK(1):x",
                     "a:b:c", ":", "net.py:", ":build", "../" * 8 + "tmp/x.py:build", "net.py:build\n"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\",\x00"), max_size=12))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=row_model)
def test_a_baseline_model_column_runs_no_code_it_should_not(tmp_path_factory, model):
    folder = tmp_path_factory.mktemp("b")
    (folder / "sub").mkdir()
    for p in (folder / "net.py", folder / "sub" / "net.py"):
        p.write_text("import torch.nn as nn\ndef build():\n    return nn.Linear(4, 2)\n")
    (folder.parent / "outside.py").write_text("import os\nos.abort()\n")
    base = folder / "baseline.csv"
    import csv

    with open(base, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "input_shape", "params", "macs"])
        w.writerow([model, "1x4", 10, 8])
    r = CliRunner().invoke(main, ["check", "--baseline", str(base)])
    assert "Traceback" not in r.output and "internal error" not in r.output, (model, r.output)
    assert r.exit_code in (0, 1, 2), (model, r.exit_code, r.output)
    if r.exit_code == 2:
        assert len(r.stderr.strip().splitlines()) == 1, (model, r.stderr)
    stripped = model.strip()
    if ":" in stripped and not stripped.split(":")[0].endswith(".py") and "/" not in stripped.rpartition(":")[0]:
        assert r.exit_code == 2, (model, r.output)  # package.module:callable: never imported


# Nested inputs: a builder may return (model, example inputs) with the inputs a tensor, a
# dict, a list or a tuple of them, nested, or junk. Every command that runs a model either
# counts it (the MACs of the Linear on the first tensor leaf, by its rule) or refuses it in
# one line, exit 2.
_leaf = st.sampled_from(["torch.ones(2, 4)", "torch.ones(3, 4)", "torch.randint(0, 9, (2, 4)).float()",
                         "None", "1", "'s'", "torch.ones(0, 4)", "torch.ones(2, 5)"])
nested = st.recursive(_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.lists(kids, max_size=3).map(lambda xs: "(" + "".join(x + ", " for x in xs) + ")"),
    st.dictionaries(st.sampled_from(["ids", "mask", "x", "k y", "0"]), kids, max_size=3).map(
        lambda d: "{" + ", ".join(f"{k!r}: {v}" for k, v in d.items()) + "}")), max_leaves=6)
NESTED_NET = ("import torch, torch.nn as nn\n"
              "class Net(nn.Module):\n"
              "    def __init__(self):\n"
              "        super().__init__()\n"
              "        self.fc = nn.Linear(4, 2)\n"
              "    def forward(self, *args, **kw):\n"
              "        ts = [t for t in torch.utils._pytree.tree_leaves((args, kw)) if isinstance(t, torch.Tensor)]\n"
              "        return self.fc(ts[0])\n"
              "def build():\n"
              "    return Net(), {examples}\n")


def _first_tensor_rows(examples):
    """The rows of the first tensor leaf in pytree order (dicts by sorted key), or None."""
    import torch
    from torch.utils._pytree import tree_leaves

    leaves = [t for t in tree_leaves(eval(examples, {"torch": torch})) if isinstance(t, torch.Tensor)]
    return None if not leaves else leaves[0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(examples=nested, cmd=st.sampled_from([["table", "--no-save"], ["layer-breakdown", "--no-save"], ["ops"],
                                             ["table", "--no-save", "--train"]]),
       fmt=st.sampled_from(["json", "csv"]))
def test_nested_example_inputs_count_or_one_line(tmp_path_factory, examples, cmd, fmt):
    import io

    import pandas as pd

    folder = tmp_path_factory.mktemp("n")
    (folder / "net.py").write_text(NESTED_NET.format(examples=examples))
    args = [cmd[0], f"{folder}/net.py:build", *cmd[1:], "--format", fmt]
    r = CliRunner().invoke(main, args)
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, examples, repr(r.exception))
    assert "Traceback" not in r.output and "internal error" not in r.output, (examples, r.output[-800:])
    event(f"exit {r.exit_code}")
    assert r.exit_code in (0, 2), (examples, r.exit_code, r.output[-800:])
    if r.exit_code == 2:
        assert len([ln for ln in r.stderr.strip().splitlines() if not ln.startswith("archcost: [")]) == 1, \
            (examples, r.stderr)
        return
    first = _first_tensor_rows(examples)
    assert first is not None and first.dim() >= 1 and first.shape[-1] == 4, (examples, r.output[-400:])
    if cmd[0] == "table":  # the model's MACs: one Linear(4, 2) over every row of the first tensor
        rows = first.numel() // 4
        frame = (pd.DataFrame(json.loads(r.stdout)) if fmt == "json" else pd.read_csv(io.StringIO(r.stdout)))
        assert int(frame["macs"].iloc[0]) == rows * 4 * 2, (examples, frame.to_dict())


def _float_params():
    """Every float-valued option of every command and subcommand."""
    import click

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])
            return
        for p in cmd.params:
            if isinstance(p, click.Option) and isinstance(p.type, (click.types.FloatParamType, click.FloatRange)):
                yield path, p

    return list(walk(main, []))


def test_every_float_option_refuses_nan_and_inf():
    # The README: float options refuse nan and inf. Every float option of every command, found
    # by walking the click tree (plan --seconds took nan and inf: exit 0), refuses both in one
    # line with exit 2, before anything runs.
    found = _float_params()
    assert any(p.name == "tolerance" for _, p in found)  # the walk sees the options
    for path, p in found:
        for value in ("nan", "inf", "-inf"):
            # no model or other argument: click converts the options given before it finds an
            # argument missing, so the value's own error comes first and nothing runs
            r = CliRunner().invoke(main, path + [p.opts[0], value])
            assert r.exit_code == 2 and p.opts[0] in r.stderr, (path, p.opts[0], value, r.stderr)
            assert "finite" in r.stderr or "range" in r.stderr, (path, p.opts[0], value, r.stderr)
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
