"""The networks the CPU's latency fit is calibrated on (``latency_calibrate``).

Fixed, and built from torch alone (CI installs no timm or torchvision): two zoo networks
and two small synthetic ones that hold the operator classes the zoo lacks.

- ``resnet18`` (zoo): the 7x7 stem, k x k and 1x1 convolutions, batch norm, ReLU, max and
  global average pooling, a Linear;
- ``mobilenet_v2`` (zoo): a 3x3 stem, 1x1 and depthwise convolutions, ReLU6;
- ``MixedBlocks``: what mobile and hybrid networks add: 5x5 depthwise convolutions,
  squeeze-excitation (pooling, 1x1 convolutions with bias, SiLU, sigmoid, a product),
  hardswish, grouped convolutions, a channel shuffle (a copy), a concatenation, a
  PoolFormer-style block (group norm, 3x3 average pooling, GELU), max and average pooling
  with disjoint (2x2/2) and overlapping (3x3/1, 3x3/2) windows, a classifier whose weights
  (28 MB) are read once per forward at batch 1 (VGG's and AlexNet's are 100s of MB);
- ``TinyViT``: a patch embedding, layer norm, the attention's products and the fused
  attention kernel, GELU, a token-mixing product on transposed activations.

``bench/latency_prediction.py`` reports the prediction's error on the networks outside
this set (``CALIBRATION_NETWORKS``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

CALIBRATION_NETWORKS = ("resnet18", "mobilenet_v2", "mixed_blocks", "tiny_vit")


class _SE(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(s))))


def _cbn(cin, cout, k, s=1, g=1):
    return [nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(cout)]


class MixedBlocks(nn.Module):
    """The operator classes of mobile and hybrid networks, at their sizes (3x224x224 in)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*_cbn(3, 24, 3, 2), nn.Hardswish())
        self.expand = nn.Sequential(*_cbn(24, 96, 1), nn.SiLU())
        self.dw = nn.Sequential(*_cbn(96, 96, 5, 2, 96), nn.SiLU())
        self.se = _SE(96, 24)
        self.project = nn.Sequential(*_cbn(96, 48, 1))
        self.grouped = nn.Sequential(*_cbn(48, 96, 3, 2, 8), nn.ReLU(), *_cbn(96, 96, 3, 1, 4), nn.ReLU())
        self.branch = nn.Sequential(*_cbn(96, 96, 3, 1, 96), *_cbn(96, 96, 1), nn.Hardswish())
        self.norm1, self.norm2 = nn.GroupNorm(1, 192), nn.GroupNorm(1, 192)
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.mlp = nn.Sequential(nn.Conv2d(192, 384, 1), nn.GELU(), nn.Conv2d(384, 192, 1))
        self.down = nn.Sequential(nn.MaxPool2d(2), *_cbn(192, 256, 3), nn.ReLU6())
        self.pools = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.AvgPool2d(3, 2, 1))
        self.avgdown, self.maxdown, self.avglast = nn.AvgPool2d(2), nn.MaxPool2d(2), nn.AvgPool2d(7)
        self.head = nn.Sequential(nn.Linear(768, 4096), nn.ReLU(), nn.Linear(4096, 1000))  # VGG-like: 28 MB of weights

    def forward(self, x):
        x = self.stem(x)
        x = self.project(self.se(self.dw(self.expand(x))))
        x = self.grouped(x)
        x = torch.cat([x, self.branch(x)], 1)
        b, c, h, w = x.shape
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)  # channel shuffle: a copy
        y = self.norm1(x)
        x = x + self.pool(y) - y
        x = x + self.mlp(self.norm2(x))
        x = self.down(x)
        x = x * F.hardsigmoid(x)
        x = torch.cat([self.avgdown(x), self.maxdown(x), self.pools(x)], 1)
        return self.head(torch.flatten(self.avglast(x), 1))


class _Block(nn.Module):
    def __init__(self, d, heads, tokens):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.tokens = nn.Linear(tokens, tokens)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(a)
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return x + self.tokens(self.norm3(x).transpose(1, 2)).transpose(1, 2)


class TinyViT(nn.Module):
    """A ViT-Tiny-sized encoder (d=192, 3 heads, 197 tokens), 3 blocks (3x224x224 in)."""

    def __init__(self, d=192, heads=3, depth=3):
        super().__init__()
        self.embed = nn.Conv2d(3, d, 16, 16)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, 197, d))
        self.blocks = nn.Sequential(*[_Block(d, heads, 197) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 1000)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def build(name: str) -> nn.Module:
    """A calibration network by name (``CALIBRATION_NETWORKS``), random weights, eval mode."""
    if name == "mixed_blocks":
        return MixedBlocks().eval()
    if name == "tiny_vit":
        return TinyViT().eval()
    from archcost.zoo.registry import get_model

    return get_model(name).eval()
