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
