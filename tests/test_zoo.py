"""The zoo: torchvision-named models are torchvision's networks; paper variants have
their paper's counts. Expected values are formulas from the architectures, or facts
recorded from torchvision itself (tests/data), never archcost's own output."""

import pytest
import torch

import archcost
from archcost.zoo.registry import get_spec

TV_NAMES = ["alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn",
            "vgg19_bn", "googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
            "densenet121", "densenet161", "densenet169", "densenet201", "resnext50_32x4d",
            "mobilenet_v2"]


def meta_model(name, **kw):
    with torch.device("meta"):
        return archcost.get_model(name, **kw)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", TV_NAMES)
def test_same_state_dict_as_torchvision(name, tv_reference):
    sd = {k: list(v.shape) for k, v in meta_model(name).state_dict().items()}
    assert sd == tv_reference[name]["state_dict"]
    assert get_spec(name).torchvision


def test_googlenet_with_aux_loads_torchvision_checkpoint_keys(tv_reference):
    sd = {k: list(v.shape) for k, v in meta_model("googlenet", aux_logits=True).state_dict().items()}
    assert sd == tv_reference["googlenet"]["state_dict_with_aux"]


@pytest.mark.parametrize("name", TV_NAMES)
def test_params_and_macs_equal_torchvision_counted_by_fvcore(name, tv_reference):
    row = archcost.analyze(name).row
    assert row["params"] == tv_reference[name]["params"] == tv_reference[name]["weights"]["num_params"]
    assert row["macs"] == tv_reference[name]["fvcore_macs"]


@pytest.mark.parametrize("name", TV_NAMES)
def test_published_accuracy_is_torchvisions(name, tv_reference):
    acc = get_spec(name).accuracy
    w = tv_reference[name]["weights"]
    assert (acc.top1, acc.top5) == (w["acc@1"], w["acc@5"])
    assert "torchvision" in acc.source


def test_every_model_has_a_complete_spec():
    names = archcost.list_models()
    assert len(names) >= 28
    for n in names:
        s = get_spec(n)
        assert s.family and s.paper.title and s.paper.url.startswith("http") and s.paper.year > 1990
        assert s.depth > 0 and len(s.input_size) == 3
        assert s.accuracy.source and (s.accuracy.top1 or s.accuracy.top5)
        assert s.note


def test_list_models_wildcards_families_and_natural_sort():
    assert archcost.list_models("resnet*") == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert archcost.list_models("densenet") == ["densenet121", "densenet161", "densenet169", "densenet201"]
    assert archcost.list_models("alexnet") == ["alexnet"]  # exact name beats the family
    assert archcost.list_models("no-such-*") == []


def test_register_model_rejects_duplicates():
    from archcost.zoo.registry import Accuracy, Paper, register_model

    with pytest.raises(ValueError, match="already registered"):
        register_model(family="x", input_size=(3, 8, 8), paper=Paper("t", "a", 2000, "http://x"),
                       depth=1, accuracy=Accuracy(1, 1, "d", "s"), name="vgg16")(lambda: None)


# --- paper variants -------------------------------------------------------------------

def conv_p(cin, cout, k, groups=1, bias=True):
    return k * k * (cin // groups) * cout + (cout if bias else 0)


def fc_p(cin, cout):
    return cin * cout + cout


def test_lenet5_per_layer_params_match_the_paper():
    layers = archcost.analyze("lenet5").layers.set_index("layer")
    c3 = 6 * (3 * 25 + 1) + 6 * (4 * 25 + 1) + 3 * (4 * 25 + 1) + (6 * 25 + 1)
    expected = {"c1": (5 * 5 * 1 + 1) * 6,        # paper: 156
                "s2": (1 + 1) * 6,                 # paper: 12
                "c3": c3,                          # paper: 1,516 (Table I connections)
                "s4": (1 + 1) * 16,                # paper: 32
                "c5": (5 * 5 * 16 + 1) * 120,      # paper: 48,120
                "f6": (120 + 1) * 84}              # paper: 10,164
    assert {k: int(layers.loc[k, "params"]) for k in expected} == expected
    assert sum(expected.values()) == 60000  # the paper's total
    assert archcost.analyze("lenet5").row["params"] == 60000
    assert int(layers.loc["output", "params"]) == 0  # RBF centres are fixed, not trainable
    # C3: each output map convolves only its Table I inputs: 10x10 outputs, 5x5 kernels.
    assert int(layers.loc["c3", "macs"]) == 10 * 10 * 25 * (6 * 3 + 6 * 4 + 3 * 4 + 6)


def test_alexnet_paper_params_and_feature_maps():
    a = archcost.analyze("alexnet_paper")
    expected = (conv_p(3, 96, 11) + conv_p(96, 256, 5, groups=2) + conv_p(256, 384, 3)
                + conv_p(384, 384, 3, groups=2) + conv_p(384, 256, 3, groups=2)
                + fc_p(6 * 6 * 256, 4096) + fc_p(4096, 4096) + fc_p(4096, 1000))
    assert a.row["params"] == expected == 60_965_224  # issue #3 / the paper's layer shapes
    convs = a.layers[a.layers["type"] == "Conv2d"]["output_shape"].tolist()
    assert convs == ["1x96x55x55", "1x256x27x27", "1x384x13x13", "1x384x13x13", "1x256x13x13"]
    pools = a.layers[a.layers["type"] == "MaxPool2d"]["output_shape"].tolist()
    assert pools[-1] == "1x256x6x6"
    assert a.row["input_shape"] == "1x3x227x227"


def test_zfnet_params_and_fig3_maps():
    a = archcost.analyze("zfnet")
    expected = (conv_p(3, 96, 7) + conv_p(96, 256, 5) + conv_p(256, 384, 3) + conv_p(384, 384, 3)
                + conv_p(384, 256, 3) + fc_p(9216, 4096) + fc_p(4096, 4096) + fc_p(4096, 1000))
    assert a.row["params"] == expected
    convs = a.layers[a.layers["type"] == "Conv2d"]["output_shape"].tolist()
    pools = a.layers[a.layers["type"] == "MaxPool2d"]["output_shape"].tolist()
    assert convs[:2] == ["1x96x110x110", "1x256x26x26"]  # Fig. 3
    assert pools == ["1x96x55x55", "1x256x13x13", "1x256x6x6"]


def test_xception_matches_table3():
    sep = lambda cin, cout: 9 * cin + cin * cout  # depthwise 3x3 + pointwise 1x1, no bias
    bn = lambda c: 2 * c
    entry = 27 * 32 + bn(32) + 9 * 32 * 64 + bn(64)
    blocks = 0
    for cin, (w1, w2) in ((64, (128, 128)), (128, (256, 256)), (256, (728, 728)), (728, (728, 1024))):
        blocks += sep(cin, w1) + bn(w1) + sep(w1, w2) + bn(w2) + cin * w2 + bn(w2)
    middle = 8 * 3 * (sep(728, 728) + bn(728))
    exit_ = sep(1024, 1536) + bn(1536) + sep(1536, 2048) + bn(2048) + fc_p(2048, 1000)
    assert archcost.analyze("xception").row["params"] == entry + blocks + middle + exit_ == 22_855_952  # Table 3


def se_params(channels_per_stage, blocks_per_stage, r=16):
    return sum(n * (c * (c // r) + c // r + (c // r) * c + c)
               for c, n in zip(channels_per_stage, blocks_per_stage))


@pytest.mark.parametrize("name,base,blocks,paper_m", [
    ("se_resnet50", "resnet50", (3, 4, 6, 3), 28.09),     # Hu et al.: 28.09M
    ("se_resnet101", "resnet101", (3, 4, 23, 3), 49.33),  # Hu et al.: 49.33M
])
def test_se_resnet_params(name, base, blocks, paper_m):
    got = archcost.analyze(name).row["params"]
    base_params = n_params(meta_model(base))
    assert got == base_params + se_params((256, 512, 1024, 2048), blocks)
    assert abs(got / (paper_m * 1e6) - 1) < 0.005


# Rows of Table 1 that are not self-consistent: 4c's params (463K) contradict its own ops
# (100M / 14^2 = 510K weights); 5a's params and ops are both ~5% above what its widths give.
TABLE1_INCONSISTENT = {"4c": "params", "5a": "params+ops"}


def test_googlenet_paper_table1_inception_weights():
    """Table 1 counts weights only, in K = 1024, and ops = weights x output positions."""
    from archcost.zoo.googlenet import TABLE1

    a = archcost.analyze("googlenet_paper")
    layers = a.layers.set_index("layer")
    in_ch = {"3a": 192, "3b": 256, "4a": 480, "4b": 512, "4c": 512, "4d": 512, "4e": 528,
             "5a": 832, "5b": 832}
    hw = {"3": 28, "4": 14, "5": 7}
    paper = get_spec("googlenet_paper").published
    for stage, (c1, r3, c3, r5, c5, pp) in TABLE1.items():
        cin = in_ch[stage]
        weights = cin * c1 + cin * r3 + 9 * r3 * c3 + cin * r5 + 25 * r5 * c5 + cin * pp
        biases = c1 + r3 + c3 + r5 + c5 + pp
        assert int(layers.loc["inception" + stage, "params"]) == weights + biases
        assert int(layers.loc["inception" + stage, "macs"]) == weights * hw[stage[0]] ** 2
        bad = TABLE1_INCONSISTENT.get(stage, "")
        params_ok = weights / 1024 == pytest.approx(paper["params_k"][stage], rel=0.02)
        ops_ok = weights * hw[stage[0]] ** 2 / 1e6 == pytest.approx(paper["ops_m"][stage], rel=0.01)
        assert params_ok != ("params" in bad), stage
        assert ops_ok != ("ops" in bad), stage


def test_googlenet_paper_aux_heads_cost_only_in_training():
    a_inf = archcost.analyze("googlenet_paper", aux_logits=False)
    a_aux = archcost.analyze("googlenet_paper")
    aux = lambda cin: conv_p(cin, 128, 1) + fc_p(4 * 4 * 128, 1024) + fc_p(1024, 1000)
    assert a_aux.row["params"] - a_inf.row["params"] == aux(512) + aux(528)
    assert a_aux.row["macs"] == a_inf.row["macs"]  # eval mode: aux heads are not run
