"""archcost reproduce (issue #4): every expected figure derived from the architecture."""

import io

import pandas as pd
from click.testing import CliRunner

from archcost import reproduce as rp
from archcost.cli import main


def by_variant(rows):
    return {r["variant"]: r for r in rows}


def test_bottleneck_cli_csv_shows_the_lecture_numbers():
    r = CliRunner().invoke(main, ["reproduce", "bottleneck", "--format", "csv", "--no-save"])
    assert r.exit_code == 0
    df = pd.read_csv(io.StringIO(r.stdout)).set_index("variant")
    assert df.loc["5x5 conv 192->32", "macs"] == 28 * 28 * 32 * 5 * 5 * 192 == 120_422_400  # notes: ~120M
    assert df.loc["1x1 192->16, then 5x5 16->32", "macs"] == 28 * 28 * 16 * 192 + 28 * 28 * 32 * 5 * 5 * 16  # ~12M
    assert "120422400" in r.stdout and "12443648" in r.stdout


def test_inception_3a_with_and_without_reductions():
    v = by_variant(rp.bottleneck())
    hw = 28 * 28
    naive = hw * 192 * (64 * 1 + 128 * 9 + 32 * 25)
    reduced = hw * (192 * 64 + 192 * 96 + 96 * 128 * 9 + 192 * 16 + 16 * 32 * 25 + 192 * 32)
    bn = hw * 2 * (64 + 96 + 128 + 16 + 32 + 32)  # inference batch norm with affine: 2 per element
    assert v["inception 3a without 1x1 reductions"]["macs"] == naive
    assert v["inception 3a (GoogLeNet Table 1)"]["macs"] == reduced + bn


def test_stacked_3x3_params_and_receptive_field():
    c = 64
    v = by_variant(rp.stacked_3x3(c=c, size=56))
    assert v["one 5x5"]["params"] == 25 * c * c and v["two 3x3"]["params"] == 18 * c * c
    assert v["one 7x7"]["params"] == 49 * c * c and v["three 3x3"]["params"] == 27 * c * c
    assert v["two 3x3"]["receptive_field"] == v["one 5x5"]["receptive_field"] == 5
    assert v["three 3x3"]["receptive_field"] == v["one 7x7"]["receptive_field"] == 7
    # the stack's price: one more CxHxW float32 map per added layer
    assert v["two 3x3"]["activation_bytes"] - v["one 5x5"]["activation_bytes"] == c * 56 * 56 * 4


def test_gap_vs_fc():
    v = by_variant(rp.gap_vs_fc())
    assert v["flatten 7x7x1024 -> FC-1000"]["params"] == 7 * 7 * 1024 * 1000 + 1000
    assert v["global average pool -> FC-1000"]["params"] == 1024 * 1000 + 1000
    head = (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert v["VGG16's FC head (classifier)"]["params"] == head
    assert v["VGG16's FC head (classifier)"]["ratio_params"] == head / 138_357_544


def test_resnet_bottleneck_and_projection():
    v = by_variant(rp.resnet_bottleneck())
    bn = lambda c: 2 * c  # noqa: E731
    assert v["two 3x3, 64-d (basic block)"]["params"] == 2 * 9 * 64 * 64 + 2 * bn(64)
    assert v["1x1-3x3-1x1, 256-d (bottleneck)"]["params"] == 256 * 64 + 9 * 64 * 64 + 64 * 256 + 2 * bn(64) + bn(256)
    assert v["two 3x3, 256-d"]["params"] == 2 * 9 * 256 * 256 + 2 * bn(256)
    extra = v["bottleneck 256-d, projection shortcut"]["params"] - v["1x1-3x3-1x1, 256-d (bottleneck)"]["params"]
    assert extra == 256 * 256 + bn(256)


def test_grouped_conv_halves_the_grouped_layers():
    v = by_variant(rp.grouped_conv())
    one, two = v["AlexNet, one tower (groups=1)"], v["AlexNet, two towers (groups=2 in conv2, 4, 5)"]
    grouped_weights = 256 * 96 * 25 + 384 * 384 * 9 + 256 * 384 * 9
    assert one["params"] - two["params"] == grouped_weights // 2
    assert two["params"] == 60_965_224  # alexnet_paper (issue #3's per-layer sum)


def test_depthwise_separable():
    c = 728
    v = by_variant(rp.depthwise_separable(c=c, size=19))
    assert v["standard 3x3 conv"]["params"] == 9 * c * c
    assert v["separable: depthwise 3x3 + pointwise 1x1"]["params"] == 9 * c + c * c
    assert v["separable: depthwise 3x3 + pointwise 1x1"]["macs"] == 19 * 19 * (9 * c + c * c)


def test_dense_block_connections_and_growth():
    for L in (4, 6):
        rows = rp.dense_connectivity(layers=L, k0=64, growth=32)
        assert rows[0]["connections"] == L * (L + 1) // 2


def test_se_overhead_matches_the_paper_claim():
    v = by_variant(rp.se_overhead())
    se = v["SE-ResNet-50"]
    assert 0.09 < se["ratio_params"] - 1 < 0.11  # paper: ~10% more parameters
    assert se["ratio_macs"] - 1 < 0.01  # paper: <1% more computation


def test_aux_heads_cost_only_in_training():
    v = by_variant(rp.aux_classifiers())
    inf, train = v["GoogLeNet inference (aux heads off)"], v["GoogLeNet training (aux heads on)"]
    assert inf["params"] == train["params"]
    assert train["macs"] > inf["macs"]


def test_claims_have_verdicts_and_flag_vgg():
    rows = rp.claims()
    assert len(rows) >= 15
    assert all(r["verdict"] for r in rows)
    vgg = next(r for r in rows if "110M" in r["claim"])
    assert vgg["measured"] == 143_667_240 and vgg["verdict"] != "holds"
    lenet = next(r for r in rows if r["claim"].startswith("LeNet-5 has 60,000"))
    assert lenet["measured"] == 156 + 12 + 1516 + 32 + 48120 + 10164 and lenet["verdict"] == "holds"
    alex = next(r for r in rows if "55x55x96" in r["claim"])
    assert alex["measured"] == (224 - 11) // 4 + 1 == 54


def test_unknown_experiment_is_one_line():
    r = CliRunner().invoke(main, ["reproduce", "nope"])
    assert r.exit_code == 2 and "unknown experiment 'nope'" in r.output
