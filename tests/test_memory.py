"""saved_bytes, peak_bytes, train_bytes and latency (issue #5).

Tiny nets whose memory follows from their shapes by hand: each expected figure is a
formula in the feature-map sizes, never a number read off archcost's output. The same
figures are checked against the CPU profiler's allocator events, an independent
mechanism, and on CUDA (skipped without a GPU) against the caching allocator.
"""

import contextlib
import io

import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from click.testing import CliRunner

import archcost
from archcost.memory import forward as mem
from archcost.checks.memcheck import compare
from archcost.measure.allocator import profiler_memory
from archcost.measure.timing import quantile
from archcost.cli import main, parse_batch_sizes

B, C, H = 2, 8, 16
FMAP = B * C * H * H * 4  # one float32 feature map of the tiny nets, in bytes

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class Chain(nn.Sequential):
    """conv -> relu -> conv. Eval: the conv output and the relu output are alive
    together (2 maps), then the relu output and the second conv's (2 maps).
    Train: relu saves its output, which conv2 saves as its input: 1 map."""

    def __init__(self):
        super().__init__(nn.Conv2d(3, C, 3, padding=1), nn.ReLU(), nn.Conv2d(C, C, 3, padding=1))


class Residual(nn.Module):
    """relu(conv2(relu(conv1(x))) + x). Eval peak: h, h + x and relu's output, 3 maps.
    Train: the two relus save their outputs (conv2 saves relu1's again): 2 maps."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(C, C, 3, padding=1)
        self.conv2 = nn.Conv2d(C, C, 3, padding=1)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = self.conv2(h)
        return F.relu(h + x)


class Concat(nn.Module):
    """relu(cat(conv1x1(x), conv3x3(x))). Eval peak: the two branch maps, their concat and
    relu's output (2 x C1+C2 maps). Train: only relu's output is saved (cat keeps sizes)."""

    def __init__(self, c1=4, c2=6):
        super().__init__()
        self.b1 = nn.Conv2d(C, c1, 1)
        self.b2 = nn.Conv2d(C, c2, 3, padding=1)

    def forward(self, x):
        a, b = self.b1(x), self.b2(x)
        return F.relu(torch.cat([a, b], 1))


def concat_map(c1=4, c2=6):
    return B * (c1 + c2) * H * H * 4


CASES = [  # (net, input CxHxW, peak, saved)
    (Chain, (3, H, H), 2 * FMAP, FMAP),
    (Residual, (C, H, H), 3 * FMAP, 2 * FMAP),
    (Concat, (C, H, H), 3 * concat_map(), concat_map()),
]
OUTPUT_SAVED = {Chain: False, Residual: True, Concat: True}  # the final relu saves the output


def _measure(net_cls, size, device):
    with torch.device(device):
        net = net_cls()
    x = torch.zeros((B,) + size, device=device)
    return mem.measure(net, (x,), scratch=False), net, x  # the tensors, by hand (scratch: test_scratch*.py)


@pytest.mark.parametrize("net_cls,size,peak,saved", CASES, ids=["chain", "residual", "concat"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_hand_derived_memory(net_cls, size, peak, saved, device):
    r, _, _ = _measure(net_cls, size, device)
    assert r.peak_bytes == peak
    assert r.saved_bytes == saved


@pytest.mark.parametrize("net_cls,size,peak,saved", CASES, ids=["chain", "residual", "concat"])
def test_profiler_agrees(net_cls, size, peak, saved):
    """The CPU profiler's allocator events: sampled at top-level operator boundaries they
    give the same peak; live bytes after a train forward, minus the output, the saved."""
    r, net, x = _measure(net_cls, size, "cpu")
    ev = profiler_memory(net, (x,))
    assert ev["op_boundary_peak"] == r.peak_bytes
    # every allocation: the tensors and the scratch kernels allocate inside themselves
    assert ev["allocator_peak"] == mem.measure(net, (x,)).peak_bytes
    tr = profiler_memory(net, (x,), train=True)
    output_alone = 0 if OUTPUT_SAVED[net_cls] else tr["output_bytes"]
    assert tr["live_after"] - output_alone == r.saved_bytes


def test_dropout_mask_and_pool_indices_are_saved():
    """Linear(16->32) -> Dropout -> Linear(32->4): train saves dropout's mask and the
    second Linear's float input. On CPU (and meta) dropout multiplies by a float noise
    tensor (4 bytes per element); CUDA's fused kernel keeps a 1-byte bool mask.
    MaxPool saves its input and int64 indices."""
    net = nn.Sequential(nn.Linear(16, 32), nn.Dropout(0.5), nn.Linear(32, 4))
    r = mem.measure(net, (torch.zeros(B, 16),), scratch=False)
    assert r.saved_bytes == B * 32 * 4 + B * 32 * 4
    pool = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.MaxPool2d(2))
    r = mem.measure(pool, (torch.zeros(B, 3, H, H, device="meta"),), scratch=False)
    pooled = B * C * (H // 2) ** 2
    # max_pool2d saves its input (the conv map) and the int64 argmax indices
    assert r.saved_bytes == FMAP + pooled * 8


def test_attribution_sums_to_total_and_matches_the_layer():
    a = archcost.analyze(Residual(), input_size=(C, H, H), batch_size=B)
    ly = a.layers.set_index("layer")
    assert ly.loc["(model)", "saved_bytes"] == a.row["saved_bytes"] == 2 * FMAP
    # relu is functional: both saves happen in Residual's own code, none in the convs
    assert ly.loc["(model)", "self_saved_bytes"] == 2 * FMAP
    assert ly.loc["conv1", "saved_bytes"] == 0
    parts = a.breakdown()
    assert parts["saved_bytes"].sum() == a.row["saved_bytes"]
    assert ly["peak_bytes"].max() == a.row["peak_bytes"]
    # the tensors alone, by hand; the peak adds the running kernel's scratch (measured)
    assert mem.peak_pass(Residual(), (torch.zeros(B, C, H, H),), {}, scratch=False) == 3 * FMAP
    assert a.row["peak_bytes"] >= 3 * FMAP


def test_breakdown_saved_sums_on_a_zoo_model():
    a = archcost.analyze("resnet18", input_size=64)
    assert a.breakdown()["saved_bytes"].sum() == a.row["saved_bytes"]
    assert a.breakdown(depth=1)["saved_bytes"].sum() == a.row["saved_bytes"]


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "densenet121", "vgg11"])
def test_meta_equals_real_cpu_and_profiler_on_zoo(name):
    """The meta passes allocate exactly what CPU tensors do, and the profiler agrees."""
    frame = compare(name, input_size=64).set_index("by")
    same = frame.loc[["the same tracker on meta (archcost) and on cpu tensors"]]
    assert len(same) == 2 and (same["archcost"] == same["independent"]).all()
    assert (same["why"].str.startswith("the same operators allocate")).all()
    saved = frame[frame["quantity"] == "saved_bytes (training)"].iloc[0]
    assert abs(saved["relative_difference"]) < 0.01
    # every allocation the CPU allocator makes in the forward, kernels' scratch included
    every = frame.loc["CPU profiler allocator events, every allocation"]
    assert every["archcost"] == every["independent"]


@pytest.mark.parametrize("optimizer,states", [("sgd", 0), ("momentum", 1), ("adam", 2)])
def test_train_bytes_formula(optimizer, states):
    a = archcost.analyze(Chain(), input_size=(3, H, H), batch_size=B, optimizer=optimizer)
    n = (3 * C * 9 + C) + (C * C * 9 + C)  # conv weights and biases
    assert a.row["params"] == n
    assert a.row["train_bytes"] == 4 * n * (2 + states) + FMAP


def test_saved_is_linear_in_batch_and_weights_are_not():
    """Feature maps grow with the batch; BatchNorm's saved per-channel statistics and the
    weights do not: saved(b) = a*b + c exactly."""
    s = {b: archcost.analyze("resnet18", input_size=64, batch_size=b).row for b in (1, 2, 4)}
    assert s[4]["saved_bytes"] - s[2]["saved_bytes"] == 2 * (s[2]["saved_bytes"] - s[1]["saved_bytes"])
    assert s[4]["train_bytes"] - s[1]["train_bytes"] == s[4]["saved_bytes"] - s[1]["saved_bytes"]


def test_untrainable_input_keeps_peak_and_says_why():
    a = archcost.analyze("resnet18", input_size=32)  # 1x1 maps at batch 1: BatchNorm refuses train mode
    assert a.row["peak_bytes"] > 0 and pd.isna(a.row["saved_bytes"])
    assert "per channel" in a.row["memory_note"]


def test_memory_pass_leaves_a_user_module_as_it_was():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    archcost.analyze(net, input_size=(3, 8, 8))
    assert not net.training
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_quantile_is_linear_interpolation():
    xs = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert quantile(xs, 0.5) == 3.0
    assert quantile(xs, 0.2) == 1.0 + 0.8 * (2.0 - 1.0)  # position (5-1)*0.2 = 0.8
    assert quantile(xs, 1.0) == 5.0


def test_cpu_latency_columns_and_tflops():
    a = archcost.analyze("resnet18", input_size=64, latency=True, repeats=5, warmup=1)
    r = a.row
    assert r["repeats"] == 5 and r["clock"] == "perf_counter" and r["threads"] == torch.get_num_threads()
    assert r["latency_p20_ms"] <= r["latency_ms"] <= r["latency_p80_ms"]
    assert r["images_per_s"] == pytest.approx(1 / (r["latency_ms"] / 1e3))
    assert r["achieved_tflops"] == pytest.approx(r["flops"] / (r["latency_ms"] / 1e3) / 1e12)


def test_layer_latency_has_every_called_leaf_and_states_overhead():
    a = archcost.analyze(Chain(), input_size=(3, H, H), layer_latency=True, repeats=3, warmup=1)
    leaves = a.layers[a.layers["is_leaf"]]
    assert leaves["latency_ms"].notna().all() and (leaves["latency_ms"] > 0).all()
    assert "layer_timing_overhead_ms" in a.summary


def test_batch_size_lists():
    assert parse_batch_sizes("1,2,4,...,64") == [1, 2, 4, 8, 16, 32, 64]
    assert parse_batch_sizes("8,16,24,...,48") == [8, 16, 24, 32, 40, 48]
    assert parse_batch_sizes("1,2,...,48") == [1, 2, 4, 8, 16, 32, 48]
    assert parse_batch_sizes("3,1") == [1, 3]


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_table_has_memory_columns_for_the_lecture_models():
    r = run(["table", "alexnet", "vgg16", "googlenet", "resnet50", "densenet121", "--format", "csv", "--no-save"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(io.StringIO(r.stdout)).set_index("model")
    for col in ("saved_bytes", "peak_bytes", "train_bytes"):
        assert df[col].dtype.kind == "i" and (df[col] > 0).all(), col
    vgg = df.loc["vgg16"]
    assert vgg["train_bytes"] == vgg["param_bytes"] + vgg["buffer_bytes"] + vgg["param_bytes"] + vgg["saved_bytes"]
    # VGG16 at batch 1: the largest two maps alive together bound the inference peak:
    # conv1_1's 64x224x224 output and conv1_2's (ReLUs are in place).
    assert vgg["peak_bytes"] >= 2 * 64 * 224 * 224 * 4


def test_table_latency_columns(tmp_path):
    r = run(["table", "lenet5", "--latency", "--repeat", "3", "--warmup", "1", "--format", "csv", "--out", str(tmp_path)])
    assert r.exit_code == 0
    df = pd.read_csv(io.StringIO(r.stdout))
    for col in ("latency_ms", "latency_p20_ms", "latency_p80_ms", "images_per_s", "device_name", "torch_version"):
        assert col in df, col
    assert (tmp_path / "table_cpu_float32_b1_latency_lenet5.csv").exists()


@pytest.mark.parametrize("args,words", [
    (["table", "lenet5", "--amp"], "amp needs a lower precision"),
    (["sweep", "lenet5", "--batch-sizes", "1,x"], "is not a list"),
    (["sweep", "lenet5", "--batch-sizes", "0,1"], "positive"),
])
def test_run_option_mistakes_are_one_line(args, words):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_gpu_is_a_usage_error():
    r = CliRunner().invoke(main, ["table", "lenet5", "--device", "cuda", "--no-save"])
    assert r.exit_code == 2 and "no CUDA GPU" in r.output


def test_sweep_writes_csv_and_plot(tmp_path):
    r = run(["sweep", "resnet18", "--batch-sizes", "1,2", "--input-size", "64", "--repeat", "2",
             "--warmup", "0", "--out", str(tmp_path)])
    assert r.exit_code == 0
    df = pd.read_csv(tmp_path / "sweep_cpu_float32_b1-2_in64_resnet18.csv")
    assert list(df["batch_size"]) == [1, 2]
    assert df["saved_bytes"].iloc[1] > df["saved_bytes"].iloc[0]
    assert df["train_bytes"].diff().iloc[1] == df["saved_bytes"].diff().iloc[1]
    assert (tmp_path / "sweep_cpu_float32_b1-2_in64_resnet18.png").stat().st_size > 10_000


def test_memory_command_compares():
    r = run(["memory", "resnet18", "--input-size", "64", "--format", "csv"])
    assert r.exit_code == 0
    df = pd.read_csv(io.StringIO(r.stdout))
    assert set(df["quantity"]) == {"peak_bytes (inference)", "peak_bytes, tensors only (inference)",
                                   "saved_bytes (training)"}


@cuda
@pytest.mark.parametrize("net_cls,size,peak,saved", CASES, ids=["chain", "residual", "concat"])
def test_cuda_tracker_on_tiny_nets(net_cls, size, peak, saved):
    r, _, _ = _measure(net_cls, size, "cuda")
    assert (r.peak_bytes, r.saved_bytes) == (peak, saved)


@cuda
@pytest.mark.parametrize("name", ["resnet50", "vgg16", "densenet121"])
def test_cuda_allocator_agrees(name):
    frame = compare(name, device="cuda")
    saved = frame[frame["quantity"] == "saved_bytes (training)"].iloc[0]
    assert abs(saved["relative_difference"]) < 0.03
    peak = frame[frame["by"].str.contains("max_memory_allocated")].iloc[0]
    assert peak["independent"] >= peak["archcost"] * 0.97


@cuda
def test_cuda_latency_uses_events():
    a = archcost.analyze("resnet18", device="cuda", latency=True, repeats=10, warmup=3)
    assert a.row["clock"] == "cuda events" and a.row["latency_ms"] > 0
    assert "H100" not in a.row["device_name"] or a.row["device_peak_tflops"] == 67.0


def test_memory_command_on_an_untrainable_input_is_one_line():
    r = CliRunner().invoke(main, ["memory", "resnet18", "--input-size", "8"])
    assert r.exit_code == 2 and "train-mode forward" in r.output and "Traceback" not in r.output


class _Checked:
    """Makes every MetaShortcuts op (the memory passes' too) run both ways and records any
    difference between the closed form and PyTorch's own meta kernel: shapes, strides,
    dtypes, bytes, in-place aliasing."""

    def __init__(self, monkeypatch):
        self.differences, self.taken = [], set()
        monkeypatch.setattr(mem.MetaShortcuts, "call", lambda mode, *call: self.call(mode, *call))

    def call(self, mode, func, args, kwargs):
        from archcost.count.shapes import VOID, aten_shortcut
        from torch.utils._pytree import tree_flatten

        fast = aten_shortcut(func, args, kwargs)
        try:
            real = func(*args, **(kwargs or {}))
        except RuntimeError:
            if fast is not None:  # the closed form must not accept what the kernel refuses
                self.differences.append((str(func), "closed form for an invalid call"))
            raise
        if fast is not None:
            self.taken.add(str(func))
            describe = lambda out: [(t.shape, t.stride(), t.dtype, t.untyped_storage().nbytes(),
                                     any(t is a for a in args)) if t is not None else None
                                    for t in tree_flatten(out)[0]]
            if describe(None if fast is VOID else fast) != describe(real):  # VOID: returns nothing
                self.differences.append((str(func), describe(fast), describe(real)))
        return real


@pytest.mark.parametrize("name", ["alexnet_paper", "lenet5", "googlenet", "resnet18", "densenet121",
                                  "se_resnet50", "xception", "mobilenet_v2", "zfnet"])
def test_aten_shortcuts_match_meta_kernels_on_zoo(name, monkeypatch):
    from archcost.zoo import get_model
    from archcost.zoo.registry import get_spec

    with torch.device("meta"):
        model = get_model(name)
    x = torch.empty((2,) + tuple(get_spec(name).input_size), device="meta")
    checked = _Checked(monkeypatch)
    mem.measure(model, (x,), scratch=False)
    assert {"aten.convolution.default", "aten.addmm.default"} <= checked.taken
    assert checked.differences == []


@pytest.mark.parametrize("name,optimizer", [("resnet18", "adam"), ("densenet121", "sgd"),
                                            ("mobilenet_v2", "adamw"), ("googlenet", "momentum")])
def test_aten_shortcuts_match_meta_kernels_in_a_training_step(name, optimizer, monkeypatch):
    """The backward's and torch.optim's foreach step's closed forms (batch norm and ReLU
    backward, gradient sums over cat's slices, the optimizer's foreach ops) beside the
    meta kernels, through a whole training step."""
    from archcost.memory.training import TrainingStep
    from archcost.zoo import get_model
    from archcost.zoo.registry import get_spec

    with torch.device("meta"):
        model = get_model(name)
    x = torch.empty((2,) + tuple(get_spec(name).input_size), device="meta")
    checked = _Checked(monkeypatch)
    TrainingStep(model, optimizer).measure((x,), scratch=False)
    assert "aten.native_batch_norm_backward.default" in checked.taken
    assert ("aten.threshold_backward.default" in checked.taken) == (name != "mobilenet_v2")  # ReLU6: hardtanh
    assert any(op.startswith("aten._foreach_") for op in checked.taken)
    assert checked.differences == []


FALLBACK = False  # the closed form declines: the real meta kernel runs
SHORTCUT = True


@pytest.mark.parametrize("call,expected", [
    (lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True), SHORTCUT),
    (lambda x: F.max_pool2d(x, 3, 2, padding=1), SHORTCUT),
    (lambda x: F.max_pool2d(x, 2, dilation=2), FALLBACK),
    (lambda x: F.avg_pool2d(x, 3, 2, ceil_mode=True, count_include_pad=False), SHORTCUT),
    (lambda x: F.avg_pool2d(x, 2, divisor_override=3), FALLBACK),
    (lambda x: F.adaptive_avg_pool2d(x, (3, 1)), SHORTCUT),
    (lambda x: F.conv2d(x, torch.empty(4, 2, 3, 3, device="meta"), stride=2, padding=2, dilation=2, groups=2),
     SHORTCUT),
    (lambda x: F.conv2d(x.to(memory_format=torch.channels_last), torch.empty(4, 4, 1, 1, device="meta")),
     FALLBACK),
    (lambda x: torch.cat([x, x[:, :2].contiguous()], 1), SHORTCUT),
    (lambda x: torch.cat([x, x[:, :2]], 1), FALLBACK),  # a strided view
    (lambda x: torch.cat([x.to(memory_format=torch.channels_last), x], 1), FALLBACK),
    (lambda x: x * x[:, :1].contiguous(), SHORTCUT),
    (lambda x: x * x[:, :1], FALLBACK),
    (lambda x: x.to(torch.int32) / x.to(torch.int32), FALLBACK),
    (lambda x: x.to(torch.int32) * 2, FALLBACK),
    (lambda x: x + 1.5, SHORTCUT),
    (lambda x: 1.7159 * x, SHORTCUT),
    (lambda x: x * torch.tensor(2.0, dtype=torch.float64), SHORTCUT),  # 0-dim: no promotion
    (lambda x: x * torch.tensor(2.0, dtype=torch.complex64), FALLBACK),
    (lambda x: x - x, SHORTCUT),
    (lambda x: torch.tanh(x), SHORTCUT),
    (lambda x: torch.relu(x), SHORTCUT),
    (lambda x: x.sum((1, 2)), SHORTCUT),
    (lambda x: x.flatten(1) @ torch.empty(4 * 11 * 11, 3, device="meta"), SHORTCUT),
    (lambda x: torch.arange(7, device="meta"), SHORTCUT),
    (lambda x: torch.arange(7.0, device="meta"), FALLBACK),
    (lambda x: x.pow(2), SHORTCUT),
    (lambda x: x.clone().add_(x[:, :1]), SHORTCUT),
    (lambda x: x.clone().add_(x.flatten()[:11]), SHORTCUT),
    (lambda x: x.clone().mul_(0.5), SHORTCUT),
    (lambda x: x[:, :1].clone().add_(x), FALLBACK),  # invalid: in-place cannot broadcast the result
    (lambda x: x.to(torch.int64).add_(1), FALLBACK),
    (lambda x: torch.empty_like(x), SHORTCUT),
    (lambda x: x.mean((2, 3), keepdim=True), SHORTCUT),
    (lambda x: F.batch_norm(x.to(torch.bfloat16), torch.zeros(4, device="meta"), torch.ones(4, device="meta"),
                            training=True), SHORTCUT),
    (lambda x: F.linear(x.flatten(1), torch.empty(5, 4 * 11 * 11, device="meta"), torch.empty(5, device="meta")),
     SHORTCUT),
])
def test_aten_shortcuts_match_meta_kernels_on_edge_cases(call, expected, monkeypatch):
    checked = _Checked(monkeypatch)
    with mem.MetaShortcuts(), contextlib.suppress(RuntimeError):
        call(torch.empty(2, 4, 11, 11, device="meta"))
    assert checked.differences == []
    assert bool(checked.taken) == expected


def test_aten_shortcuts_leave_real_tensors_to_their_kernels(monkeypatch):
    """On CPU (or CUDA) tensors every op runs its real kernel: values are computed."""
    checked = _Checked(monkeypatch)
    model = archcost.get_model("resnet18").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        with mem.MetaShortcuts():
            y = model(x)
            z = torch.ones(2, 3).add_(torch.ones(3))  # an in-place op a closed form would skip
    assert checked.taken == set() and torch.equal(plain, y) and torch.equal(z, torch.full((2, 3), 2.0))


def test_float32_on_a_gpu_compares_with_the_tf32_peak_while_cudnn_uses_it():
    from archcost.devices.table import find_peak, peak_key

    h100 = find_peak("NVIDIA H100 80GB HBM3")
    assert h100.name == "NVIDIA H100 SXM5" and find_peak("NVIDIA H100 PCIe").name == "NVIDIA H100 PCIe"
    assert peak_key("float32", "cuda", cudnn_tf32=True) == "tf32"
    assert peak_key("float32", "cuda", cudnn_tf32=False) == "float32"
    assert peak_key("bfloat16", "cuda", cudnn_tf32=True) == "bfloat16"
    assert peak_key("float32", "cpu", cudnn_tf32=True) == "float32"
    assert h100.tflops["float32"] < h100.tflops["tf32"] < h100.tflops["bfloat16"]


class _FakeClock:
    """A clock that only the test's modules advance, standing in for the GPU's (CUDA
    events) and the CPU's (perf_counter): the timing code's pairing, warm-up dropping and
    per-layer sums are checked exactly, on CPU, without timing anything real."""

    def __init__(self, monkeypatch):
        self.now_ms = 0.0
        clock = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.at = None

            def record(self, stream=None):
                self.at = clock.now_ms

            def elapsed_time(self, end):
                assert clock.synced, "elapsed_time before torch.cuda.synchronize()"
                return end.at - self.at

        self.synced = False
        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: setattr(clock, "synced", True))
        from archcost.measure import timing as timing

        monkeypatch.setattr(timing.time, "perf_counter", lambda: clock.now_ms / 1e3)


class _Takes(nn.Module):
    """A leaf module that takes ``ms`` of the fake clock."""

    def __init__(self, clock, ms, cold_calls=0, cold_ms=0.0):
        super().__init__()
        self.clock, self.ms, self.cold_calls, self.cold_ms = clock, ms, cold_calls, cold_ms

    def forward(self, x):
        self.cold_calls -= 1
        self.clock.now_ms += self.cold_ms if self.cold_calls >= 0 else self.ms
        return x


class _TwoCalls(nn.Module):
    def __init__(self, clock):
        super().__init__()
        self.a, self.b = _Takes(clock, 2.0), _Takes(clock, 0.5)

    def forward(self, x):
        return self.b(self.a(self.b(x)))  # b runs twice per forward


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_timing_logic_on_a_fake_clock(device, monkeypatch):
    from archcost.measure import timing
    clock = _FakeClock(monkeypatch)
    net = _TwoCalls(clock)
    x = torch.zeros(1)
    t = timing.time_forward(net, (x,), device, repeats=7, warmup=3)
    approx = pytest.approx  # perf_counter is in seconds: ms -> s -> ms rounds
    assert (t.median_ms, t.p20_ms, t.p80_ms) == approx((3.0, 3.0, 3.0)) and t.repeats == 7
    assert t.clock == ("cuda events" if device == "cuda" else "perf_counter")
    per_layer, plain, hooked, overhead = timing.time_layers(net, (x,), device, repeats=4, warmup=2)
    assert per_layer == {"a": approx(2.0), "b": approx(2 * 0.5)}  # b's two calls summed per forward
    assert (plain.median_ms, hooked.median_ms, overhead) == approx((3.0, 3.0, 0.0))


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_per_layer_timing_drops_the_warm_up_forwards(device, monkeypatch):
    from archcost.measure import timing
    clock = _FakeClock(monkeypatch)
    # 2 plain warm-up + 2 plain timed + 2 hooked warm-up calls are slow (20 ms), then 2 ms
    net = nn.Sequential(_Takes(clock, 2.0, cold_calls=6, cold_ms=20.0))
    per_layer, plain, hooked, _ = timing.time_layers(net, (torch.zeros(1),), device, repeats=2, warmup=2)
    assert per_layer == {"0": pytest.approx(2.0)} and hooked.median_ms == pytest.approx(2.0)
    assert plain.median_ms == pytest.approx(20.0)


def test_gpu_report_script_runs_its_steps_on_cpu(tmp_path):
    """bench/gpu_reports.sh is what a session with a GPU runs; the same steps on CPU."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / "gpu_reports.sh"
    env = dict(os.environ, DEVICE="cpu", OUT=str(tmp_path), MODELS="lenet5", LAYER_MODEL="lenet5",
               BATCHES="1,2", REPEAT="2", WARMUP="1", PYTHON=sys.executable, ROOFLINE_BATCHES="1 2",
               ARCHCOST_CACHE_DIR=str(tmp_path / "cache"), LEDGER_MODELS="lenet5", LEDGER_OTHERS="",
               LEDGER_BATCH="2")
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    names = {p.name for p in tmp_path.iterdir()}
    assert {"table_cpu_float32_b1_latency_lenet5.csv", "table_cpu_float16-amp_b1_latency_lenet5.csv",
            "sweep_cpu_float32_b1-2_lenet5.csv", "lenet5_layers_cpu_float32_b1_latency.csv",
            "memcheck_lenet5_cpu_float32_b1.csv", "table_roofline_cpu_float32_b1.csv", "roofline_bench_cpu.csv",
            "roofline_bench_cpu.md", "calibration_cpu.json", "gpu_memcheck_cpu.csv"} <= names
    bench = pd.read_csv(tmp_path / "roofline_bench_cpu.csv")
    assert list(bench["batch_size"]) == [1, 2] and (bench["measured_over_bound"] > 0).all()
    check = pd.read_csv(tmp_path / "memcheck_lenet5_cpu_float32_b1.csv")
    assert (check["archcost"] > 0).all() and not any(n.endswith(".tmp") for n in names)
    ledger = pd.read_csv(tmp_path / "gpu_memcheck_cpu.csv")  # a dry run: predictions for a T4
    assert list(ledger["model"]) == ["lenet5", "lenet5"] and ledger["measured_max_memory_allocated"].isna().all()
