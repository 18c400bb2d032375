"""Attention bytes are the fused kernel's (issue #21), and the places where meta's
decomposition moves other bytes than the device's kernel are the known ones."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from archcost.count.engine import run_pass
from archcost.roofline.attention_bytes import AttentionCall, AttentionCalls, backward_bytes, forward_bytes, fuse

B, H, L, S, E, EV = 2, 4, 16, 24, 8, 12


class Attn(nn.Module):
    """Self-attention with packed q, k, v (views of one tensor, as timm's ViT) and a cross-attention."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(H * E, 3 * H * E)

    def forward(self, x, mem_k, mem_v):
        qkv = self.qkv(x).reshape(B, L, 3, H, E).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = F.scaled_dot_product_attention(q, k, v)
        c = F.scaled_dot_product_attention(a, mem_k, mem_v, is_causal=False)
        return c


def formula(q, k, v, esize=4):
    """read Q, K, V; write O (B,H,L,Ev) and one float32 log-sum-exp per query row."""
    read = (q[0] * q[1] * q[2] * q[3] + k[0] * k[1] * k[2] * k[3] + v[0] * v[1] * v[2] * v[3]) * esize
    written = q[0] * q[1] * q[2] * v[3] * esize + q[0] * q[1] * q[2] * 4
    return read, written


def test_forward_and_backward_formulas():
    call = AttentionCall((B, H, L, E), (B, H, S, E), (B, H, S, EV), 2)
    assert forward_bytes(call) == ((B * H * L * E + B * H * S * E + B * H * S * EV) * 2,
                                   B * H * L * EV * 2 + B * H * L * 4)
    # backward: Q, K, V, O, dO, LSE and D read; dQ, dK, dV and D written
    o = B * H * L * EV
    assert backward_bytes(call) == ((B * H * L * E + B * H * S * E + B * H * S * EV + 2 * o) * 2 + 2 * B * H * L * 4,
                                    (B * H * L * E + B * H * S * E + B * H * S * EV) * 2 + B * H * L * 4)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_fused_attention_layers_bytes_equal_the_kernels_formula(device):
    model = Attn().to(device).eval()
    x = torch.randn(B, L, H * E, device=device)
    mk, mv = torch.randn(B, H, S, E, device=device), torch.randn(B, H, S, EV, device=device)
    with AttentionCalls() as cap:
        res = run_pass(model, (x, mk, mv), record_ops=True)
    assert len(cap.calls) == 2
    fused, n = fuse(res.ops, cap.calls)
    assert n == 2
    att = [o for o in fused if o.op == "scaled_dot_product_attention"]
    assert len(att) == 2  # one kernel per call
    assert (att[0].bytes_read, att[0].bytes_written) == formula((B, H, L, E), (B, H, L, E), (B, H, L, E))
    assert (att[1].bytes_read, att[1].bytes_written) == formula((B, H, L, E), (B, H, S, E), (B, H, S, EV))
    # MACs as counted: Q K^T plus P V
    assert att[0].macs == B * H * L * L * E * 2 and att[1].macs == B * H * L * S * (E + EV)
    # everything else untouched
    assert [o for o in fused if o.op != "scaled_dot_product_attention"] == \
        [o for o in res.ops if o.op != "scaled_dot_product_attention"]


def test_the_math_path_moves_more_than_the_fused_kernel():
    # at L = S = 512 the decomposition writes and reads B x H x L x S scores; the kernel does not
    q = torch.randn(1, 2, 512, 16, device="meta")
    with AttentionCalls() as cap:
        res = run_pass(nn.Identity(), (q,), record_ops=True)  # identity: no attention
    assert cap.calls == []

    class M(nn.Module):
        def forward(self, q):
            return F.scaled_dot_product_attention(q, q, q)

    with AttentionCalls() as cap:
        res = run_pass(M(), (q,), record_ops=True)
    math_bytes = sum(o.bytes_read + o.bytes_written for o in res.ops)
    fused, _ = fuse(res.ops, cap.calls)
    fused_bytes = sum(o.bytes_read + o.bytes_written for o in fused)
    assert fused_bytes == 4 * 4 * 512 * 2 * 16 + 2 * 512 * 4  # Q, K, V read, O written, LSE
    assert math_bytes > 2 * 2 * 512 * 512 * 4  # at least the scores written once and read once


class MHA(nn.Module):
    def __init__(self, need_weights):
        super().__init__()
        self.m, self.need_weights = nn.MultiheadAttention(32, 4, batch_first=True), need_weights

    def forward(self, x):
        return self.m(x, x, x, need_weights=self.need_weights)[0]


LAYERS = {
    "conv": (nn.Conv2d(8, 16, 3, padding=1), (2, 8, 12, 12)),
    "depthwise": (nn.Conv2d(8, 8, 3, padding=1, groups=8), (2, 8, 12, 12)),
    "layer_norm": (nn.LayerNorm(32), (2, 10, 32)),
    "group_norm": (nn.GroupNorm(2, 8), (2, 8, 12, 12)),
    "gelu": (nn.GELU(), (2, 10, 32)),
    "hardswish": (nn.Hardswish(), (2, 10, 32)),
    "linear": (nn.Linear(32, 16), (2, 10, 32)),
    "max_pool": (nn.MaxPool2d(2), (2, 8, 12, 12)),
    "adaptive_pool": (nn.AdaptiveAvgPool2d(1), (2, 8, 12, 12)),
    "upsample": (nn.Upsample(scale_factor=2, mode="bilinear"), (2, 8, 12, 12)),
    "mha_weights": (MHA(True), (2, 10, 32)),
    "softmax": (nn.Softmax(-1), (2, 10, 32)),
    # where the device runs another kernel than meta's decomposition:
    "batch_norm": (nn.BatchNorm2d(8), (2, 8, 12, 12)),
    "lstm": (nn.LSTM(32, 16, batch_first=True), (2, 10, 32)),
    "gru": (nn.GRU(32, 16, batch_first=True), (2, 10, 32)),
    "mha_no_weights": (MHA(False), (2, 10, 32)),
    "encoder_layer": (nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), (2, 10, 32)),
}
KNOWN_DIFFERENT = {"batch_norm", "lstm", "gru", "mha_no_weights", "encoder_layer"}


def test_meta_and_the_cpu_kernels_move_the_same_bytes_except_the_known_layers():
    differ = set()
    for name, (layer, shape) in LAYERS.items():
        moved = {}
        for device in ("cpu", "meta"):
            m = copy.deepcopy(layer).to(device).eval()
            res = run_pass(m, (torch.randn(shape, device=device),), record_ops=True)
            moved[device] = (sum(o.bytes_read for o in res.ops), sum(o.bytes_written for o in res.ops))
        if moved["cpu"] != moved["meta"]:
            differ.add(name)
    assert differ == KNOWN_DIFFERENT  # the list in attention_bytes' docstring


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_multihead_attention_without_weights_is_fused_with_weights_is_not(device):
    n, length, embed, heads = 2, 10, 32, 4
    x = torch.randn(n, length, embed, device=device)
    for need_weights in (False, True):
        m = MHA(need_weights).to(device).eval()
        with AttentionCalls() as cap:
            res = run_pass(m, (x,), record_ops=True)
        fused, done = fuse(res.ops, cap.calls)
        att = [o for o in fused if o.op == "scaled_dot_product_attention"]
        macs = 2 * n * heads * length * length * (embed // heads)  # Q K^T + P V
        assert sum(o.macs for o in att) == macs
        if need_weights:  # the device materialises the weights too: nothing replaced
            assert done == 0 and fused == res.ops
        else:
            shape = (n, heads, length, embed // heads)
            assert done == 1 and len(att) == 1
            assert (att[0].bytes_read, att[0].bytes_written) == formula(shape, shape, shape)


def test_an_encoder_layers_attention_is_fused():
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).to("meta").eval()
    with AttentionCalls() as cap:
        res = run_pass(layer, (torch.randn(2, 10, 32, device="meta"),), record_ops=True)
    fused, done = fuse(res.ops, cap.calls)
    assert done == 1 and sum(o.op == "scaled_dot_product_attention" for o in fused) == 1
    assert sum(o.macs for o in fused) == sum(o.macs for o in res.ops)  # MACs stay as counted
