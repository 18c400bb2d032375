"""Roofline: bytes, intensity and bounds derived by formula from the layers' shapes."""

from collections import namedtuple

import pytest

from archcost.devices import table as devices
from archcost.roofline.bounds import (Roof, aggregate, add_ridge_batches, bound_layers, heaviest, ridge_batch,
                                        split_bytes, summarize)

Op = namedtuple("Op", "module op macs bytes_read bytes_written inplace")
F32 = 4


def conv_op(module, n, cin, cout, k, h, w, groups=1, bias=True, stride=1, pad=None, b=F32):
    """An NCHW convolution with 'same' padding (stride 1) or the given stride."""
    pad = k // 2 if pad is None else pad
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    macs = n * ho * wo * cout * (cin // groups) * k * k
    read = (n * cin * h * w + cout * (cin // groups) * k * k + (cout if bias else 0)) * b
    return Op(module, "conv2d", macs, read, n * cout * ho * wo * b, False)


def ops_of_a_small_cnn(n=1):
    """conv3x3 64->64 at 56x56, BN, in-place ReLU, 2x2 max pool, depthwise 3x3, FC 64*28*28 -> 10."""
    c, s = 64, 56
    act = n * c * s * s * F32
    return [
        conv_op("conv", n, c, c, 3, s, s, bias=False),
        # inference batch norm (affine): 2 MACs per element (fvcore), reads x, weight, bias, mean, var
        Op("bn", "batch_norm", 2 * n * c * s * s, act + 4 * c * F32, act, False),
        # in-place ReLU: reads its input and writes the same storage, both counted
        Op("relu", "relu", 0, act, act, True),
        Op("pool", "max_pool2d", 0, act, act // 4, False),
        conv_op("dw", n, c, c, 3, s // 2, s // 2, groups=c, bias=False),
        Op("fc", "linear", n * c * 28 * 28 * 10, (n * c * 28 * 28 + c * 28 * 28 * 10 + 10) * F32, n * 10 * F32, False),
    ]


ROOF = Roof("test device", "float32", peak_flops=10e12, bandwidth=500e9)  # ridge 20 FLOP/byte


def test_bytes_per_layer_follow_the_shapes():
    rows = {r["layer"]: r for r in aggregate(ops_of_a_small_cnn())}
    act = 64 * 56 * 56 * F32
    assert rows["conv"]["bytes_read"] == act + 64 * 64 * 9 * F32 and rows["conv"]["bytes_written"] == act
    assert rows["bn"]["bytes_read"] == act + 4 * 64 * F32
    assert rows["relu"]["bytes_read"] == rows["relu"]["bytes_written"] == act  # in place: both directions
    assert rows["pool"]["bytes_written"] == 64 * 28 * 28 * F32
    # depthwise: 9 weights per channel, one input channel per output channel
    assert rows["dw"]["macs"] == 28 * 28 * 64 * 9
    assert rows["dw"]["bytes_read"] == (64 * 28 * 28 + 64 * 9) * F32
    assert rows["fc"]["flops"] == 2 * 64 * 28 * 28 * 10


def test_intensity_times_and_bound_by_formula():
    rows = {r["layer"]: r for r in bound_layers(aggregate(ops_of_a_small_cnn()), ROOF)}
    conv = rows["conv"]
    flops = 2 * 56 * 56 * 64 * 64 * 9
    moved = 2 * 64 * 56 * 56 * F32 + 64 * 64 * 9 * F32
    assert conv["arithmetic_intensity"] == pytest.approx(flops / moved)
    assert conv["time_compute_ms"] == pytest.approx(flops / 10e12 * 1e3)
    assert conv["time_memory_ms"] == pytest.approx(moved / 500e9 * 1e3)
    assert conv["bound"] == ("compute" if flops / moved >= 20 else "memory")
    assert conv["time_bound_ms"] == pytest.approx(max(flops / 10e12, moved / 500e9) * 1e3)
    # ReLU, pooling: no MACs -> memory-bound, time = bytes / bandwidth
    for name in ("relu", "pool", "bn"):
        assert rows[name]["bound"] == "memory"
    assert rows["relu"]["time_bound_ms"] == pytest.approx(2 * 64 * 56 * 56 * F32 / 500e9 * 1e3)
    # FC at batch 1: ~2 FLOPs per 4-byte weight -> intensity < 1, memory-bound
    assert rows["fc"]["arithmetic_intensity"] < 1 and rows["fc"]["bound"] == "memory"
    assert sum(r["share_of_bound"] for r in rows.values()) == pytest.approx(1.0)


def test_attention_is_memory_bound_at_short_sequences_and_compute_bound_at_long():
    def sdpa(batch, heads, length, dim):
        qkv = batch * heads * length * dim * F32
        # QK^T and softmax(QK^T)V: 2 x L x L x D MACs per head
        return Op("attn", "scaled_dot_product_attention", 2 * batch * heads * length * length * dim,
                  3 * qkv, qkv, False)

    short = bound_layers(aggregate([sdpa(1, 8, 16, 64)]), ROOF)[0]
    long_ = bound_layers(aggregate([sdpa(1, 8, 4096, 64)]), ROOF)[0]
    # intensity = 2 * 2 L^2 D / (4 L D * 4 bytes) = L / 4 FLOP/byte
    assert short["arithmetic_intensity"] == pytest.approx(16 / 4) and short["bound"] == "memory"
    assert long_["arithmetic_intensity"] == pytest.approx(4096 / 4) and long_["bound"] == "compute"


def test_launch_overhead_bounds_tiny_layers():
    roof = Roof("gpu", "float32", 10e12, 500e9, launch_overhead_s=5e-6)
    ops = [Op("tiny", "add", 0, 2 * 100 * F32, 100 * F32, False)] * 3 + [conv_op("big", 8, 256, 256, 3, 56, 56)]
    rows = {r["layer"]: r for r in bound_layers(aggregate(ops), roof)}
    assert rows["tiny"]["kernels"] == 3
    assert rows["tiny"]["time_overhead_ms"] == pytest.approx(3 * 5e-3)
    assert rows["tiny"]["bound"] == "overhead" and rows["tiny"]["time_bound_ms"] == pytest.approx(15e-3)
    assert rows["big"]["bound"] == "compute"


def test_own_ops_rows_for_a_containers_functional_code():
    ops = [Op("features.0", "conv2d", 10, 4, 4, False), Op("", "adaptive_avg_pool2d", 8, 32, 4, False),
           Op("block", "add", 0, 8, 4, False), Op("block", "add", 0, 8, 4, False)]
    rows = aggregate(ops, leaves={"features.0"}, types={"features.0": "Conv2d"})
    assert [r["layer"] for r in rows] == ["features.0", "(model) [own ops]", "block [own ops]"]
    assert rows[0]["type"] == "Conv2d" and rows[2]["type"] == "functional"
    assert rows[2]["kernels"] == 2 and rows[2]["bytes_read"] == 16


def fc_parts(n_in, n_out, b=F32):
    macs = n_in * n_out
    fixed = (n_in * n_out + n_out) * b  # weight and bias, read once per batch
    per_image = (n_in + n_out) * b      # input row read, output row written
    return macs, fixed, per_image


def test_ridge_batch_of_an_fc_layer():
    m, w, a = fc_parts(4096, 4096)
    for ridge in (20.0, 76.5, 153.0):
        b = ridge_batch(m, w, a, ridge)
        intensity = lambda n: 2 * m * n / (w + a * n)  # noqa: E731
        assert intensity(b) >= ridge and (b == 1 or intensity(b - 1) < ridge)
    # the asymptote 2m/a = 2*4096*4096/(8192*4) = 1024 FLOP/byte: a higher ridge is never reached
    assert ridge_batch(m, w, a, 1024.0) is None and ridge_batch(m, w, a, 1023.0) is not None
    assert ridge_batch(0, w, a, 1.0) is None


def test_split_bytes_recovers_weights_and_activations():
    def fc_ops(n):
        return [Op("fc", "linear", n * 4096 * 1000, (n * 4096 + 4096 * 1000 + 1000) * F32, n * 1000 * F32, False)]

    parts = split_bytes(aggregate(fc_ops(1)), 1, aggregate(fc_ops(2)), 2)
    macs, fixed, per_image = parts["fc"]
    assert (macs, fixed, per_image) == (4096 * 1000, (4096 * 1000 + 1000) * F32, (4096 + 1000) * F32)
    rows = bound_layers(aggregate(fc_ops(1)), ROOF)
    add_ridge_batches(rows, parts, ROOF.ridge)
    assert rows[0]["ridge_batch"] == ridge_batch(4096 * 1000, (4096 * 1000 + 1000) * F32, (4096 + 1000) * F32, 20.0)


def test_summary_shares_and_heaviest_layers():
    rows = bound_layers(aggregate(ops_of_a_small_cnn(n=2)), ROOF)
    s = summarize(rows, ROOF, batch_size=2)
    total = sum(r["time_bound_ms"] for r in rows)
    mem = sum(r["time_bound_ms"] for r in rows if r["bound"] == "memory")
    assert s["time_bound_ms"] == pytest.approx(total) and s["time_bound_per_image_ms"] == pytest.approx(total / 2)
    assert s["bound_share_memory"] == pytest.approx(mem / total)
    assert s["bound_share_memory"] + s["bound_share_compute"] + s["bound_share_overhead"] == pytest.approx(1)
    heavy = heaviest(rows)
    mac_total = sum(r["time_bound_ms"] for r in rows if r["macs"] > 0)
    assert sum(r["time_bound_ms"] for r in heavy) >= 0.8 * mac_total
    assert sum(r["time_bound_ms"] for r in heavy[:-1]) < 0.8 * mac_total
    assert "ridge_batch_heaviest" not in s  # no ridge batches computed for these rows


def test_roof_attainable_and_ridge():
    assert ROOF.ridge == pytest.approx(20.0)
    assert ROOF.attainable(10) == pytest.approx(10 * 500e9) and ROOF.attainable(40) == 10e12


# --- the device table -------------------------------------------------------------------

@pytest.mark.parametrize("torch_name, key", [
    ("NVIDIA A100-SXM4-80GB", "a100-80gb"), ("NVIDIA A100 80GB PCIe", "a100-80gb"),
    ("NVIDIA A100-SXM4-40GB", "a100-40gb"), ("NVIDIA A100-PCIE-40GB", "a100-40gb"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H100 NVL", "h100-nvl"),
    ("Tesla V100-SXM2-16GB", "v100-sxm2"), ("Tesla V100-PCIE-32GB", "v100-pcie"), ("Tesla T4", "t4"),
    ("NVIDIA L4", "l4"), ("NVIDIA L40S", "l40s"), ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("NVIDIA A10", "a10"),
])
def test_device_names_find_their_entry(torch_name, key):
    assert devices.find_peak(torch_name).key == key
    assert devices.by_key(key.upper()).key == key


def test_device_table_is_complete_and_dense():
    required = {"v100-sxm2", "t4", "a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "l4", "rtx-4090"}
    table = {d.key: d for d in devices.DEVICES}
    assert required <= set(table)
    for d in [d for d in devices.DEVICES if d.has_peaks]:  # memory-only entries: see the test below
        assert d.tflops["float32"] > 0 and d.bandwidth_gbs > 0 and d.source and d.bandwidth_source
        assert d.tflops["float16"] > d.tflops["float32"]
    # dense figures: half the datasheets' sparsity headline (H100 SXM FP16 1,979; A100 TF32 312; L4 FP16 242)
    assert table["h100-sxm"].tflops["float16"] == pytest.approx(1979 / 2, abs=0.5)
    assert table["a100-80gb"].tflops["tf32"] == 312 / 2 and table["l4"].tflops["float16"] == 242 / 2
    # A100 40GB and 80GB differ only in memory bandwidth
    assert table["a100-40gb"].tflops == table["a100-80gb"].tflops
    assert table["a100-80gb"].bandwidth_gbs > table["a100-40gb"].bandwidth_gbs


def test_peak_dtype_falls_back_where_a_gpu_has_no_tf32():
    t4, a100 = devices.by_key("t4"), devices.by_key("a100-80gb")
    assert devices.peak_dtype(a100, "float32") == "tf32" and devices.peak_dtype(a100, "float32", tf32=False) == "float32"
    assert devices.peak_dtype(t4, "float32") == "float32" and devices.peak_dtype(t4, "bfloat16") is None


# --- end to end: the engine's per-operator records on real layers --------------------------

import io  # noqa: E402
import json  # noqa: E402
import textwrap  # noqa: E402

import pandas as pd  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from archcost.cli import main  # noqa: E402

TINY = textwrap.dedent('''
    import torch.nn as nn

    def build():
        # 3x16x16 -> conv3x3(8) -> BN -> ReLU(in place) -> avgpool 2 -> depthwise 3x3 -> flatten -> FC 10
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                             nn.AvgPool2d(2), nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                             nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
''')


def cli(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def strict_json(text):
    def refuse(c):
        raise ValueError(f"non-standard JSON constant {c}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    return f"{path}:build"


@pytest.mark.parametrize("batch", [1, 4])
def test_tiny_net_bytes_and_bounds_by_formula(tiny, batch):
    r = cli(["roofline", tiny, "--input-size", "3x16x16", "-b", str(batch), "--target", "a100-80gb",
             "--format", "json", "--no-save"])
    assert r.exit_code == 0, r.output
    out = strict_json(r.stdout)
    rows = {x["layer"]: x for x in out["layers"]}
    n = batch
    x_in, act, half = n * 3 * 16 * 16 * F32, n * 8 * 16 * 16 * F32, n * 8 * 8 * 8 * F32
    assert rows["0"]["bytes_read"] == x_in + (8 * 3 * 9 + 8) * F32 and rows["0"]["bytes_written"] == act
    assert rows["0"]["macs"] == n * 16 * 16 * 8 * 3 * 9
    assert rows["1"]["bytes_read"] == act + 4 * 8 * F32  # x; weight, bias, running mean and var
    # y; ATen's inference batch norm may also return its per-channel save_mean/save_invstd (C each)
    assert rows["1"]["bytes_written"] in (act, act + 2 * 8 * F32)
    assert rows["2"]["bytes_read"] == rows["2"]["bytes_written"] == act  # in-place ReLU: both directions
    assert rows["3"]["bytes_read"] == act and rows["3"]["bytes_written"] == half
    assert rows["4"]["macs"] == n * 8 * 8 * 8 * 9 and rows["4"]["bytes_read"] == half + 8 * 9 * F32  # depthwise
    assert rows["6"]["bytes_read"] == half + (512 * 10 + 10) * F32 and rows["6"]["bytes_written"] == n * 10 * F32
    peak, bw = 156e12, 2039e9  # A100 datasheet: TF32 dense, HBM2e (float32 runs as TF32 under cuDNN)
    for row in rows.values():
        moved = row["bytes_read"] + row["bytes_written"]
        assert row["time_bound_ms"] == pytest.approx(max(2 * row["macs"] / peak, moved / bw) * 1e3)
        assert row["bound"] == ("compute" if 2 * row["macs"] / peak > moved / bw else "memory")
    fc_ridge = ridge_batch(512 * 10, (512 * 10 + 10) * F32, (512 + 10) * F32, peak / bw)
    assert rows["6"]["ridge_batch"] == fc_ridge  # None: a 512->10 FC never reaches the A100's ridge
    s = out["summary"][0]
    assert s["time_bound_ms"] == pytest.approx(sum(x["time_bound_ms"] for x in rows.values()))
    assert s["time_bound_per_image_ms"] == pytest.approx(s["time_bound_ms"] / batch)
    never = [x for x in rows.values() if x["ridge_batch"] is None]
    assert {x["layer"] for x in never} >= {"1", "2", "3", "6"}  # BN, ReLU, pooling; the small FC
    assert s["bound_share_never_compute"] == pytest.approx(sum(x["time_bound_ms"] for x in never) / s["time_bound_ms"])
    crossing = [x for x in rows.values() if x["ridge_batch"] is not None]
    assert s["ridge_batch_heaviest"] == (max(x["ridge_batch"] for x in heaviest(crossing)) if crossing else None)


def test_ridge_batch_of_the_heaviest_layers_skips_those_that_never_cross():
    m, w, a = fc_parts(4096, 4096)
    ops = [Op("fc", "linear", m, w + a, 4096 * F32, False),
           Op("relu", "relu", 0, 4096 * F32, 4096 * F32, True),
           Op("conv", "conv2d", 56 * 56 * 64 * 64 * 9, (64 * 56 * 56 + 64 * 64 * 9) * F32, 64 * 56 * 56 * F32, False)]
    rows = bound_layers(aggregate(ops), ROOF)
    parts = {"fc": (m, w, a), "relu": (0, 0, 2 * 4096 * F32),
             "conv": (56 * 56 * 64 * 64 * 9, 64 * 64 * 9 * F32, 2 * 64 * 56 * 56 * F32)}
    add_ridge_batches(rows, parts, ROOF.ridge)
    s = summarize(rows, ROOF, 1)
    by = {r["layer"]: r for r in rows}
    assert by["relu"]["ridge_batch"] is None and by["conv"]["ridge_batch"] == 1
    assert s["bound_share_never_compute"] == pytest.approx(by["relu"]["time_bound_ms"] / s["time_bound_ms"])
    assert s["ridge_batch_heaviest"] == ridge_batch(m, w, a, ROOF.ridge) and s["last_to_cross"] == "fc"


def test_per_layer_macs_sum_to_the_models(tiny):
    from archcost.analysis import analyze
    from archcost.roofline.layers import layer_rows, resolve_target

    a = analyze(tiny, input_size=(3, 16, 16), memory=False, record_ops=True)
    rows = layer_rows(a, resolve_target("a100-80gb", "float32").roof)
    by_layer = dict(zip(a.layers["layer"], a.layers["macs"]))
    for r in rows:
        assert r["macs"] == by_layer[r["layer"]], r["layer"]
    assert sum(r["macs"] for r in rows) == a.row["macs"]


@pytest.mark.parametrize("tf32, fc_rate", [("torch-default", 19.5e12), ("on", 156e12)])
def test_vgg16_fc_layers_cross_the_ridge_where_the_formula_says(tmp_path, tf32, fc_rate):
    # float32 Linear layers run at FP32 under torch's defaults (cuda.matmul.allow_tf32 off), at
    # TF32 with --tf32 on; the convolutions at TF32 either way (cudnn.allow_tf32 on)
    r = cli(["roofline", "vgg16", "--target", "a100-80gb", "--tf32", tf32, "--format", "csv", "--no-save"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(io.StringIO(r.stdout)).set_index("layer")
    ridge = fc_rate / 2039e9
    for name, (i, o) in {"classifier.0": (512 * 7 * 7, 4096), "classifier.3": (4096, 4096),
                         "classifier.6": (4096, 1000)}.items():
        assert df.loc[name, "bound"] == "memory"  # batch 1: ~0.5 FLOP/byte
        assert df.loc[name, "ridge_batch"] == ridge_batch(i * o, (i * o + o) * F32, (i + o) * F32, ridge)
        assert df.loc[name, "rate"] == ("float32" if tf32 == "torch-default" else "tf32")
    convs = [f"features.{i}" for i in (2, 7, 12, 19, 26)]
    assert (df.loc[convs, "bound"] == "compute").all() and (df.loc[convs, "rate"] == "tf32").all()
    # the conv's compute time at the TF32 rate: 2 x MACs / 156 TFLOP/s
    macs = df.loc["features.2", "macs"]
    assert df.loc["features.2", "time_compute_ms"] == pytest.approx(2 * macs / 156e12 * 1e3)


def test_table_target_adds_the_bound(tmp_path):
    r = cli(["table", "alexnet", "--target", "a100-80gb", "--no-memory", "--format", "csv", "--no-save"])
    assert r.exit_code == 0, r.output
    t = pd.read_csv(io.StringIO(r.stdout)).iloc[0]
    r2 = cli(["roofline", "alexnet", "--target", "a100-80gb", "--format", "json", "--no-save"])
    s = strict_json(r2.stdout)["summary"][0]
    assert t["time_bound_ms"] == pytest.approx(s["time_bound_ms"])
    assert t["bound_share_memory"] == pytest.approx(s["bound_share_memory"])
    plain = pd.read_csv(io.StringIO(cli(["table", "alexnet", "--no-memory", "--format", "csv", "--no-save"]).stdout))
    assert "time_bound_ms" not in plain  # roofline columns only with --target


@pytest.mark.parametrize("args, words", [
    (["roofline", "alexnet", "--target", "nosuch"], "unknown target"),
    (["roofline", "alexnet", "--target", "t4", "--dtype", "bfloat16"], "no bfloat16 figure"),
    (["roofline", "alexnet", "--target", "a100-80gb", "--latency"], "measured times need the target here"),
    (["roofline", "alexnet", "--launch-overhead-us", "-1"], "launch-overhead-us"),
    (["table", "alexnet", "--target", "h999"], "unknown target"),
])
def test_roofline_mistakes_are_one_line(args, words):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "archcost.cli", *args, "--no-save"], capture_output=True, text=True)
    assert p.returncode == 2 and words in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_devices_lists_the_table_as_csv_and_strict_json():
    df = pd.read_csv(io.StringIO(cli(["devices", "--format", "csv"]).stdout))
    assert set(df["target"]) == {d.key for d in devices.DEVICES}
    a100 = df.set_index("target").loc["a100-80gb"]
    assert a100["tf32_tflops"] == 156 and a100["bandwidth_gbs"] == 2039
    rows = strict_json(cli(["devices", "--format", "json"]).stdout)
    assert next(r for r in rows if r["target"] == "t4")["tf32_tflops"] is None


def test_calibration_is_cached_per_machine(tmp_path, monkeypatch):
    from archcost.roofline import calibrate
    monkeypatch.setenv("ARCHCOST_CACHE_DIR", str(tmp_path))
    calls = []
    real = calibrate.measure

    def small():
        calls.append(1)
        # small sizes, and any spread taken as settled (a busy test machine must not make it flaky)
        return real(sizes={"float32": [64]}, copy_bytes=2**20, tolerance=100.0)

    monkeypatch.setattr(calibrate, "measure", small)
    first = calibrate.calibration()
    again = calibrate.calibration()
    assert len(calls) == 1 and again.flops == first.flops and again.path.startswith(str(tmp_path))
    assert first.bandwidth == max(first.copy_bandwidth, first.read_bandwidth, first.matvec_bandwidth) > 0
    calibrate.calibration(refresh=True)
    assert len(calls) == 2
    roof = calibrate.cpu_roof("float32", again)
    assert roof.peak_flops == again.flops["float32"] and roof.bandwidth == again.bandwidth
    with pytest.raises(ValueError, match="no calibration for bfloat16"):
        calibrate.cpu_roof("bfloat16", again)


def test_reproduce_roofline_fc_layers_cross_the_ridge_with_batch(tmp_path):
    r = cli(["reproduce", "roofline", "--format", "csv", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(io.StringIO(r.stdout))
    fc = df[df["variant"] == "VGG16 FC layers (3, together)"].set_index("batch_size")
    shapes = [(25088, 4096), (4096, 4096), (4096, 1000)]
    fc_ridge = 19.5e12 / 2039e9  # A100 80GB: float32 Linear at FP32 (torch's default) / HBM2e
    ridge = 156e12 / 2039e9  # float32 convolutions at TF32 (cuDNN's default)
    for b in (1, 4, 16, 64, 256):
        flops = 2 * b * sum(i * o for i, o in shapes)
        moved = sum((i * o + o) * F32 + b * (i + o) * F32 for i, o in shapes)
        assert fc.loc[b, "arithmetic_intensity"] == pytest.approx(flops / moved)
        assert fc.loc[b, "ridge_flop_per_byte"] == pytest.approx(fc_ridge)
        assert ("memory-bound" in fc.loc[b, "note"]) == (flops / moved < fc_ridge)
    assert "memory-bound" in fc.loc[1, "note"] and "compute-bound" in fc.loc[64, "note"]
    conv = df[df["variant"] == "VGG16 conv layers (13, together)"]
    assert (conv["arithmetic_intensity"] > ridge).all()
    assert conv["ridge_flop_per_byte"].tolist() == pytest.approx([ridge] * len(conv))
    lineup = df[df["variant"].str.contains(" on ")]
    assert len(lineup) == 8 and (lineup["bound_share_memory"].between(0, 1)).all()
    assert (tmp_path / "reproduce_roofline.png").stat().st_size > 10_000


def test_layer_breakdown_target_bounds_sum_to_the_total():
    r = cli(["layer-breakdown", "resnet18", "--target", "a100-80gb", "--format", "csv", "--no-save"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(io.StringIO(r.stdout))
    total = df.loc[df["layer"] == "(total)", "time_bound_ms"].item()
    assert df.loc[df["layer"] != "(total)", "time_bound_ms"].sum() == pytest.approx(total)
    deep = pd.read_csv(io.StringIO(cli(["layer-breakdown", "resnet18", "--depth", "1", "--target", "a100-80gb",
                                        "--format", "csv", "--no-save"]).stdout))
    assert deep.loc[deep["layer"] != "(total)", "time_bound_ms"].sum() == pytest.approx(total)
    assert set(df["bound"].dropna()) <= {"compute", "memory", "overhead"}


def test_own_ops_cat_and_add_move_bytes_views_do_not():
    import torch
    import torch.nn as nn

    from archcost.analysis import analyze
    from archcost.roofline.layers import layer_rows, resolve_target

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 4, 1, bias=False)
            self.b = nn.Conv2d(4, 4, 1, bias=False)

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x)], 1)  # reads 2 x (4 maps), writes 8 maps
            return (y + y).flatten(1)  # add reads y once (one storage), writes 8 maps; flatten is a view

    a = analyze(Block(), input_size=(4, 5, 5), memory=False, record_ops=True)
    rows = {r["layer"]: r for r in layer_rows(a, resolve_target("a100-80gb", "float32").roof)}
    maps = 4 * 5 * 5 * F32
    own = rows["(model) [own ops]"]
    assert own["kernels"] == 2  # cat and add; the flatten view moves nothing and is not an operator here
    assert own["bytes_read"] == 2 * maps + 2 * maps and own["bytes_written"] == 2 * maps + 2 * maps
    assert rows["a"]["bytes_read"] == maps + 4 * 4 * F32 and rows["a"]["bytes_written"] == maps


def test_device_names_are_taken_the_same_way_by_roofline_and_fit():
    from archcost.devices.budgets import parse_memory
    from archcost.devices.table import by_key

    assert by_key("h100").key == "h100-sxm" and by_key("RTX 4090").key == by_key("rtx4090").key == "rtx-4090"
    assert by_key("A100_80GB").key == "a100-80gb" and by_key("nonsense") is None
    assert parse_memory("rtx-4090") == parse_memory("rtx4090") == 24 * 2**30
    assert parse_memory("16") == 16  # a bare number is bytes, as the budget's hint says
