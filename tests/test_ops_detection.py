"""Issue #22: detection models (they need targets in training mode) get their inference
columns and a one-line note, never exit 3; ``ops`` runs torch's counter on real tensors of
the same input and names the fused kernels it misses; a module called on a parameter (CaiT's
class token) does not crash torch's counter."""

import io

import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from click.testing import CliRunner

tvops = pytest.importorskip("tvops", reason="torchvision is not installed (pip install -e .[torchvision])")  # noqa: F401
from archcost.checks.crosscheck import cross_check
from archcost.cli import main


class NeedsTargets(nn.Module):
    """As torchvision's detection models: training mode without targets raises."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x, targets=None):
        if self.training:
            torch._assert(targets is not None, "targets should not be none when in training mode")
        return self.conv(x)


def test_model_needing_targets_keeps_inference_columns():
    import archcost

    a = archcost.analyze(NeedsTargets(), input_size=(3, 8, 8))
    assert a.row["macs"] == 4 * 6 * 6 * 3 * 3 * 3
    assert a.row["peak_bytes"] > 0 and pd.isna(a.row["train_bytes"])
    assert "targets" in a.row["memory_note"] and "\n" not in a.row["memory_note"]


def ssdlite():
    import torchvision.models.detection as d

    return d.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)


def test_ssdlite_table_and_ops_do_not_crash(tmp_path, monkeypatch):
    import sys

    sys.modules[__name__].ssdlite = ssdlite
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["table", f"{__name__}:ssdlite", "--input-size", "3x64x64", "--format", "csv",
                                  "--no-save"])
    assert r.exit_code == 0, r.output
    row = pd.read_csv(io.StringIO(r.stdout)).iloc[0]
    assert row["peak_bytes"] > 0 and "targets" in row["memory_note"]
    r = CliRunner().invoke(main, ["ops", f"{__name__}:ssdlite", "--input-size", "3x64x64", "--format", "csv"])
    assert r.exit_code == 0, r.output


class Attention(nn.Module):
    def __init__(self, d=8, heads=2):
        super().__init__()
        self.qkv, self.heads = nn.Linear(d, 3 * d), heads

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v)


def test_ops_runs_torch_counter_on_real_tensors_and_names_the_fused_kernel():
    b, n, d = 1, 5, 8
    frame = cross_check(Attention(d), input_size=(n, d), batch_size=b)
    att = frame.set_index("operator").loc["scaled_dot_product_attention"]
    assert att["macs"] == b * n * n * d * 2  # Q K^T and A V: B*H*L*S*(E+Ev) with H*E = d
    # on real CPU tensors SDPA runs a fused kernel torch's counter has no formula for
    assert att["torch_macs"] == 0
    assert "_scaled_dot_product_flash_attention_for_cpu" in att["why"]
    assert frame.attrs["torch_ran_on"] == "real cpu tensors of the same input (torch.randn, seed 0)"


class CallsOnParameter(nn.Module):
    """CaiT's class-attention blocks take the class token, a parameter, as input."""

    def __init__(self):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 4))
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.token) + x


def test_ops_on_a_module_called_on_a_parameter():
    frame = cross_check(CallsOnParameter(), input_size=(4,))
    total = frame.set_index("operator").loc["(total)"]
    assert total["macs"] == total["torch_macs"] == 4 * 4
