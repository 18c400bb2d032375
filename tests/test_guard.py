"""Issue #22 (trust, round two): no CI bypass, no code run that nobody named, no lost or
overwritten report, one line (exit 2) for a user's mistake, no injection through cells."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from archcost.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NET = ("import torch.nn as nn\n"
       "def build():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())\n")


def invoke(args, **kw):
    return CliRunner().invoke(main, args, prog_name="archcost", **kw)


def one_line(r, code=2):
    assert r.exit_code == code, (r.exit_code, r.output[-2000:])
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("archcost: [")]
    assert len(lines) == 1 and lines[0].startswith("archcost"), r.stderr
    return lines[0]


def run(args, cwd=None, env=None, **kw):
    e = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run([sys.executable, "-m", "archcost", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=300, **kw)


def net(folder, body=NET, name="net.py"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(body)
    return folder / name


# --- CI can be bypassed ---------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
@pytest.mark.parametrize("args", [["check", "--baseline", "nofile.csv", "--tolerance"],
                                  ["roofline", "lenet5", "--no-save", "--launch-overhead-us"]])
def test_float_options_refuse_nan_and_inf(args, value):
    line = one_line(invoke(args + [value]))
    assert "finite" in line or "range" in line  # -inf is below the range already


EXITS = [("sys.exit(0)", "build"), ("sys.exit(5)", "build"), ("raise GeneratorExit", "build"),
         ("sys.exit(0)", "forward"), ("raise SystemExit('bye')", "forward"), ("raise BaseException('odd')", "build")]


@pytest.mark.parametrize("stmt,where", EXITS)
def test_a_model_that_exits_is_one_line_naming_it(tmp_path, stmt, where):
    body = ("import sys\nimport torch.nn as nn\n"
            "class M(nn.Linear):\n    def forward(self, x):\n"
            + (f"        {stmt}\n" if where == "forward" else "") + "        return super().forward(x)\n"
            "def build():\n" + (f"    {stmt}\n" if where == "build" else "") + "    return M(4, 2)\n")
    path = net(tmp_path, body)
    line = one_line(invoke(["table", f"{path}:build", "--input-size", "4", "--no-save", "--no-memory"]))
    assert "net.py:build" in line and "exit" in line.lower()


def test_a_model_that_exits_fails_check(tmp_path):
    path = net(tmp_path, "import sys\nimport torch.nn as nn\ndef build():\n    return nn.Linear(4, 2)\n")
    r = invoke(["check", "--update", "--baseline", str(tmp_path / "b.csv"), f"{path}:build", "--input-size", "4"])
    assert r.exit_code == 0, r.output
    path.write_text("import sys\ndef build():\n    sys.exit(0)\n")
    one_line(invoke(["check", "--baseline", str(tmp_path / "b.csv")]))


# --- code runs where nobody said it would -----------------------------------------------------

def _probe_module(tmp_path, monkeypatch):
    (tmp_path / "probe_mod_22.py").write_text(
        "import pathlib, torch.nn as nn\n"
        "def build():\n    pathlib.Path(__file__).with_name('RAN').write_text('x')\n    return nn.Linear(4, 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("probe_mod_22", None)


def test_a_baseline_row_cannot_name_a_module(tmp_path, monkeypatch):
    _probe_module(tmp_path, monkeypatch)
    base = tmp_path / "b" / "baseline.csv"
    base.parent.mkdir()
    base.write_text("model,input_shape,params,macs\nprobe_mod_22:build,1x4,10,8\n")
    line = one_line(invoke(["check", "--baseline", str(base)]))
    assert "--allow-module-refs" in line and not (tmp_path / "RAN").exists()
    line = one_line(invoke(["check", "--update", "--baseline", str(base)]))
    assert not (tmp_path / "RAN").exists()
    r = invoke(["check", "--baseline", str(base), "--allow-module-refs"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "RAN").exists()


def test_a_baseline_file_row_stays_in_its_folder(tmp_path):
    net(tmp_path / "outside")
    base = tmp_path / "ci" / "baseline.csv"
    base.parent.mkdir()
    for ref in ("../outside/net.py:build", f"{tmp_path}/outside/net.py:build"):
        # conv 3->4, 3x3 on 8x8: 4 x 27 MACs at 6x6 outputs; the average pool: one add per input element
        base.write_text(f"model,input_shape,params,macs\n{ref},1x3x8x8,{4 * 27 + 4},{4 * 27 * 36 + 4 * 36}\n")
        line = one_line(invoke(["check", "--baseline", str(base)]))
        assert "--allow-outside" in line
        r = invoke(["check", "--baseline", str(base), "--allow-outside"])
        assert r.exit_code == 0, r.output


def test_readme_says_a_model_file_is_code():
    text = open(os.path.join(ROOT, "README.md")).read()
    assert "runs as code" in text and "--allow-module-refs" in text and "os._exit" in text


def test_a_models_print_goes_to_stderr(tmp_path):
    body = ("import torch.nn as nn\nclass M(nn.Linear):\n    def forward(self, x):\n        print('hello from forward')\n"
            "        return super().forward(x)\n"
            "def build():\n    print('hello from build')\n    return M(4, 2)\n")
    path = net(tmp_path, body)
    for fmt in ("json", "csv"):
        r = invoke(["table", f"{path}:build", "--input-size", "4", "--no-save", "--format", fmt])
        assert r.exit_code == 0, r.output
        assert "hello" not in r.stdout and "hello from forward" in r.stderr
        assert ("hello from build" in r.stderr) == (fmt == "json")  # the builder ran once in this process
    json.loads(invoke(["table", f"{path}:build", "--input-size", "4", "--no-save", "--format", "json"]).stdout)


def test_a_builder_runs_once_per_run(tmp_path):
    body = NET.replace("def build():\n", "import pathlib\ndef build():\n"
                       "    p = pathlib.Path(__file__).with_name('calls')\n"
                       "    p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n")
    path = net(tmp_path, body)
    r = invoke(["table", f"{path}:build", "--input-size", "16", "--no-save"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "calls").read_text() == "x"


def test_out_is_fixed_before_a_builder_changes_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    body = NET.replace("def build():\n", f"import os\ndef build():\n    os.chdir({str(elsewhere)!r})\n")
    path = net(tmp_path / "m", body)
    work = tmp_path / "work"
    work.mkdir()
    r = run(["table", f"{path}:build", "--input-size", "8", "--no-memory", "--out", "rep"], cwd=work)
    assert r.returncode == 0, r.stderr
    assert list((work / "rep").glob("table_*.csv")) and not (elsewhere / "rep").exists()


# --- reports lost or overwritten --------------------------------------------------------------

def _interrupt(*a, **k):
    raise KeyboardInterrupt


@pytest.mark.parametrize("cmd,module,fn", [
    (["fit", "lenet5", "--memory", "64MiB"], "archcost.report.plots_fit", "fit_curves"),
    (["roofline", "lenet5", "--target", "a100"], "archcost.report.plots_roofline", "roofline"),
    (["diff", "lenet5", "lenet5", "--no-memory"], "archcost.report.plots", "diff_deltas")])
def test_fit_roofline_diff_write_one_set(tmp_path, monkeypatch, cmd, module, fn):
    import importlib

    r = invoke(cmd + ["--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    old = {p: p.read_bytes() for p in tmp_path.iterdir()}
    assert len(old) >= 2
    for p in old:
        p.write_bytes(b"previous run")
    monkeypatch.setattr(importlib.import_module(module), fn, _interrupt)
    r = invoke(cmd + ["--out", str(tmp_path)])
    assert r.exit_code == 130
    assert "left as they were" in r.stderr  # true now: nothing was replaced
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == {p: b"previous run" for p in old}


def _names(tmp_path, args):
    before = set(tmp_path.iterdir())
    r = invoke(args + ["--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    return set(tmp_path.iterdir()) - before


def test_different_runs_write_different_files(tmp_path):
    d1, d2 = net(tmp_path / "d1"), net(tmp_path / "d2")
    out = tmp_path / "out"
    out.mkdir()
    runs = [["fit", "lenet5", "--memory", "64MiB"], ["fit", f"{d1}:build", "--memory", "64MiB", "--input-size", "8"],
            ["fit", f"{d1}:build", "--memory", "64MiB", "--input-size", "9"],
            ["roofline", "lenet5", "--target", "a100"], ["roofline", "lenet5", "--target", "a100", "--input-size", "1x32x32"],
            ["diff", "lenet5", "lenet5", "--no-memory"], ["diff", "lenet5", "lenet5", "--no-memory", "-b", "4"],
            ["table", f"{d1}:build", "--no-memory", "--input-size", "8"],
            ["table", f"{d2}:build", "--no-memory", "--input-size", "8"]]
    for args in runs:
        assert _names(out, args), args  # every run adds files: none replaced another's


def test_fit_csv_has_the_input_shape(tmp_path):
    r = invoke(["fit", "lenet5", "--memory", "64MiB", "--no-save", "--format", "csv"])
    assert "input_shape" in r.stdout.splitlines()[0]


def test_stdout_that_cannot_be_written_is_exit_2():
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "archcost", "list"], stdout=full, stderr=subprocess.PIPE,
                           text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_closed_stdout_is_one_line_exit_2():
    # `archcost list >&-` (stranger A08): Python sets sys.stdout to None; flushing it was a
    # traceback and exit 1. Every command writes to stdout; --version is the quickest.
    r = subprocess.run(["bash", "-c", f"exec {sys.executable} -m archcost --version >&-"], stderr=subprocess.PIPE,
                       text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "standard output" in r.stderr


def test_sigterm_exits_143_and_removes_temp_files(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "archcost", "table", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    deadline, line = time.time() + 120, ""
    while time.time() < deadline and "[2/" not in line:
        line = proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-1000:]
    assert "Traceback" not in err and "terminated" in err.strip().splitlines()[-1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_stale_temp_files_of_a_killed_run_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".tmp-{dead.pid}-abc.csv"
    stale.write_text("half")
    alive = tmp_path / f".tmp-{os.getpid()}-abc.csv"  # a running writer's: kept
    alive.write_text("half")
    assert invoke(["table", "lenet5", "--no-memory", "--out", str(tmp_path)]).exit_code == 0
    assert not stale.exists() and alive.exists()


def test_check_update_keeps_columns_symlinks_and_one_row_per_model(tmp_path, monkeypatch):
    path = net(tmp_path / "ci")
    real = tmp_path / "ci" / "real.csv"
    link = tmp_path / "ci" / "baseline.csv"
    monkeypatch.chdir(tmp_path)
    r = invoke(["check", "--update", "--baseline", str(real), "ci/net.py:build", "--input-size", "8"])
    assert r.exit_code == 0, r.output
    frame = pd.read_csv(real)
    frame["owner"] = "team-a"
    frame.to_csv(real, index=False)
    link.symlink_to("real.csv")
    r = invoke(["check", "--update", "--baseline", str(link), f"{path}:build", "--input-size", "8"])
    assert r.exit_code == 0, r.output
    assert link.is_symlink()
    frame = pd.read_csv(real)
    assert list(frame["model"]) == ["net.py:build"] and list(frame["owner"]) == ["team-a"]
    r = invoke(["check", "--update", "--baseline", str(link), "lenet5"])
    frame = pd.read_csv(real, keep_default_na=False)
    assert list(frame["model"]) == ["net.py:build", "lenet5"] and list(frame["owner"]) == ["team-a", ""]


# --- inputs that crash ------------------------------------------------------------------------

def test_a_huge_batch_size_pattern_is_refused_at_parse():
    start = time.time()
    line = one_line(invoke(["sweep", "lenet5", "--no-save", "--batch-sizes", "2,3,...,1000000000000"]))
    assert time.time() - start < 30 and "batch sizes" in line


@pytest.mark.parametrize("budget", ["9" * 400 + "TiB", "9" * 5000])
def test_an_absurd_budget_is_one_line(budget):
    one_line(invoke(["fit", "lenet5", "--memory", budget, "--no-save"]))


def test_a_bogus_matplotlib_backend_does_not_stop_a_run(tmp_path):
    """The CLI draws to files with Agg: MPLBACKEND (misspelt or a desktop one) is not used."""
    r = run(["fit", "lenet5", "--memory", "1GiB", "--out", str(tmp_path)], env={"MPLBACKEND": "bogus"})
    assert r.returncode == 0, r.stderr
    assert [p for p in tmp_path.iterdir() if p.suffix == ".png" and p.stat().st_size > 1000]


def test_roofline_of_a_model_without_operators_is_one_line(tmp_path):
    path = net(tmp_path, "import torch.nn as nn\ndef build():\n    return nn.Identity()\n")
    line = one_line(invoke(["roofline", f"{path}:build", "--input-size", "8", "--target", "a100", "--no-save"]))
    assert "no operators" in line


# --- injection ----------------------------------------------------------------------------------

def test_csv_cells_are_spreadsheet_safe():
    from archcost.report.clean import to_csv

    frame = pd.DataFrame({"layer": ["=HYPERLINK(\"x\")", "+cmd", "-cmd", "@SUM(A1)", "conv", "-3", "\t=x"],
                          "macs": [-3, 1, 2, 3, 4, 5, 6], "ratio": [-0.5, 1.0, 2, 3, 4, 5, 6]})
    back = pd.read_csv(__import__("io").StringIO(to_csv(frame)), keep_default_na=False)
    assert list(back["layer"][:4]) == ["'=HYPERLINK(\"x\")", "'+cmd", "'-cmd", "'@SUM(A1)"]
    assert back["layer"][4] == "conv" and str(back["layer"][5]) == "-3" and back["layer"][6] == "'\t=x"
    assert back["macs"][0] == -3 and back["ratio"][0] == -0.5  # numbers stay numbers


def test_a_baseline_keeps_a_hostile_name_safe_and_reads_it_back(tmp_path):
    from archcost.compare.check import read_baseline
    from archcost.report.baseline_file import update_locked

    base = tmp_path / "b.csv"
    frame = pd.DataFrame({"model": ["=x.py:build"], "input_shape": ["1x4"], "params": [1], "macs": [-0]})
    update_locked(base, read_baseline, lambda cur: frame)
    assert base.read_text().splitlines()[1].startswith("'=x.py:build")
    assert list(read_baseline(base)["model"]) == ["=x.py:build"]


def test_markdown_escapes_pipes_newlines_and_html():
    from archcost.report.tables import render

    frame = pd.DataFrame({"layer": ["a|b\nc<script>alert(1)</script>"], "params": [1]})
    text = render(frame, "markdown", ["layer", "params"])
    row = [ln for ln in text.splitlines() if ln.startswith("| a")][0]
    assert "<script>" not in text and "\\|" in row and "&lt;script&gt;" in row and row.count(" | ") == 1


def test_diff_markdown_escapes_html(tmp_path):
    body = ("import torch.nn as nn\ndef build():\n    m = nn.Sequential()\n"
            "    m.add_module('<img src=x onerror=alert(1)>|x', nn.Linear(4, 4))\n    return m\n")
    path = net(tmp_path, body)
    r = invoke(["diff", f"{path}:build", f"{path}:build", "--all", "--no-save", "--format", "markdown",
                "--no-memory", "--input-size", "4"])
    assert r.exit_code == 0, r.output
    assert "&lt;img src=x onerror=alert(1)&gt;\\|x" in r.stdout and "<img" not in r.stdout


def test_text_output_strips_control_characters(tmp_path):
    from archcost.report.tables import render

    frame = pd.DataFrame({"layer": ["a\x1b[31mred\x07\rb"], "params": [1]})
    text = render(frame, "text", ["layer", "params"])
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_baseline_where_no_file_can_be_made_is_exit_2():
    # check --update --baseline /proc/b.csv (stranger K38): the temp file beside it cannot be
    # created (FileNotFoundError), which was exit 3 "a bug".
    r = invoke(["check", "--update", "--baseline", "/proc/b.csv", "lenet5"])
    assert r.exit_code == 2, r.output
    assert len(r.stderr.strip().splitlines()) == 1 and "/proc/b.csv" in r.stderr, r.stderr
