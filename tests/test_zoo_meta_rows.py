"""A zoo row is made on meta tensors (compare/zoo_run.py): counts and memory (without kernel
scratch), each saying what it holds; fvcore's trace on real CPU tensors with zeroed,
uninitialised weights; fvcore's missing rule for ``padding="same"`` convolutions
(ConvMixer) named, by formula."""

import sys
import textwrap
import types

import pandas as pd
import pytest
import torch
import torch.nn as nn

import archcost
from archcost.checks.fvcore_diff import describe, difference_by_operator, fvcore_count, group
from archcost.compare.zoo_run import ZooOptions, zoo_task


def conv_mixer(dim=16, depth=3, kernel=5, patch=4, classes=10):
    """ConvMixer (Trockman & Kolter 2022, timm's convmixer.py): a patch convolution, then per
    block a depthwise k x k convolution with padding="same" (in a residual) and a pointwise one."""
    blocks = [nn.Sequential(nn.Conv2d(dim, dim, kernel, groups=dim, padding="same"), nn.GELU(),
                            nn.BatchNorm2d(dim), nn.Conv2d(dim, dim, 1), nn.GELU(), nn.BatchNorm2d(dim))
              for _ in range(depth)]
    return nn.Sequential(nn.Conv2d(3, dim, patch, stride=patch), nn.GELU(), nn.BatchNorm2d(dim), *blocks,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dim, classes))


def test_fvcore_counts_no_same_padding_convolution_archcost_counts_it():
    dim, depth, kernel, patch, size = 16, 3, 5, 4, 32
    side = size // patch
    model = conv_mixer(dim, depth, kernel, patch).eval()
    x = torch.randn(1, 3, size, size)
    stem = dim * 3 * patch * patch * side * side
    depthwise = dim * kernel * kernel * side * side  # groups=dim: k*k MACs per output element
    pointwise = dim * dim * side * side
    a = archcost.analyze(model, inputs=[x], memory=False)
    ours = sum(m for op, m in a.macs_by_aten.items() if group(op) == "convolution")
    assert ours == stem + depth * (depthwise + pointwise)
    total, by_op, missed = fvcore_count(model, (x,))
    assert by_op["conv"] == stem + depth * pointwise  # the 'same' depthwise layers: 0 in fvcore
    assert missed["aten::_convolution_mode"] == depth  # (and GELU, which neither side counts)
    text = describe(difference_by_operator(a.macs_by_aten, by_op), missed)
    assert f"convolution +{depth * depthwise} (fvcore: no rule for aten::_convolution_mode x{depth})" in text


def test_convmixer_768_32_difference_is_its_same_padding_depthwise_layers():
    """timm's convmixer_768_32 (dim 768, depth 32, kernel 7, patch 7, 224x224: a 32x32 map):
    fvcore leaves out 32 depthwise 7x7 convolutions of 768 channels, 32*768*49*32*32 MACs."""
    if "torchvision" not in sys.modules:  # torchvision's CUDA wheel beside a CPU torch (tests/conftest.py)
        sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    pytest.importorskip("timm")
    row = _row("timm:convmixer_768_32", ZooOptions(memory=False))
    assert row["fvcore_status"] == "ok" and row["fvcore_reason"] == "weights not initialised (zeros)"
    depthwise = 32 * 768 * 7 * 7 * 32 * 32
    assert f"convolution +{depthwise} (fvcore: no rule for aten::_convolution_mode x32)" in \
        row["fvcore_difference_by_operator"]


def _row(ref, options):
    row = {}
    for part in zoo_task(ref, options):
        row.update(part)
    return row


MODELS = textwrap.dedent("""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Attention(nn.Module):
        def __init__(self, d=16, heads=2):
            super().__init__()
            self.qkv, self.heads = nn.Linear(d, 3 * d), heads

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)

    def attention():
        return nn.Sequential(nn.Linear(8, 16), Attention())

    def convnet():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))

    class ReadsValues(nn.Linear):
        def forward(self, x):
            if float(x.sum()) > -1e9:  # needs values: no meta trace
                return super().forward(x)
            return x

    def reads_values():
        return ReadsValues(6, 5)
""")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoo_meta") / "models.py"
    path.write_text(MODELS)
    return path


def test_a_zoo_row_is_measured_on_meta_without_kernel_scratch(models):
    ref = f"{models}:convnet"
    row = _row(ref, ZooOptions(input_size=(3, 12, 12)))
    a = archcost.analyze(ref, input_size=(3, 12, 12), memory_on="meta")
    assert row["memory_measured_on"] == "meta"
    assert int(row["peak_bytes"]) == int(a.row["peak_bytes"])
    assert pd.isna(a.row["peak_scratch_bytes"]) and "without kernel scratch" in row["notes"]
    # without scratch, the highest live total is during the ReLU (not in place): conv1's output
    # (8x10x10 float32) and the ReLU's own; conv2's (4x8x8) comes after conv1's is freed
    assert int(row["peak_bytes"]) == 4 * (8 * 10 * 10 + 8 * 10 * 10)
    assert row["fvcore_status"] == "ok" and row["fvcore_reason"] == "weights not initialised (zeros)"
    macs = 8 * 3 * 9 * 10 * 10 + 4 * 8 * 9 * 8 * 8
    assert int(row["macs"]) == macs and int(row["fvcore_macs"]) == macs and int(row["fvcore_difference"]) == 0


def test_attention_on_meta_says_it_holds_the_decomposition(models):
    row = _row(f"{models}:attention", ZooOptions(input_size=(5, 8)))
    assert row["memory_measured_on"] == "meta"
    assert "scaled_dot_product_attention as meta's math decomposition" in row["notes"]
    heads, n, d = 2, 5, 16
    assert int(row["attention_macs"]) == 2 * heads * n * n * (d // heads)  # Q K^T and P V
    assert row["fvcore_status"] == "ok" and int(row["fvcore_difference"]) == int(row["attention_macs"])


def test_fvcore_runs_on_the_initialised_model_where_the_forward_reads_values(models):
    """archcost counts such a model on real tensors, the builder's initialisation, seed 0
    (its notes say so); fvcore then traces that same model, not zeroed weights."""
    row = _row(f"{models}:reads_values", ZooOptions(input_size=(6,)))
    assert "counted on real CPU tensors" in row["notes"] and row["memory_measured_on"] == "cpu"
    assert row["fvcore_status"] == "ok" and row["fvcore_reason"] == ""
    assert int(row["fvcore_macs"]) == 6 * 5 == int(row["macs"])


@pytest.mark.parametrize("kw, says", [({"memory_on": "gpu"}, "unknown memory_on"),
                                      ({"memory_on": "meta", "latency": True}, "not with latency")])
def test_memory_on_misused_is_one_message(kw, says):
    from archcost.errors import AnalysisError

    with pytest.raises(AnalysisError, match=says):
        archcost.analyze("lenet5", **kw)
