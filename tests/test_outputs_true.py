"""Issue #22, "Outputs that say something untrue": the layer CSV's total row, check's status
column, reproductions' forward and training MACs apart, the plots' labels."""

import io
import json
import textwrap

import pandas as pd
import torch.nn as nn
from click.testing import CliRunner

from archcost.cli import main

NET = """
    import torch.nn as nn
    class Net(nn.Module):
        def __init__(self, extra):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
            self.extra = nn.Conv2d(16, 16, 1) if extra else nn.Identity()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, 10)
        def forward(self, x):
            return self.fc(self.pool(self.extra(self.conv1(x))).flatten(1))
    def build():
        return Net({extra})
"""


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_layer_csv_total_row_has_its_own_column_and_typed_columns(tmp_path):
    r = run("layer-breakdown", "resnet18", "--out", str(tmp_path), "--format", "csv")
    assert r.exit_code == 0, r.output
    (csv,) = tmp_path.glob("resnet18_layers*.csv")
    df = pd.read_csv(csv)
    for col in ("params", "self_params", "macs", "self_macs", "depth", "calls"):
        assert df[col].dtype == "int64", col
    assert df["is_total"].dtype == bool and df["is_total"].sum() == 1
    total = df[df["is_total"]].iloc[0]
    assert total["type"] == "ResNet"  # the model's class, not its name in the type column
    rows = df[~df["is_total"]]
    assert rows["params"].sum() == total["params"] == 11_689_512  # torchvision resnet18's documented count
    assert rows["macs"].sum() == total["macs"]


def test_check_reports_status_in_its_own_field(tmp_path):
    net = tmp_path / "net.py"
    net.write_text(textwrap.dedent(NET.format(extra=False)))
    base = tmp_path / "base.csv"
    assert run("check", "--update", "--layers", "--baseline", str(base), f"{net}:build",
               "--input-size", "3x8x8").exit_code == 0
    net.write_text(textwrap.dedent(NET.format(extra=True)))
    r = run("check", "--baseline", str(base), "--format", "json")
    assert r.exit_code == 1
    rows = json.loads(r.stdout)
    added = [x for x in rows if x["layer"] == "extra"]
    assert added and all(x["status"] == "added" for x in added)
    assert {x["column"]: x["delta"] for x in added} == {"params": 16 * 16 + 16, "macs": 8 * 8 * 16 * 16}
    assert not any("(" in x["layer"] and x["layer"] != "(total)" for x in rows)
    csv = pd.read_csv(io.StringIO(run("check", "--baseline", str(base), "--format", "csv").stdout))
    assert set(csv["status"]) == {"added", "changed"}
    text = run("check", "--baseline", str(base)).stdout
    assert "extra (added):" in text


def test_training_rows_keep_forward_and_training_macs_apart():
    from archcost.reproduce.training import _train_row

    row = _train_row("training-cost", "lenet5", "lenet5")
    from archcost import analyze

    a = analyze("lenet5", train=True).row
    assert row["macs"] == a["macs"]  # the forward's
    assert row["train_macs"] == a["macs"] + a["backward_macs"]


def test_aux_classifiers_show_the_aux_params():
    from archcost.reproduce.claims import aux_classifiers
    from archcost.zoo.registry import get_model

    rows = {r["variant"]: r for r in aux_classifiers()}
    m = get_model("googlenet_paper")
    aux = sum(p.numel() for n, p in m.named_parameters() if n.startswith("aux"))
    assert rows["the two aux heads alone"]["params"] == aux > 0


def test_experiment_bars_label_the_tables_ratio(monkeypatch):
    from archcost.report import plots

    texts = []
    monkeypatch.setattr(plots, "_save", lambda fig, target: texts.extend(t.get_text() for ax in fig.axes
                                                                          for t in ax.texts))
    rows = [{"variant": "a", "params": 10, "macs": 100, "ratio_params": 1.0, "ratio_macs": 1.0},
            {"variant": "share", "params": 5, "macs": 250, "ratio_params": 0.5, "ratio_macs": 0.25}]
    plots.experiment_bars(rows, "x.png", "t")
    assert any("x0.250" in t for t in texts) and not any("x2.500" in t for t in texts)


class OwnOps(nn.Module):
    """Attention's products in the block's own forward, as in a ViT: an [own ops] row."""

    def __init__(self, d=8):
        super().__init__()
        self.block = nn.ModuleDict({"qkv": nn.Linear(d, 3 * d), "proj": nn.Linear(d, d)})

    def forward(self, x):
        q, k, v = self.block["qkv"](x).chunk(3, -1)
        return self.block["proj"]((q @ k.transpose(-1, -2)) @ v)


def test_layer_breakdown_png_shows_own_ops_and_honours_depth(tmp_path, monkeypatch):
    import archcost
    from archcost.report import plots

    seen = {}
    real = plots._save

    def keep(fig, target):
        seen["labels"] = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
        seen["titles"] = [ax.get_title(loc="left") for ax in fig.axes]
        real(fig, target)

    monkeypatch.setattr(plots, "_save", keep)
    a = archcost.analyze(OwnOps(), input_size=(5, 8), memory=False)
    plots.layer_breakdown(a.breakdown(), "ownops", tmp_path / "a.png")
    assert "(model) [own ops]" in seen["labels"]
    n, d = 5, 8
    own = 2 * n * n * d  # Q K^T and A V
    share = 100 * own / (n * d * 3 * d + own + n * d * d)
    assert f"[own ops] {share:.0f}%" in seen["titles"][1]
    plots.layer_breakdown(a.breakdown(depth=1), "ownops", tmp_path / "b.png", depth=1)
    assert "block" in seen["labels"] and "block.qkv" not in seen["labels"]
