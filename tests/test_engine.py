"""The counting engine: exact formulas on real layers, invariants over the whole zoo,
equality with fvcore, and the model handed back unchanged."""

import warnings

import pytest
import torch
import torch.nn as nn

import archcost
from archcost.analysis import AnalysisError
ALL = archcost.list_models()
PAPER_VARIANTS = ["lenet5", "alexnet_paper", "zfnet", "googlenet_paper", "xception",
                  "se_resnet50", "resnet18"]


def fvcore_count(model, x):
    from fvcore.nn import FlopCountAnalysis

    fca = FlopCountAnalysis(model, x)
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fca.total(), fca.by_module()


def real_model(name, **kw):
    torch.manual_seed(0)
    return archcost.get_model(name, **kw).eval()


def test_googlenet_bottleneck_example():
    """28x28x192 -> 32 maps: 5x5 directly vs a 16-map 1x1 reduction first (lecture notes)."""
    direct = nn.Conv2d(192, 32, 5, padding=2)
    reduced = nn.Sequential(nn.Conv2d(192, 16, 1), nn.Conv2d(16, 32, 5, padding=2))
    a = archcost.analyze(direct, input_size=(192, 28, 28)).row
    b = archcost.analyze(reduced, input_size=(192, 28, 28)).row
    assert a["macs"] == 28 * 28 * 32 * 5 * 5 * 192 == 120_422_400       # notes: ~120M
    assert b["macs"] == 28 * 28 * 16 * 192 + 28 * 28 * 32 * 5 * 5 * 16 == 12_443_648  # ~12M
    assert a["flops"] == 2 * a["macs"]


@pytest.mark.parametrize("name", PAPER_VARIANTS)
def test_macs_equal_fvcore_per_module(name):
    """Live fvcore trace on a real copy: the total and every module's count agree."""
    spec = archcost.get_spec(name)
    model = real_model(name)
    total, by_module = fvcore_count(model, torch.randn(1, *spec.input_size))
    a = archcost.analyze(name)
    assert a.row["macs"] == total
    for rec in a.layers.itertuples():
        key = "" if rec.layer == "(model)" else rec.layer
        assert rec.macs == by_module.get(key, 0), rec.layer


def test_fvcore_engine_agrees_with_meta_engine():
    meta = archcost.analyze("resnet18", input_size=64)
    fv = archcost.analyze("resnet18", input_size=64, engine="fvcore")
    assert fv.row["engine"] == "fvcore" and meta.row["engine"] == "meta"
    assert fv.row["macs"] == meta.row["macs"]
    assert fv.layers["macs"].tolist() == meta.layers["macs"].tolist()
    assert fv.row["activations"] == meta.row["activations"]


@pytest.mark.parametrize("name", ALL)
def test_invariants(name):
    a = archcost.analyze(name)
    row, layers = a.row, a.layers
    with torch.device("meta"):
        model = archcost.get_model(name)
    params = sum(p.numel() for p in model.parameters())
    assert row["params"] == params
    assert row["param_bytes"] == 4 * params
    assert row["flops"] == 2 * row["macs"]
    for depth in (None, 1, 2):
        part = a.breakdown(depth)
        assert part["params"].sum() == row["params"], depth
        assert part["macs"].sum() == row["macs"], depth
    leaves = layers[layers["is_leaf"] & ~layers["aliased"]]
    assert leaves["activations"].sum() == row["activations"]
    assert row["activation_bytes"] == 4 * row["activations"]
    assert (layers[layers["layer"] == "(model)"]["macs"] == row["macs"]).all()


def test_activations_count_inplace_relu_once():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 4, 1),
                        nn.ReLU(), nn.Flatten(), nn.Dropout())
    a = archcost.analyze(net, input_size=(3, 16, 16))
    # conv(8 maps) + conv(4 maps) + the out-of-place ReLU's new tensor; in-place ReLU,
    # Flatten (a view) and Dropout (eval: identity) add nothing.
    assert a.row["activations"] == 8 * 16 * 16 + 4 * 16 * 16 + 4 * 16 * 16
    assert a.layers.set_index("layer").loc["1", "aliased"]


def test_batch_size_scales_macs_and_activations():
    a1 = archcost.analyze("resnet18", input_size=64).row
    a4 = archcost.analyze("resnet18", input_size=64, batch_size=4).row
    assert a4["macs"] == 4 * a1["macs"] and a4["activations"] == 4 * a1["activations"]
    assert a4["params"] == a1["params"] and a4["input_shape"] == "4x3x64x64"


def test_dtype_changes_bytes_not_counts():
    a = archcost.analyze("alexnet").row
    h = archcost.analyze("alexnet", dtype="float16").row
    assert h["macs"] == a["macs"] and 2 * h["activation_bytes"] == a["activation_bytes"]
    assert 2 * h["param_bytes"] == a["param_bytes"]


def test_model_comes_back_unchanged():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    buffers = [n for n, _ in net.named_buffers()]
    archcost.analyze(net, input_size=(3, 8, 8))
    assert net.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert [n for n, _ in net.named_buffers()] == buffers
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_uncounted_ops_are_listed_not_silently_zero():
    a = archcost.analyze("resnet18")
    assert "max_pool2d x1" in a.row["uncounted_ops"]
    assert "add_ x8" in a.row["uncounted_ops"]  # the 8 residual additions
    ops = a.by_operator.set_index("operator")
    assert ops.loc["max_pool2d", "calls_uncounted"] == 1


def test_too_small_input_names_layer_and_smallest_size():
    with pytest.raises(AnalysisError) as e:
        archcost.analyze("alexnet", input_size=32)
    msg = str(e.value)
    assert "features.12 (MaxPool2d)" in msg and "smallest square input that works is 3x63x63" in msg
    # check the claim: 63 works, 62 does not
    archcost.analyze("alexnet", input_size=63)
    with pytest.raises(AnalysisError):
        archcost.analyze("alexnet", input_size=62)


def test_unknown_model_suggests_names():
    with pytest.raises(AnalysisError, match="did you mean.*resnet50"):
        archcost.analyze("resnet05")


def test_cross_check_with_torch_flop_counter_explains_difference():
    from archcost.checks.crosscheck import cross_check

    frame = cross_check("resnet18").set_index("operator")
    assert frame.loc["convolution", "difference"] == 0
    assert frame.loc["matrix product", "difference"] == 0
    bn_elems = frame.loc["batch_norm", "macs"]
    assert frame.loc["batch_norm", "torch_macs"] == 0 and bn_elems > 0
    total = frame.loc["(total)"]
    assert total["difference"] == bn_elems + frame.loc["adaptive_avg_pool2d", "macs"]
    assert "normalization" in frame.loc["batch_norm", "why"]


@pytest.mark.parametrize("name", ALL)
def test_shape_shortcuts_match_real_meta_kernels(name, monkeypatch):
    """shapes.py's closed forms give the same layers as PyTorch's own meta kernels."""
    from archcost.count import shapes as shapes

    fast = archcost.analyze(name)
    monkeypatch.setattr(shapes, "ATEN_SHORTCUTS", {})
    slow = archcost.analyze(name)
    assert fast.layers.equals(slow.layers) and fast.summary.equals(slow.summary)


def test_batch_64_of_the_largest_models_is_shape_only():
    for name in ("vgg19_bn", "densenet161", "xception"):
        row = archcost.analyze(name, batch_size=64).row
        assert row["engine"] == "meta" and row["activation_bytes"] > 2**30
