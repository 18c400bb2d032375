"""Reports are never clobbered or left mixed; hostile inputs are one line, never a traceback."""

import errno
import os
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from archcost.cli import main
from archcost.report.naming import conditions, subset


def invoke(args):
    return CliRunner().invoke(main, args)


def one_line_error(r, code=2):
    assert r.exit_code == code, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) >= 1 and "Traceback" not in r.output
    errors = [ln for ln in lines if ln.startswith("archcost: ") and "error" in ln or "interrupted" in ln]
    assert len(errors) == 1 and errors[0] == lines[-1], r.stderr
    return lines[-1]


# --- names: different runs, different files ----------------------------------------------

def test_naming_rule():
    assert conditions("cpu", "float32", batch=1) == "cpu_float32_b1"  # the defaults add nothing
    assert conditions("cpu", "float16", True, True, 8, (3, 256, 256), "adam", ["latency"]) == \
        "cpu_float16-amp_nhwc_b8_in3x256x256_adam_latency"
    assert conditions("cpu", "float32", batch=1, input_size=[(3, 8, 8), (5,)]) == "cpu_float32_b1_in3x8x8+5"
    assert subset(["a", "b"], ["a", "b"]) == "" and subset(["alexnet"], ["a", "b"]) == "_alexnet"
    assert subset(["alexnet"], None, "mine") == "_mine"
    many = [f"model_number_{i}" for i in range(9)]
    long = subset(many)
    assert long.startswith("_9models-") and long == subset(list(reversed(many)))  # order-free content hash
    assert subset(many[:8] + ["other"]) != long


def test_a_subset_table_does_not_replace_the_lineup_table(tmp_path):
    lineup = tmp_path / "table_cpu_float32_b1.csv"
    lineup.write_text("model,params\nthe committed 13-row table,1\n")
    r = invoke(["table", "lenet5", "--no-memory", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert lineup.read_text() == "model,params\nthe committed 13-row table,1\n"
    assert (tmp_path / "table_cpu_float32_b1_nomem_lenet5.csv").exists()
    r = invoke(["table", "lenet5", "--no-memory", "--out", str(tmp_path), "--name", "mine"])
    assert (tmp_path / "table_cpu_float32_b1_nomem_mine.csv").exists()


def test_another_input_size_is_another_file(tmp_path):
    net = tmp_path / "net.py"
    net.write_text("import torch.nn as nn\n"
                   "def build():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))\n")
    out = tmp_path / "out"
    for extra in (["--input-size", "3x8x8"], ["--input-size", "3x9x9"], ["--input-size", "9"],
                  ["--input-size", "3x8x8", "--optimizer", "adam"]):
        r = invoke(["layer-breakdown", f"{net}:build", "--out", str(out), *extra])
        assert r.exit_code == 0, r.output
    names = {p.name for p in out.iterdir()}
    from archcost.report.naming import stem

    model = stem(f"{net}:build")  # net_py_build and the hash of the file's path
    assert model.startswith("net_py_build-")
    assert {f"{model}_layers_cpu_float32_b1_in{s}.csv" for s in ("3x8x8", "3x9x9", "9", "3x8x8_adam")} \
        <= names
    csv = pd.read_csv(out / f"{model}_layers_cpu_float32_b1_in3x9x9.csv")
    assert csv["output_shape"].iloc[0] == "1x4x7x7"  # 9 - 3 + 1


def test_reproduce_subset_keeps_reproductions_csv(tmp_path):
    whole = tmp_path / "reproductions.csv"
    whole.write_text("experiment\nall of them\n")
    assert invoke(["reproduce", "bottleneck", "--out", str(tmp_path)]).exit_code == 0
    assert whole.read_text() == "experiment\nall of them\n"
    assert set(pd.read_csv(tmp_path / "reproductions_bottleneck.csv")["experiment"]) == {"bottleneck"}


# --- one run's files: all or none ---------------------------------------------------------

def previous_set(tmp_path):
    stem = "cpu_float32_b1_nomem_lenet5"
    old = {tmp_path / f"table_{stem}.csv": "old csv\n", tmp_path / f"memory_vs_compute_{stem}.png": "old png"}
    for p, text in old.items():
        p.write_text(text)
    return old


def assert_untouched(tmp_path, old):
    for p, text in old.items():
        assert p.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in old)  # no temp files left


def test_ctrl_c_keeps_the_previous_set_and_exits_130(tmp_path, monkeypatch):
    from archcost.report import plots

    old = previous_set(tmp_path)

    def interrupted(*a, **k):  # Ctrl-C while the plot is drawn: the CSV is already written
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "memory_vs_compute", interrupted)
    r = invoke(["table", "lenet5", "--no-memory", "--out", str(tmp_path)])
    assert r.exit_code == 130 and "interrupted" in r.stderr
    assert_untouched(tmp_path, old)


def test_ctrl_c_while_measuring_exits_130(monkeypatch):
    import archcost.analysis as analysis

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(analysis, "analyze", interrupted)
    assert one_line_error(invoke(["table", "lenet5", "--no-save"]), 130)


def test_full_disk_is_one_line_and_replaces_nothing(tmp_path, monkeypatch):
    from archcost.report import plots

    old = previous_set(tmp_path)

    def full(summary, target, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(plots, "memory_vs_compute", full)
    line = one_line_error(invoke(["table", "lenet5", "--no-memory", "--out", str(tmp_path)]))
    assert "No space left on device" in line and "nothing was replaced" in line
    assert_untouched(tmp_path, old)


def test_csv_name_taken_by_a_folder(tmp_path):
    (tmp_path / "table_cpu_float32_b1_nomem_lenet5.csv").mkdir()
    line = one_line_error(invoke(["table", "lenet5", "--no-memory", "--out", str(tmp_path)]))
    assert "a folder has that name" in line
    assert not (tmp_path / "memory_vs_compute_cpu_float32_b1_nomem_lenet5.png").exists()


# --- hostile inputs -----------------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["table", "alexnet", "--input-size", "99999999999999999999"], "2^40"),
    (["table", "alexnet", "--input-size", "3x4000000000x4000000000"], "2^40"),
    (["table", "alexnet", "-b", "100000000000000"], "smaller --input-size or --batch-size"),
    (["layer-breakdown", "lenet5", "-b", "100000000000000"], "2^40"),
    (["sweep", "lenet5", "--batch-sizes", "100000000000000", "--no-latency"], "2^40"),
    (["table", "/etc/passwd:build"], "not a Python file"),
    (["table", "/tmp:build"], "is a folder"),
])
def test_hostile_inputs_are_one_line(args, needle):
    assert needle in one_line_error(invoke(args + ["--no-save"]))


def test_out_of_memory_is_one_line(monkeypatch):
    import archcost.analysis as analysis

    def oom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 1585971200 bytes. Error code 12")

    monkeypatch.setattr(analysis, "analyze", oom)
    line = one_line_error(invoke(["table", "alexnet", "--no-save"]))
    assert "out of memory" in line and "smaller --batch-size" in line and "enforce" not in line


def test_an_unexpected_bug_is_one_line_exit_3(monkeypatch):
    import archcost.analysis as analysis

    def bug(*a, **k):
        raise KeyError("oops")

    monkeypatch.setattr(analysis, "analyze", bug)
    assert "internal error: KeyError" in one_line_error(invoke(["table", "alexnet", "--no-save"]), 3)


def test_sweep_keeps_measured_rows_when_memory_runs_out(tmp_path, monkeypatch):
    import archcost.analysis as analysis

    real = analysis.analyze

    def capped(name, batch_size=1, **k):
        if batch_size >= 4:
            raise MemoryError()
        return real(name, batch_size=batch_size, **k)

    monkeypatch.setattr(analysis, "analyze", capped)
    r = invoke(["sweep", "lenet5", "--batch-sizes", "1,2,4,8", "--no-latency", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "sweep_cpu_float32_b1-8_nolatency_lenet5.csv")
    assert list(df["batch_size"]) == [1, 2, 4] and list(df["note"].fillna("")) == ["", "", "out of memory"]
    assert df["peak_bytes"].iloc[1] > df["peak_bytes"].iloc[0]


def test_sweep_records_a_refused_batch_and_keeps_the_rows(tmp_path):
    r = invoke(["sweep", "lenet5", "--batch-sizes", "1,2,100000000000000", "--no-latency", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "sweep_cpu_float32_b1-100000000000000_nolatency_lenet5.csv")
    assert list(df["batch_size"]) == [1, 2, 100000000000000]
    assert df["note"].fillna("").iloc[:2].tolist() == ["", ""] and "2^40" in df["note"].iloc[2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ulimit -v")
def test_real_memory_cap_under_ulimit(tmp_path):
    """Under a 3 GB address-space cap, LeNet-5 timed at batch 2^20 (a 4 GiB input alone:
    2^20 x 32 x 32 x 4 bytes) is refused in one line; the sweep keeps batch 1 and records
    2^20 as out of memory. (The issue's case, table alexnet -b 2048 --latency, fails the same way.)"""
    cap = "ulimit -v 3000000; "
    cli = f"'{sys.executable}' -m archcost.cli"
    done = subprocess.run(["bash", "-c", cap + f"{cli} table lenet5 -b 1048576 --latency --repeat 1 --warmup 0 "
                           "--no-save"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-1000:]
    assert done.stderr.strip().splitlines()[-1].startswith("archcost: error: out of memory")
    done = subprocess.run(["bash", "-c", cap + f"{cli} sweep lenet5 --batch-sizes 1,1048576 --repeat 1 --warmup 0 "
                           f"--out '{tmp_path}'"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-1000:]
    df = pd.read_csv(tmp_path / "sweep_cpu_float32_b1-1048576_lenet5.csv")
    assert list(df["batch_size"]) == [1, 1048576] and df["note"].fillna("").tolist() == ["", "out of memory"]


# --- one input-size rule ----------------------------------------------------------------------

CONV_NET = "import torch.nn as nn\ndef build():\n    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten())\n"
LINEAR_NET = "import torch.nn as nn\ndef build():\n    return nn.Sequential(nn.Linear(32, 4))\n"
CONV1D_NET = "import torch.nn as nn\ndef build():\n    return nn.Sequential(nn.Conv1d(16, 4, 3))\n"


@pytest.mark.parametrize("body,size,shape", [
    (CONV_NET, "32", "1x2x32x32"),  # N: a square image with the first conv's 2 channels
    (CONV_NET, "2x8x9", "1x2x8x9"),
    (LINEAR_NET, "32", "1x32"),  # no convolution: N features
    (CONV1D_NET, "100", "1x16x100"),  # Conv1d: N is a length
    (CONV1D_NET, "16x100", "1x16x100"),
])
def test_one_input_size_rule(tmp_path, body, size, shape):
    p = tmp_path / "net.py"
    p.write_text(body)
    r = invoke(["table", f"{p}:build", "--input-size", size, "--no-save", "--no-memory", "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1].split(",")[2] == shape


@pytest.mark.parametrize("model,size", [("lenet5", "3x2"), ("lenet5", "1x1x32x32"), ("CONV", "3x2")])
def test_two_numbers_for_an_image_model_are_refused(tmp_path, model, size):
    if model == "CONV":
        (tmp_path / "net.py").write_text(CONV_NET)
        model = f"{tmp_path / 'net.py'}:build"
    line = one_line_error(invoke(["table", model, "--input-size", size, "--no-save"]))
    assert "give N (a square N x N image" in line and "or CxHxW" in line


def test_the_rule_is_in_help():
    text = " ".join(invoke(["table", "--help"]).stdout.split())
    assert "N (224) is a square N x N image with the model's input channels" in text


def test_real_sigint_exits_130_and_keeps_the_previous_set(tmp_path):
    """A real Ctrl-C (SIGINT) in the middle of a run: exit 130, the old files untouched."""
    import signal
    import time

    old = {tmp_path / "table_cpu_float32_b1.csv": "old csv\n", tmp_path / "memory_vs_compute_cpu_float32_b1.png": "x"}
    for p, text in old.items():
        p.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "archcost.cli", "table", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    line = ""
    while time.time() < deadline and "[2/" not in line:  # measuring has begun
        line = proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-1000:]
    assert "interrupted" in err.strip().splitlines()[-1] and "Traceback" not in err
    for p, text in old.items():
        assert p.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in old)


def test_reproduce_json_is_strict():
    import json

    r = invoke(["reproduce", "bottleneck", "claims", "--format", "json", "--no-save"])
    assert r.exit_code == 0
    doc = json.loads(r.stdout, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))
    assert {row["experiment"] for row in doc["experiments"]} == {"bottleneck"} and len(doc["claims"])
    direct = next(row for row in doc["experiments"] if row["variant"].startswith("5x5"))
    assert direct["macs"] == 28 * 28 * 32 * 5 * 5 * 192  # GoogLeNet's example: 120M


def test_readme_reports_are_what_their_commands_write(tmp_path, monkeypatch):
    """Every generated report the README shows is the file its command writes (the commands
    run here with the analysis and the plots stubbed: only the names are under test)."""
    import re
    from pathlib import Path

    import archcost.analysis as analysis
    from archcost.report import plots

    real = analysis.analyze
    cache = {}

    def quick(name, batch_size=1, **k):  # lenet5's frames under every name: fast
        a = cache.setdefault((batch_size, k.get("latency")), real("lenet5", batch_size=batch_size, repeats=1,
                                                                   warmup=0, latency=k.get("latency", False)))
        a.summary["model"] = name
        return a

    monkeypatch.setattr(analysis, "analyze", quick)
    for fn in ("memory_vs_compute", "layer_breakdown", "sweep"):
        monkeypatch.setattr(plots, fn, lambda *a, **k: next(Path(t) for t in a if str(t).endswith(".png"))
                            .write_text("png"))
    for args in (["table"], ["layer-breakdown", "vgg16"],
                 ["sweep", "alexnet", "googlenet", "resnet50", "--batch-sizes", "1,2,4,...,16"]):
        assert invoke(args + ["--out", str(tmp_path)]).exit_code == 0
    written = {p.name for p in tmp_path.iterdir()}
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    shown = set(re.findall(r"reports/((?:table|memory_vs_compute|sweep|\w+_layers)_[\w.+-]+\.(?:png|csv))", readme))
    assert shown and shown - {n.replace(".png", ".csv") for n in written} - written == set()


def test_a_roofline_target_gets_its_own_table_file(tmp_path):
    """`table --target` adds columns: it must not replace the plain table's file."""
    for extra in ([], ["--target", "a100-80gb"]):
        r = CliRunner().invoke(main, ["table", "lenet5", "--no-memory", "--out", str(tmp_path), *extra])
        assert r.exit_code == 0, r.output
    names = sorted(p.name for p in tmp_path.glob("table_*.csv"))
    assert names == ["table_cpu_float32_b1_nomem_bound-a100-80gb_lenet5.csv", "table_cpu_float32_b1_nomem_lenet5.csv"]
