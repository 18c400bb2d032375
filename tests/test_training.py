"""Issue #14: the memory of a whole training step, frozen parts, and `archcost fit`.

Tiny nets whose step follows from their shapes by hand. M is one feature map of the conv
nets in bytes; G a conv's weight and bias in bytes. Each expected figure is derived in
the test's comment from what autograd keeps and what backward makes, never read off
archcost's output; the same step is then checked against the CPU allocator's events.
"""

import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from click.testing import CliRunner

from archcost.analysis import analyze
from archcost.memory import forward as mem
from archcost.devices.budgets import DEVICES, GIB, parse_memory
from archcost.errors import AnalysisError
from archcost.memory.fit import fit, largest_batch
from archcost.measure.allocator import allocator_step
from archcost.memory.training import freeze, step_memory
from archcost.cli import main

B, C, H = 2, 8, 16
M = B * C * H * H * 4  # one float32 C x H x H feature map of the batch
G1 = (3 * C * 3 * 3 + C) * 4  # conv 3 -> C, 3x3, with bias
G = (C * C * 3 * 3 + C) * 4  # conv C -> C, 3x3, with bias


def chain():
    """block 0 = conv1, relu, conv2, relu; then conv3, relu. Output 4-d: the loss is its sum."""
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.ReLU(), nn.Conv2d(C, C, 3, padding=1), nn.ReLU()),
        nn.Conv2d(C, C, 3, padding=1), nn.ReLU())


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(C, C, 3, padding=1)
        self.conv2 = nn.Conv2d(C, C, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


def _parts_sum(r):
    return (r.weight_bytes + r.buffer_bytes + r.optimizer_state_bytes + r.activations_at_peak
            + r.gradients_at_peak + r.backward_at_peak + r.step_at_peak)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_conv_chain_step_by_hand(device):
    # Forward keeps relu1, relu2, relu3's outputs (each relu saves its result; conv2 and
    # conv3 save the same storages as input; conv1's input is the batch) and the loss
    # (4 bytes): 3M + 4. Backward's peak is when conv3's backward returns: those, plus
    # autograd's ones for the loss (4), relu3's input gradient (M), conv3's input gradient
    # (M) and its weight and bias gradients (G): 5M + 8 + G.
    r = step_memory(chain().to(device), (torch.zeros(B, 3, H, H, device=device),), "sgd", scratch=False)
    weights = G1 + 2 * G
    assert r.forward_bytes == 3 * M + 4
    assert r.train_peak_bytes == weights + 5 * M + 8 + G
    assert r.peak_phase == "backward"
    assert r.gradient_bytes == weights and r.optimizer_state_bytes == 0
    assert _parts_sum(r) == r.train_peak_bytes


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_conv_chain_with_a_frozen_first_block(device):
    # Block 0 frozen: nothing in it needs a gradient, so relu1 and relu2 save nothing;
    # conv3 saves its input (relu2's output: M) for its weight gradient, relu3 its output.
    # Forward keeps 2M + 4. Backward's peak (conv3's backward, which makes no input
    # gradient now): 2M + 4, ones (4), relu3's input gradient (M), conv3's weight and bias
    # gradients: 3M + 8 + G. Gradients and trainable parameters: conv3's alone.
    model = chain().to(device)
    freeze(model, ["0.*"])
    x = torch.zeros(B, 3, H, H, device=device)
    r = step_memory(model, (x,), "sgd", scratch=False)
    assert r.forward_bytes == 2 * M + 4
    assert r.train_peak_bytes == G1 + 2 * G + 3 * M + 8 + G
    assert r.gradient_bytes == G and r.trainable_params == C * C * 9 + C
    assert mem.saved_pass(model, (x,), {}) == 2 * M  # 3M unfrozen


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_residual_block_step_by_hand(device):
    # Forward keeps relu1's output (conv2's input) and the final relu's output, + loss: 2M + 4.
    # The add passes its gradient to conv2 only (the batch needs none). Peak, as conv2's
    # backward returns: 2M + 4, ones (4), the final relu's input gradient (M), conv2's
    # input gradient (M), conv2's weight and bias gradients (G): 4M + 8 + G.
    r = step_memory(Residual().to(device), (torch.zeros(B, C, H, H, device=device),), "sgd", scratch=False)
    assert r.forward_bytes == 2 * M + 4
    assert r.train_peak_bytes == 2 * G + 4 * M + 8 + G


@pytest.mark.parametrize("optimizer,states", [("sgd", 0), ("momentum", 1), ("adam", 2), ("adamw", 2)])
def test_linear_head_optimizer_step_by_hand(optimizer, states):
    # nn.Linear(D, K), cross-entropy. Forward keeps the logits and log_softmax's output
    # (B x K each), the loss and nll_loss's total weight (4 bytes each): 2BK*4 + 8.
    # During the step: weights W, state (0, 1 or 2 x W), gradients W, the logits and the
    # loss (a training loop still holds them), and for Adam(W) the foreach step's sqrt(v)
    # (one tensor per parameter at once: W).
    b, d, k = 4, 32, 10
    w = (k * d + k) * 4
    r = step_memory(nn.Linear(d, k).to("meta"), (torch.zeros(b, d, device="meta"),), optimizer, scratch=False)
    assert r.forward_bytes == 2 * b * k * 4 + 8
    assert r.optimizer_state_bytes == states * w
    adam = optimizer.startswith("adam")
    assert r.phase_peak_bytes["step"] == w + states * w + w + b * k * 4 + 4 + (w if adam else 0)
    if adam:
        assert r.peak_phase == "step" and r.step_at_peak == w


@pytest.mark.parametrize("net,size", [(chain, (3, H, H)), (Residual, (C, H, H))])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_cpu_allocator_agrees_on_tiny_nets(net, size, optimizer):
    """The profiler's allocator events, sampled as top-level operators return: the same
    bytes. (Adam's step counters are CPU tensors of 4 bytes a parameter: in the CPU
    baseline, not on a meta or GPU model's device.)"""
    torch.manual_seed(0)
    x = (torch.zeros((B,) + size),)
    ours = step_memory(net().to("meta"), tuple(t.to("meta") for t in x), optimizer, scratch=False)
    cpu = allocator_step(net(), x, optimizer)
    counters = 4 * len(list(net().parameters())) if optimizer == "adam" else 0
    assert cpu["baseline_bytes"] == ours.weight_bytes + ours.optimizer_state_bytes + counters
    assert cpu["baseline_bytes"] - counters + cpu["op_boundary_peak"] == ours.train_peak_bytes
    # every allocation: the tensors and the scratch kernels allocate inside themselves
    with_scratch = step_memory(net().to("meta"), tuple(t.to("meta") for t in x), optimizer)
    assert cpu["baseline_bytes"] - counters + cpu["allocator_peak"] == with_scratch.train_peak_bytes


def test_cpu_allocator_agrees_on_a_zoo_model():
    """LeNet-5 at batch 2, within 1% (the allocator also sees what composite ops free
    inside themselves, and the loss's small scalars move between op boundaries)."""
    from archcost.count.inputs import make_inputs
    from archcost.count.build import build, runner_model
    from archcost.zoo.registry import get_spec

    spec = get_spec("lenet5")
    shape = [(2,) + tuple(spec.input_size)]
    ours = step_memory(build(spec.builder, "meta", torch.float32), make_inputs(shape, "meta", torch.float32))
    cpu = allocator_step(runner_model(spec.builder, None, None, "cpu", torch.float32, False),
                         make_inputs(shape, "cpu", torch.float32))
    theirs = cpu["baseline_bytes"] + cpu["allocator_peak"]  # every allocation, kernels' scratch included
    assert abs(ours.train_peak_bytes - theirs) / theirs < 0.01


def test_freeze_in_analyze_changes_what_trains_and_restores_a_user_module():
    model = chain()
    a = analyze(model, input_size=(3, H, H), batch_size=B, train=True, freeze=["0.*"])
    s = a.row
    assert s["trainable_params"] == C * C * 9 + C
    assert s["saved_bytes"] == 2 * M
    assert s["train_bytes"] == G1 + 2 * G + G + 2 * M  # weights + conv3's grads + saved (sgd)
    # the tensors by hand: test_conv_chain_with_a_frozen_first_block; analyze's peak is the
    # same step's with the running kernel's scratch
    frozen_meta = chain().to("meta")
    freeze(frozen_meta, ["0.*"])
    assert s["train_peak_bytes"] == step_memory(frozen_meta, (torch.zeros(B, 3, H, H, device="meta"),)).train_peak_bytes
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(AnalysisError, match="matches no parameter"):
        analyze(model, input_size=(3, H, H), freeze=["features.*"])
    assert all(p.requires_grad for p in model.parameters())


def test_a_users_own_requires_grad_flags_count():
    model = chain()
    for p in model[0].parameters():
        p.requires_grad_(False)
    r = step_memory(model.to("meta"), (torch.zeros(B, 3, H, H, device="meta"),), scratch=False)
    assert r.gradient_bytes == G and r.train_peak_bytes == G1 + 2 * G + 3 * M + 8 + G


def test_everything_frozen_says_so():
    model = chain()
    freeze(model, ["*"])
    with pytest.raises(AnalysisError, match="nothing to train"):
        step_memory(model, (torch.zeros(B, 3, H, H),))


def test_vgg16_head_only_freezes_the_features():
    a = analyze("vgg16", train=True, freeze=["features.*"], memory=True)
    full = analyze("vgg16", train=True)
    head = 4096 * (512 * 7 * 7 + 1) + 4096 * (4096 + 1) + 1000 * (4096 + 1)  # fc6, fc7, fc8
    assert a.row["trainable_params"] == head
    assert a.row["saved_bytes"] < full.row["saved_bytes"] / 100  # only the classifier saves
    assert a.row["train_peak_bytes"] < full.row["train_peak_bytes"]


# --- budgets and fit ----------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("16GiB", 16 * 2**30), ("16GB", 16 * 10**9), ("80G", 80 * 2**30), ("512MiB", 512 * 2**20),
    ("1.5GiB", 3 * 2**29), ("rtx4090", 24 * GIB), ("A100-80GB", 80 * GIB), ("1000", 1000)])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text,word", [("0", "zero"), ("-4GiB", "negative"), ("abc", "not understood"),
                                       ("16XB", "not understood"), ("", "not understood")])
def test_bad_budgets(text, word):
    with pytest.raises(ValueError, match=word):
        parse_memory(text)


def test_every_device_names_its_source():
    assert all(d.memory_gib > 0 and d.memory_source for d in DEVICES)
    # an entry without peaks has its memory only, and says so by its empty peak source
    assert all(d.has_peaks == bool(d.source) for d in DEVICES)


@pytest.mark.parametrize("a,c,budget,cap", [(7, 100, 10**6, 1 << 20), (1000, 5, 3, 100), (3, 0, 10**9, 50),
                                            (5, 10, 15, 100), (4096, 10**6, 10**9, 1 << 20)])
def test_largest_batch_is_exact_on_known_curves(a, c, budget, cap):
    calls = []

    def curve(b):
        return a * b + c + (b * b) // 1000  # increasing, not quite affine

    def needed(b):
        calls.append(b)
        return curve(b)

    got = largest_batch(needed, budget, cap)
    want = max([0] + [b for b in range(1, cap + 1) if curve(b) <= budget][-1:])
    assert got == want
    assert len(set(calls)) < 40


def test_fit_is_consistent_by_its_own_measurement():
    """The answer fits and answer + 1 does not, each re-measured on a fresh model."""
    from archcost.count.inputs import make_inputs
    from archcost.count.build import build
    from archcost.zoo.registry import get_spec

    budget = 64 * 2**20
    r = fit("lenet5", budget, optimizer="adam")
    spec = get_spec("lenet5")

    def needed(b):
        inputs = make_inputs([(b,) + tuple(spec.input_size)], "meta", torch.float32)
        s = step_memory(build(spec.builder, "meta", torch.float32), inputs, "adam")
        return s.train_peak_bytes + inputs[0].untyped_storage().nbytes()

    assert r.batch > 1 and not r.capped
    assert needed(r.batch) == r.needed_bytes <= budget < needed(r.batch + 1)
    assert r.headroom_bytes == budget - r.needed_bytes


def test_fit_at_batch_one_too_big_says_by_how_much(tmp_path):
    res = CliRunner().invoke(main, ["fit", "vgg16", "--memory", "1GiB", "--optimizer", "adam", "--no-save"])
    assert res.exit_code == 1, res.output  # nothing fits: exit 1, the report still printed
    assert "vgg16 does not fit at batch 1" in res.output and "over the budget" in res.output


@pytest.mark.parametrize("budget", ["0", "-1GB", "abc"])
def test_fit_bad_budget_is_one_line_exit_2(budget):
    res = CliRunner().invoke(main, ["fit", "lenet5", "--memory", budget, "--no-save"])
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0 and "memory budget" in res.output


def test_fit_cli_writes_csv_curve_and_plot(tmp_path):
    res = CliRunner().invoke(main, ["fit", "lenet5", "alexnet", "--memory", "16GiB", "--train", "--optimizer",
                                    "momentum", "--out", str(tmp_path), "--format", "csv"])
    assert res.exit_code == 0, res.output
    tag = "train-momentum_float32_16GiB_lenet5-alexnet"  # budget, then the models (README: 'Report names')
    frame = pd.read_csv(tmp_path / f"fit_{tag}.csv")
    curve = pd.read_csv(tmp_path / f"fit_curve_{tag}.csv")
    assert (tmp_path / f"fit_{tag}.png").stat().st_size > 10000
    for row in frame.itertuples():
        assert row.needed_bytes == row.weight_bytes + row.optimizer_state_bytes + row.gradients_at_peak \
            + row.activations_at_peak + row.transient_at_peak + row.scratch_at_peak + row.input_bytes
        c = curve[curve.model == row.model].set_index("batch_size")["needed_bytes"]
        assert c[row.batch] <= 16 * GIB < c[row.batch + 1]


def test_fit_inference_fits_more_than_training():
    train = fit("resnet18", 4 * GIB, train=True, optimizer="sgd")
    infer = fit("resnet18", 4 * GIB, train=False)
    assert infer.batch > 2 * train.batch > 0


def test_table_train_columns_only_with_train():
    plain = CliRunner().invoke(main, ["table", "lenet5", "--no-save", "--format", "csv"])
    train = CliRunner().invoke(main, ["table", "lenet5", "--no-save", "--format", "csv", "--train"])
    assert plain.exit_code == 0 and train.exit_code == 0
    assert "train_peak_bytes" not in plain.output.splitlines()[0]
    header = train.output.splitlines()[0].split(",")
    assert {"train_peak_bytes", "train_peak_phase", "gradient_bytes", "optimizer_state_bytes"} <= set(header)


def test_freeze_pattern_that_matches_nothing_is_one_line():
    res = CliRunner().invoke(main, ["table", "vgg16", "--freeze", "feat", "--no-save"])
    assert res.exit_code == 2 and "names look like features.0.weight" in res.output


# --- backward MACs ------------------------------------------------------------------

from archcost.memory.backward import backward_pass  # noqa: E402
from archcost.checks.traincheck import backward_cross_check  # noqa: E402

F3 = B * C * 3 * 3 * C * H * H  # forward MACs of a C -> C 3x3 conv on H x H (padding 1)
F1 = B * 3 * 3 * 3 * C * H * H  # of the 3 -> C conv


def test_conv_chain_backward_by_hand():
    # conv3 and conv2: input and weight gradients (each the forward's MACs); conv1: the
    # weight gradient only (its input is the batch). Frozen block 0: conv3's weight only
    # (relu2's output needs no gradient: no input gradient either).
    x = (torch.zeros(B, 3, H, H, device="meta"),)
    r = backward_pass(chain().to("meta"), x)
    assert r.macs == 2 * F3 + 2 * F3 + F1
    assert r.by_module["1"] == 2 * F3 and r.by_module["0.2"] == 2 * F3 and r.by_module["0.0"] == F1
    assert r.by_module["0"] == 2 * F3 + F1 and r.by_module[""] == r.macs
    model = chain().to("meta")
    freeze(model, ["0.*"])
    assert backward_pass(model, x).macs == F3


def test_residual_block_backward_by_hand():
    # conv2: input and weight gradients; conv1: weight only; the add sends nothing to the batch.
    r = backward_pass(Residual().to("meta"), (torch.zeros(B, C, H, H, device="meta"),))
    assert r.macs == 2 * F3 + F3


def test_linear_head_backward_by_hand():
    # fc1's input is the batch: weight gradient (x.T @ grad) only; fc2: grad @ W and grad.T @ h.
    b, d, h, k = 4, 32, 16, 10
    model = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k)).to("meta")
    r = backward_pass(model, (torch.zeros(b, d, device="meta"),))
    assert r.macs == b * d * h + 2 * b * h * k
    assert r.by_op == {"mm": b * d * h + 2 * b * h * k}


def test_batch_norm_backward_rule():
    # conv (input gradient not needed, weight gradient: F1) -> BN: the input gradient
    # 2 per element, weight and bias 1 per element (the rule stated in backward.py).
    model = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.BatchNorm2d(C)).to("meta")
    r = backward_pass(model, (torch.zeros(B, 3, H, H, device="meta"),))
    n = B * C * H * H
    assert r.by_op["native_batch_norm_backward"] == 2 * n + n
    assert r.by_op["convolution_backward"] == F1


@pytest.mark.parametrize("name", ["alexnet", "resnet18", "googlenet", "mobilenet_v2"])
def test_backward_agrees_with_torch_flop_counter(name):
    """Every operator both count is equal (grouped weight gradients: torch's counter counts
    them x groups, exactly the excess archcost computes); every other row is explained."""
    frame = backward_cross_check(name, batch_size=2)
    for r in frame.itertuples():
        if r.operator == "(total)":
            continue
        assert r.difference == 0 or r.why != "counted by one side only", r
        if r.operator in ("mm", "addmm", "bmm"):
            assert r.difference == 0
        if r.operator == "convolution_backward" and r.difference:
            assert "groups" in r.why
    assert frame.iloc[-1]["macs"] > 0


def test_backward_columns_and_layer_rows_sum():
    a = analyze("resnet18", train=True)
    s = a.row
    assert s["train_macs"] == s["macs"] + s["backward_macs"]
    rows = a.breakdown()
    assert rows["backward_macs"].sum() == s["backward_macs"]
    res = CliRunner().invoke(main, ["layer-breakdown", "lenet5", "--train", "--no-save", "--format", "csv"])
    assert res.exit_code == 0 and "backward_macs" in res.output.splitlines()[0]


# --- activation checkpointing -------------------------------------------------------

def test_checkpointing_block_0_by_hand():
    # Segment '0' (conv1, relu, conv2, relu) keeps only its input, the batch: the forward
    # keeps relu2's output (conv3's input), relu3's and the loss: 2M + 4, not 3M + 4.
    # Backward reruns the segment's forward: F1 + F3 more MACs.
    from archcost.memory.backward import backward_pass

    x = (torch.zeros(B, 3, H, H, device="meta"),)
    r = step_memory(chain().to("meta"), x, "sgd", checkpoint=["0"], scratch=False)
    assert r.forward_bytes == 2 * M + 4
    plain = backward_pass(chain().to("meta"), x).macs
    assert backward_pass(chain().to("meta"), x, checkpoint=["0"]).macs - plain == F1 + F3
    cpu = allocator_step(chain(), (torch.zeros(B, 3, H, H),), "sgd", checkpoint=["0"])
    assert cpu["baseline_bytes"] + cpu["op_boundary_peak"] == r.train_peak_bytes


def test_checkpointing_resnet_stages_lowers_the_peak_and_costs_their_forward():
    a = analyze("resnet18", batch_size=8, train=True, checkpoint=["layer?"])
    b = analyze("resnet18", batch_size=8, train=True)
    ly = a.layers
    stages = ly.set_index("layer").loc[["layer1", "layer2", "layer3", "layer4"], "macs"].sum()
    # every stage's forward once more, in train mode: batch norm costs 5 MACs an element
    # there (fvcore's rule) instead of inference's 2
    bn = ly[(ly["type"] == "BatchNorm2d") & ly["layer"].str.startswith("layer")]["activations"].sum()
    assert a.row["recompute_macs"] == stages + 3 * bn
    # what the forward leaves for backward halves; the peak drops less (layer1's
    # activations come back during its recomputation, and weights + gradients stay)
    assert a.row["step_forward_bytes"] < 0.5 * b.row["step_forward_bytes"]
    assert a.row["train_peak_bytes"] < b.row["train_peak_bytes"]
    assert a.row["checkpoint_segments"] == 4
    with pytest.raises(AnalysisError, match="matches no module"):
        analyze("resnet18", train=True, checkpoint=["stage*"])


def test_train_step_latency_columns():
    a = analyze(chain(), input_size=(3, H, H), batch_size=B, train=True, latency=True, repeats=3, warmup=1)
    s = a.row
    assert s["train_latency_ms"] > 0 and s["train_latency_p20_ms"] <= s["train_latency_p80_ms"]
    assert s["train_images_per_s"] == pytest.approx(B / (s["train_latency_ms"] / 1e3))
    assert s["train_achieved_tflops"] == pytest.approx(2 * s["train_macs"] / (s["train_latency_ms"] / 1e3) / 1e12)


def test_fit_json_is_strict_and_headroom_says_how_far_over():
    import json

    res = CliRunner().invoke(main, ["fit", "lenet5", "vgg16", "--memory", "1GiB", "--format", "json", "--no-save"])
    assert res.exit_code == 1  # vgg16 does not fit at batch 1
    rows = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    vgg = next(r for r in rows if r["model"] == "vgg16")
    assert vgg["batch"] == 0 and vgg["headroom_bytes"] == 2**30 - vgg["needed_bytes"] < 0


def test_memory_train_command_compares_with_the_allocator():
    res = CliRunner().invoke(main, ["memory", "lenet5", "--train", "-b", "2", "--format", "csv"])
    assert res.exit_code == 0, res.output
    import io

    frame = pd.read_csv(io.StringIO(res.stdout))
    boundary = frame[frame["by"].str.contains("sampled")].iloc[0]
    assert abs(boundary["relative_difference"]) < 0.01
    assert (frame["why"].str.len() > 0).all()
