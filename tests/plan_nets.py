"""Networks for the checkpoint planner's tests and bench, with memory derivable by hand."""

import torch
import torch.nn as nn


class MLPBlock(nn.Module):
    """x -> fc2(relu(fc1(x))): autograd keeps the hidden map relu(fc1(x)) (ReLU saves its
    result, fc2 its input: one storage) inside the block, and the input (fc1's) at its edge."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class WideBlock(nn.Module):
    """Like MLPBlock, at the same MACs, but its hidden map is concatenated ``times`` (a
    copy, no MACs) before the ReLU and summed back: the ReLU keeps times x the hidden map
    (and fc2 the sum). In backward, the sum's gradient is an expand (a view) and cat's
    are slices (views): the block's backward holds the wide map and one gradient of it."""

    def __init__(self, d: int, hidden: int, times: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d)
        self.times = times

    def forward(self, x):
        h = self.act(torch.cat([self.fc1(x)] * self.times, 1))
        return self.fc2(h.view(x.shape[0], self.times, -1).sum(1))


def chain(n: int, d: int, hidden: int, groups: int = 1) -> nn.Sequential:
    """n equal MLP blocks; with ``groups`` > 1, in that many nn.Sequential groups."""
    blocks = [MLPBlock(d, hidden) for _ in range(n)]
    if groups == 1:
        return nn.Sequential(*blocks)
    per = n // groups
    return nn.Sequential(*(nn.Sequential(*blocks[g * per:(g + 1) * per]) for g in range(groups)))


class Attention(nn.Module):
    """Multi-head self-attention written out (q k^T, softmax, @ v), so that meta tensors
    and CPU run the same operators (no fused kernel)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """ViT-B/16's shape (Dosovitskiy et al. 2021, table 1): 16x16 patches of a 224 image,
    width 768, 12 layers, 12 heads, MLP 3072, a class token, 1000 classes."""

    def __init__(self, image: int = 224, patch: int = 16, dim: int = 768, depth: int = 12, heads: int = 12,
                 mlp: int = 3072, classes: int = 1000):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, dim))
        self.layers = nn.Sequential(*(EncoderBlock(dim, heads, mlp) for _ in range(depth)))
        self.ln, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.ln(self.layers(x))[:, 0])


class TinyRes(nn.Module):
    """A small CNN with a residual block, for exhaustive search over every checkpoint set."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.res = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(c * 8 * 8, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.res(x))
        return self.fc(self.pool(x).flatten(1))


class DenseMLPLayer(nn.Module):
    """DenseNet's dense layer with linear layers: cat(features) -> fc1 -> ReLU -> fc2. Its
    input is the list of all earlier features, which no operator saves (cat keeps none of
    its inputs; fc1 saves the concatenation, a new storage)."""

    def __init__(self, cin: int, hidden: int, growth: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(cin, hidden), nn.Linear(hidden, growth)

    def forward(self, features):
        return self.fc2(torch.relu(self.fc1(torch.cat(features, 1))))


class TinyDense(nn.Module):
    """A stem, then ``n`` dense layers, each on the concatenation of the stem's output and
    every earlier layer's; the output is the concatenation of them all (DenseNet's dense
    block). Checkpointed dense layers keep the features they were given alive until
    their backward, and share them: the cost of keeping a feature is paid once."""

    def __init__(self, d: int = 8, growth: int = 8, hidden: int = 64, n: int = 3):
        super().__init__()
        self.stem = nn.Linear(d, growth)
        self.layers = nn.ModuleList(DenseMLPLayer((i + 1) * growth, hidden, growth) for i in range(n))

    def forward(self, x):
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, 1)


def chain16() -> nn.Sequential:
    """A builder for the command line: 16 MLP blocks of width 32, hidden 512 (input: 32 features)."""
    return chain(16, 32, 512)
