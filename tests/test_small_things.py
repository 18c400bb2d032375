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
    assert human_bytes(3 * 2**30) == "3.0 GiB" and human_bytes(2**41) == "2.0 TiB"
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
