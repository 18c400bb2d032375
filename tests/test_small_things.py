"""The small things users notice (issue 13): units, --depth partition, shared weights,
names, one model per per-model command, one truth about params."""

import io
import pathlib
import re

import pandas as pd
import pytest
import torch.nn as nn
from click.testing import CliRunner

import archcost
from archcost.cli import main
from archcost.report.units import human_bytes, si


def run(args):
    return CliRunner().invoke(main, args)


def csv(args):
    r = run(args + ["--format", "csv"])
    assert r.exit_code == 0, r.output
    return pd.read_csv(io.StringIO(r.stdout))


def test_units_scale_per_value():
    assert human_bytes(100) == "100 B"
    assert human_bytes(6 * 2**10 + 2**9) == "6.5 KiB"
    assert human_bytes(57.6 * 2**20) == "57.6 MiB"
    assert human_bytes(3 * 2**30) == "3.00 GiB" and human_bytes(2**41) == "2.00 TiB"
    assert si(60_000) == "60K" and si(275 * 10**12) == "275T" and si(3.06e15) == "3.06P"
    assert "e+" not in si(3.06e21)


def test_tiny_and_huge_models_read_in_their_units():
    tiny = run(["table", "lenet5", "--no-save"]).stdout
    assert "0.0 MiB" not in tiny and "KiB" in tiny  # LeNet-5's 16.2K activations: 4 bytes each
    row = csv(["table", "lenet5", "--no-save"]).iloc[0]
    assert f"{row['activation_bytes'] / 1024:.1f} KiB" in tiny
    huge = run(["table", "alexnet", "--input-size", "3x20000x20000", "--no-memory", "--no-save"]).stdout
    assert "e+" not in huge and not re.search(r"\d{5,}\.\d MiB", huge)


@pytest.mark.parametrize("model,depth", [("resnet18", 1), ("resnet18", 2), ("googlenet", 1), ("densenet121", 2)])
def test_depth_rows_partition_activations(model, depth):
    df = csv(["layer-breakdown", model, "--depth", str(depth), "--no-save"])
    rows, total = df[df["layer"] != "(total)"], df[df["layer"] == "(total)"].iloc[0]
    counted = rows[~rows["aliased"].astype(bool)]
    for col in ("activations", "activation_bytes", "params", "macs"):
        assert counted[col].sum() == total[col], col
    containers = rows[~rows["is_leaf"].astype(bool) & ~rows["layer"].str.endswith("[own ops]")]
    assert len(containers) and containers["activation_note"].str.contains("sum of its").all()


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(6, 6, bias=False)
        self.dec = nn.Linear(6, 6, bias=False)
        self.dec.weight = self.enc.weight
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.dec(self.enc(x)))


def test_shared_weight_rows_are_marked():
    a = archcost.analyze(Tied(), input_size=(6,))
    ly = a.layers.set_index("layer")
    assert ly.loc["enc", "shared_params"] == 6 * 6 and ly.loc["dec", "shared_params"] == 6 * 6
    assert ly.loc["head", "shared_params"] == 0 and ly.loc["(model)", "shared_params"] == 0
    leaves = ly[ly["is_leaf"]]
    assert leaves["params"].sum() - leaves["shared_params"].sum() / 2 == a.row["params"] == 36 + 6 * 2 + 2


def test_shared_column_in_text(tmp_path):
    p = tmp_path / "tied.py"
    p.write_text("import torch.nn as nn\n"
                 "def build():\n    a = nn.Linear(4, 4)\n    s = nn.Sequential(a, nn.ReLU(), a)\n    return s\n")
    r = run(["layer-breakdown", f"{p}:build", "--input-size", "4", "--no-save"])
    assert r.exit_code == 0 and "shared: parameters this row shares" in r.stdout


@pytest.mark.parametrize("args", [["table", "VGG16", "--no-memory"], ["table", "ResNet1?", "--no-memory"],
                                  ["table", "VGG", "--no-memory"]])
def test_names_are_case_insensitive(args):
    df = csv(args + ["--no-save"])
    assert set(df["model"]) <= {"vgg16", "resnet18", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn",
                                "vgg16_bn", "vgg19_bn"} and len(df)


def test_list_suggests_and_ignores_case():
    r = run(["list", "alexnt"])
    assert r.exit_code == 2 and "did you mean alexnet" in r.stderr
    assert "vgg16 " in run(["list", "VGG16"]).stdout


def test_per_model_commands_take_one_model():
    r = run(["layer-breakdown", "resnet*", "--no-save"])
    assert r.exit_code == 2 and "'resnet*' matches 5 models (resnet18, resnet34" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_one_truth_about_params():
    text = run(["list", "vgg16"]).stdout
    assert "trainable parameters;" not in text and "trainable and not" in text
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "| `params` | parameters (trainable and not" in readme
    listed = pd.read_csv(io.StringIO(run(["list", "vgg16", "--format", "csv"]).stdout)).iloc[0]
    assert listed["params"] == archcost.analyze("vgg16", memory=False).row["params"]


def test_latency_spread_is_flagged(monkeypatch):
    from archcost.measure import timing
    def busy(model, inputs, device, repeats=20, warmup=5, amp_dtype=None):
        return timing.summarize([1.0, 1.0, 1.0, 4.0, 4.0], warmup, "perf_counter")  # p20 1 ms, p80 4 ms

    monkeypatch.setattr(timing, "time_forward", busy)
    r = run(["table", "lenet5", "--latency", "--no-save"])
    assert r.exit_code == 0
    assert "4.00 !" in r.stdout and "warning: latency spread p80/p20 above 1.5 for lenet5" in r.stdout
    df = csv(["table", "lenet5", "--latency", "--no-save"])
    assert df["latency_spread"].iloc[0] == 4.0


def test_steady_latency_has_no_warning(monkeypatch):
    from archcost.measure import timing
    monkeypatch.setattr(timing, "time_forward", lambda *a, **k: timing.summarize([2.0, 2.1, 2.2], 0, "perf_counter"))
    out = run(["table", "lenet5", "--latency", "--no-save"]).stdout
    assert "warning" not in out and " !" not in out


def test_progress_on_stderr():
    r = run(["table", "lenet5", "alexnet", "--no-memory", "--no-save"])
    assert "archcost: [1/2] measuring lenet5" in r.stderr and "archcost: [2/2] measuring alexnet" in r.stderr
    r = run(["sweep", "lenet5", "--batch-sizes", "1,2", "--no-latency", "--no-save"])
    assert "archcost: [2/2] sweeping lenet5 batch 2" in r.stderr
    r = run(["reproduce", "bottleneck", "claims", "--no-save"])
    assert "archcost: [..] reproduce: bottleneck" in r.stderr
    assert "archcost: [..] memory: measuring lenet5" in run(["memory", "lenet5"]).stderr


def test_ops_takes_engine_and_dtype():
    frames = [csv(["ops", "resnet18", "--engine", e, "--dtype", d]).set_index("operator")
              for e, d in (("auto", "float32"), ("fvcore", "float32"), ("auto", "bfloat16"))]
    for df in frames:
        # convolutions: archcost's count equals torch.utils.flop_counter's, whatever the engine and dtype
        assert df.loc["convolution", "macs"] == df.loc["convolution", "torch_macs"] > 0
        assert df.equals(frames[0])


@pytest.mark.parametrize("args,width", [(["ops", "resnet18"], 80), (["memory", "lenet5"], 100), (["list"], 100)])
def test_text_wraps_to_the_terminal(monkeypatch, args, width):
    monkeypatch.setenv("COLUMNS", str(width))
    out = run(args).stdout
    assert max(len(line) for line in out.splitlines()) <= width
    assert "torch's counter" in " ".join(out.split()) or "allocator" in out or "Very Deep Convolutional" in " ".join(out.split())


def test_bare_command_prints_its_help_and_plot_sweep_output_errors_are_one_line(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "archcost.cli"], capture_output=True, text=True)
    assert done.returncode == 2 and "\\n" not in done.stderr and "Commands:" in done.stderr
    csv = tmp_path / "s.csv"
    csv.write_text("model,batch_size,peak_bytes,train_bytes\nlenet5,1,10,20\nlenet5,2,20,40\n")
    bad = subprocess.run([sys.executable, "-m", "archcost.cli", "plot", "sweep", str(csv), "--output",
                          str(tmp_path / "noext")], capture_output=True, text=True)
    assert bad.returncode == 2 and "must end in .png" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_messages_point_to_what_would_work(tmp_path):
    from click.testing import CliRunner

    from archcost.cli import main

    model = tmp_path / "net.py"
    model.write_text("import torch.nn as nn\ndef build(): return nn.Sequential(nn.Conv2d(3, 4, 3))\n")
    runner = CliRunner()
    r = runner.invoke(main, ["table", str(model), "--no-save"])
    assert r.exit_code == 2 and f"{model}:build" in r.output
    r = runner.invoke(main, ["table", f"{model}:build", "--input-size", "3x8x8", "--input-size", "3x8x8", "--no-save"])
    assert r.exit_code == 2 and "one --input-size per input" in r.output
    r = runner.invoke(main, ["sweep", "lenet5", "--batch-sizes", "1,2,4,...,3", "--no-save"])
    assert r.exit_code == 2 and "is not a list like" in r.output
