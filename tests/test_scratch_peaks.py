"""Kernel scratch in the peaks: ``peak_bytes`` and ``train_peak_bytes`` against the CPU
allocator's own accounting (``torch.profiler`` with ``profile_memory``, every allocation,
kernels' scratch included), on small networks of our own that reproduce the shapes of
ConvNeXt-T, EfficientNet-B0, ViT-B/16, Swin-T, ResNet-50 and MobileNetV3-S: their layers,
memory formats and operators, at a fraction of the width and resolution. The issue's
bound is 0.5%; what is left is the class labels of the loss (8 bytes a sample: input,
made outside the tracker) and Adam's step counters (4 bytes a parameter on the CPU).

And a network with an operator of known scratch (``archcost_test::scratchy``, tests/scratch_op.py: ``n`` bytes allocated after its output and freed before it
returns) has exactly that scratch in its peaks, by formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from archcost.measure.allocator import allocator_step, profiler_memory
from archcost.memory.forward import peak_detail, peak_pass
from archcost.memory.training import step_memory

from scratch_op import SCRATCHY, own_cache  # noqa: F401  (own_cache: an autouse fixture)


# ------------------------------------------------------------------ the networks


class LayerNorm2d(nn.LayerNorm):
    """ConvNeXt's channels-first LayerNorm: permute to NHWC, norm, permute back."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)  # depthwise 7x7
        self.norm = nn.LayerNorm(c)
        self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 1e-6))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


def convnext_like():
    """Stem 4x4/4 + LayerNorm2d, two stages of ConvNeXt blocks, a 2x2/2 downsample."""
    return nn.Sequential(nn.Conv2d(3, 24, 4, 4), LayerNorm2d(24), ConvNeXtBlock(24), ConvNeXtBlock(24),
                         LayerNorm2d(24), nn.Conv2d(24, 48, 2, 2), ConvNeXtBlock(48),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(48), nn.Linear(48, 10))


class SE(nn.Module):
    def __init__(self, c, r, gate=nn.Sigmoid, act=nn.SiLU):
        super().__init__()
        self.reduce, self.act, self.expand, self.gate = nn.Conv2d(c, r, 1), act(), nn.Conv2d(r, c, 1), gate()

    def forward(self, x):
        return x * self.gate(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise k x k, squeeze-excite, 1x1 project."""

    def __init__(self, cin, cout, k, stride, expand, act=nn.SiLU, gate=nn.Sigmoid):
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), act(),
            nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), act(),
            SE(mid, max(1, cin // 4), gate, act), nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def efficientnet_like():
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU(),
                         MBConv(16, 16, 3, 1, 1), MBConv(16, 24, 3, 2, 6), MBConv(24, 24, 5, 1, 6),
                         nn.Conv2d(24, 64, 1, bias=False), nn.BatchNorm2d(64), nn.SiLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, 10))


def mobilenetv3_like():
    hs = nn.Hardswish
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), hs(),
                         MBConv(16, 16, 3, 2, 1, nn.ReLU, nn.Hardsigmoid), MBConv(16, 24, 3, 2, 4, hs, nn.Hardsigmoid),
                         MBConv(24, 24, 5, 1, 3, hs, nn.Hardsigmoid), nn.Conv2d(24, 96, 1, bias=False),
                         nn.BatchNorm2d(96), hs(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 128), hs(),
                         nn.Dropout(0.2), nn.Linear(128, 10))


class Bottleneck(nn.Module):
    def __init__(self, cin, mid, stride):
        super().__init__()
        cout = 4 * mid
        self.body = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                                  nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid),
                                  nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + (x if self.down is None else self.down(x)))


def resnet50_like():
    return nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                         nn.MaxPool2d(3, 2, 1), Bottleneck(16, 8, 1), Bottleneck(32, 8, 1), Bottleneck(32, 16, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


class Attention(nn.Module):
    def __init__(self, d, heads, bias_tokens=0):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(d, 3 * d), nn.Linear(d, d)
        # Swin's relative position bias: one learned table, added to the scores
        self.bias = nn.Parameter(torch.zeros(heads, bias_tokens, bias_tokens)) if bias_tokens else None

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask = None if self.bias is None else self.bias.unsqueeze(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    def __init__(self, d, heads, bias_tokens=0):
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(d), Attention(d, heads, bias_tokens)
        self.n2, self.mlp = nn.LayerNorm(d), nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        return x + self.mlp(self.n2(x))


class ViTLike(nn.Module):
    """Patch embedding 16x16/16 (a convolution), class token, position embedding, blocks."""

    def __init__(self, d=48, heads=3, depth=2, image=64, patch=16):
        super().__init__()
        n = (image // patch) ** 2
        self.embed = nn.Conv2d(3, d, patch, patch)
        self.cls, self.pos = nn.Parameter(torch.zeros(1, 1, d)), nn.Parameter(torch.zeros(1, n + 1, d))
        self.blocks = nn.Sequential(*[TransformerBlock(d, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 10)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


class SwinStage(nn.Module):
    """Window attention on w x w windows of an NHWC map, the second block on windows
    shifted by w/2 (``torch.roll``), with a relative position bias per window."""

    def __init__(self, d, heads, w):
        super().__init__()
        self.w = w
        self.blocks = nn.ModuleList([TransformerBlock(d, heads, w * w) for _ in range(2)])

    def forward(self, x):  # x: N, H, W, C
        n, h, wd, c = x.shape
        w = self.w
        for i, blk in enumerate(self.blocks):
            y = torch.roll(x, (-(w // 2), -(w // 2)), (1, 2)) if i % 2 else x
            win = y.view(n, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)
            win = blk(win).view(n, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(n, h, wd, c)
            x = torch.roll(win, (w // 2, w // 2), (1, 2)) if i % 2 else win
        return x


class SwinLike(nn.Module):
    def __init__(self, d=24, w=4, image=64):
        super().__init__()
        self.embed, self.n0 = nn.Conv2d(3, d, 4, 4), nn.LayerNorm(d)
        self.stage1 = SwinStage(d, 3, w)
        self.merge_norm, self.merge = nn.LayerNorm(4 * d), nn.Linear(4 * d, 2 * d, bias=False)  # patch merging
        self.stage2 = SwinStage(2 * d, 6, w)
        self.norm, self.head = nn.LayerNorm(2 * d), nn.Linear(2 * d, 10)

    def forward(self, x):
        x = self.n0(self.embed(x).permute(0, 2, 3, 1))
        x = self.stage1(x)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        x = self.stage2(self.merge(self.merge_norm(x)))
        return self.head(self.norm(x).mean((1, 2)))


# Attention runs a fused kernel on CPU and its decomposition on meta: archcost measures
# such models on real CPU tensors (analyze's device_paths); the CNNs on meta.
NETS = {"convnext_like": (convnext_like, "meta", 64), "efficientnet_like": (efficientnet_like, "meta", 64),
        "vit_like": (ViTLike, "cpu", 64), "swin_like": (SwinLike, "cpu", 64),
        "resnet50_like": (resnet50_like, "meta", 64), "mobilenetv3_like": (mobilenetv3_like, "meta", 64)}
BATCH = 2


def _model(builder, device):
    torch.manual_seed(0)
    with torch.device(device):
        return builder()


def _inputs(device, image):
    return (torch.zeros(BATCH, 3, image, image, device=device),)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("name", list(NETS))
def test_train_peak_is_the_allocators_peak(name, optimizer):
    builder, device, image = NETS[name]
    ours = step_memory(_model(builder, device), _inputs(device, image), optimizer)
    ev = allocator_step(_model(builder, "cpu"), _inputs("cpu", image), optimizer)
    true_peak = ev["baseline_bytes"] + ev["allocator_peak"]
    assert abs(ours.train_peak_bytes - true_peak) <= 0.005 * true_peak
    without = step_memory(_model(builder, device), _inputs(device, image), optimizer, scratch=False)
    assert ours.train_peak_bytes - without.train_peak_bytes <= ours.scratch_at_peak


@pytest.mark.parametrize("name", list(NETS))
def test_inference_peak_is_the_allocators_peak(name):
    builder, device, image = NETS[name]
    ours = peak_pass(_model(builder, device), _inputs(device, image), {})
    ev = profiler_memory(_model(builder, "cpu"), _inputs("cpu", image))
    assert abs(ours - ev["allocator_peak"]) <= 0.005 * ev["allocator_peak"]


# ------------------------------------------------------------------ the measured calls, at their shapes


# The issue measured the scratch in two calls of the full networks: ConvNeXt-T's depthwise 7x7
# convolution backward at 768 channels on its last stage's 7x7 map (38.5 MB, batch 2), and
# ViT-B/16's patch-embedding backward (a 16x16/16 convolution, 3 -> 768 channels, on 224x224,
# weight gradient only: it is the first layer; 20 MB). These networks hold those layers at those
# shapes, with what makes the call the same (the block's input needs a gradient in ConvNeXt; the
# embedding's does not), and a head. On this project's CPU (2 threads, oneDNN) their calls hold
# 38.7 MB and 21.3 MB of scratch, and the tensors alone are 18-75% below the allocator's peak:
# a peak that left the scratch out fails the 0.5% here.
def convnext_t_last_block():
    return nn.Sequential(LayerNorm2d(768), ConvNeXtBlock(768), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.LayerNorm(768), nn.Linear(768, 10))


SHAPES = {"convnext_t_last_block": (convnext_t_last_block, (768, 7, 7)),
          "vit_b16_patch_embedding": (lambda: ViTLike(d=768, heads=12, depth=0, image=224), (3, 224, 224))}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_the_measured_calls_scratch_is_in_the_train_peak(name, optimizer):
    builder, shape = SHAPES[name]
    x = lambda device: (torch.zeros(BATCH, *shape, device=device),)  # noqa: E731
    ours = step_memory(_model(builder, "meta"), x("meta"), optimizer)
    without = step_memory(_model(builder, "meta"), x("meta"), optimizer, scratch=False)
    ev = allocator_step(_model(builder, "cpu"), x("cpu"), optimizer)
    true_peak = ev["baseline_bytes"] + ev["allocator_peak"]
    # the allocator's peak, within the 0.5%
    assert abs(ours.train_peak_bytes - true_peak) <= 0.005 * true_peak
    # by rule: what scratch adds to the peak is at most the scratch alive at the peak, and the tensors
    # alone miss no more than that scratch (plus the 0.5%)
    assert 0 <= ours.train_peak_bytes - without.train_peak_bytes <= ours.scratch_at_peak
    assert true_peak - without.train_peak_bytes <= ours.scratch_at_peak + 0.005 * true_peak


# ------------------------------------------------------------------ a known scratch, by formula


K = 3 << 20  # the operator's scratch: 3 MiB, far above the networks' tensors


class WithScratch(nn.Module):
    """h = x W^T (no bias), y = scratchy(h) = 2h with K bytes of scratch; 2-d output."""

    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, d, bias=False)

    def forward(self, x):
        return SCRATCHY(self.fc(x), K)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_inference_peak_holds_a_known_scratch(device):
    b, d = 4, 32
    model = _model(lambda: WithScratch(d), device)
    peak, scratch = peak_detail(model, (torch.zeros(b, d, device=device),), {})
    # At scratchy: h and y (b x d float32 each) alive, and its K bytes.
    assert (peak, scratch) == (2 * b * d * 4 + K, K)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_train_peak_holds_a_known_scratch(optimizer):
    b, d = 4, 32
    r = step_memory(_model(lambda: WithScratch(d), "meta"), (torch.zeros(b, d, device="meta"),), optimizer)
    state = {"sgd": 0, "adam": 2}[optimizer] * d * d * 4
    # The forward's scratchy call: weight (+ Adam's two moments), h and y alive, and K;
    # nothing in backward or the step comes near K.
    assert r.train_peak_bytes == d * d * 4 + state + 2 * b * d * 4 + K
    assert (r.scratch_at_peak, r.peak_phase) == (K, "forward")


# ------------------------------------------------------------------ meta standing for the CPU's attention


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_meta_runs_the_cpus_attention_kernel_under_cpu_kernels(optimizer):
    # fit's size budgets measure on meta under CpuKernels: where the CPU picks flash attention, so
    # does the meta pass, and the step's peak is the allocator's (within the 0.5%). Meta alone
    # decomposes the attention and saves its softmax for backward: at the end of the forward, per
    # layer, a float32 matrix of batch x heads x tokens^2 where flash keeps a log-sum-exp of
    # batch x heads x tokens.
    from archcost.memory.cpu_kernels import CpuKernels

    depth, heads, tokens = 2, 3, (64 // 16) ** 2 + 1
    with CpuKernels() as kernels:
        ours = step_memory(_model(ViTLike, "meta"), _inputs("meta", 64), optimizer)
    assert "flash" in kernels.notes.get("sdpa", "")
    ev = allocator_step(_model(ViTLike, "cpu"), _inputs("cpu", 64), optimizer)
    true_peak = ev["baseline_bytes"] + ev["allocator_peak"]
    assert abs(ours.train_peak_bytes - true_peak) <= 0.005 * true_peak
    decomposed = step_memory(_model(ViTLike, "meta"), _inputs("meta", 64), optimizer)
    assert (decomposed.phase_peak_bytes["forward"] - ours.phase_peak_bytes["forward"]
            == depth * BATCH * heads * (tokens ** 2 - tokens) * 4)
