"""LeNet-5 as published by LeCun, Bottou, Bengio & Haffner (1998), Sec. II-B.

Trainable parameters per layer (paper): C1 156, S2 12, C3 1,516, S4 32, C5 48,120,
F6 10,164 = 60,000. The output layer's RBF centres are fixed (not trainable), so they
are a buffer here, not a parameter.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import Accuracy, Paper, register_model

PAPER = Paper("Gradient-Based Learning Applied to Document Recognition",
              "LeCun, Bottou, Bengio, Haffner", 1998, "https://doi.org/10.1109/5.726791")

# Table I of the paper: which S2 maps (rows 0-5) feed each C3 map (columns 0-15).
# Maps 0-5 take 3 contiguous maps, 6-11 take 4 contiguous, 12-14 take 4 non-contiguous,
# 15 takes all six.
C3_TABLE = ([[(i + k) % 6 for k in range(3)] for i in range(6)]
            + [[(i + k) % 6 for k in range(4)] for i in range(6)]
            + [[0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5]]
            + [list(range(6))])


class ScaledTanh(nn.Module):
    """The paper's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3 (Appendix A)."""

    def forward(self, x):
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: each unit adds its 2x2 inputs, multiplies by one trainable coefficient per
    map and adds one trainable bias per map (2 parameters per map).

    Written as a 2x2 average pool followed by a per-map (depthwise 1x1) scale and bias;
    the coefficient then multiplies the mean instead of the sum, a reparametrization by 4.
    """

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        x = F.avg_pool2d(x, 2)
        return F.conv2d(x, self.weight, self.bias, groups=x.shape[1])


class PartialConv(nn.Module):
    """C3: a 5x5 convolution where output map j sees only the input maps ``table[j]``."""

    def __init__(self, table, kernel_size=5):
        super().__init__()
        self.table = [list(t) for t in table]
        self.maps = nn.ModuleList(nn.Conv2d(len(t), 1, kernel_size) for t in self.table)
        for j, t in enumerate(self.table):  # the input maps of output map j, as an index
            self.register_buffer(f"inputs{j}", torch.tensor(t), persistent=False)

    def forward(self, x):
        return torch.cat([conv(x.index_select(1, getattr(self, f"inputs{j}")))
                          for j, conv in enumerate(self.maps)], 1)


class EuclideanRBF(nn.Module):
    """Output layer: y_i = sum_j (x_j - w_ij)^2 with fixed centres w (a buffer).

    Computed as |x|^2 - 2 x.w + |w|^2, so the cross term is a matrix product (84 x 10
    multiply-adds per image); the paper sets the centres to stylized 7x12 bitmaps of the
    digits, here they are +-1 placeholders of the same shape.
    """

    def __init__(self, in_features=84, out_features=10):
        super().__init__()
        signs = [1.0 if k % 3 == 0 else -1.0 for k in range(out_features * in_features)]
        self.register_buffer("centres", torch.tensor(signs).reshape(out_features, in_features))

    def forward(self, x):
        cross = torch.matmul(x, self.centres.t())
        return (x * x).sum(1, keepdim=True) - 2 * cross + (self.centres * self.centres).sum(1)


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.act1 = ScaledTanh()
        self.s2 = Subsampling(6)
        self.act2 = ScaledTanh()
        self.c3 = PartialConv(C3_TABLE)
        self.act3 = ScaledTanh()
        self.s4 = Subsampling(16)
        self.act4 = ScaledTanh()
        self.c5 = nn.Conv2d(16, 120, 5)  # 5x5 over the 5x5 maps: a full connection (Sec. II-B)
        self.act5 = ScaledTanh()
        self.f6 = nn.Linear(120, 84)
        self.act6 = ScaledTanh()
        self.output = EuclideanRBF(84, 10)

    def forward(self, x):
        x = self.act2(self.s2(self.act1(self.c1(x))))
        x = self.act4(self.s4(self.act3(self.c3(x))))
        x = self.act5(self.c5(x)).flatten(1)
        return self.output(self.act6(self.f6(x)))


@register_model(
    family="lenet", input_size=(1, 32, 32), paper=PAPER, depth=7,
    accuracy=Accuracy(99.05, None, "MNIST test", "LeCun et al. 1998, Sec. III-C (0.95% error, no distortions)"),
    note="Trainable subsampling, Table I's partial C3 connections, scaled-tanh squashing and a "
         "fixed Euclidean RBF output (centres are placeholders; the paper's are digit bitmaps). "
         "lenet1 is not included: no source available here fixes its H1-H3 connection scheme.",
    published={"params": 60000, "per_layer": {"c1": 156, "s2": 12, "c3": 1516, "s4": 32,
                                              "c5": 48120, "f6": 10164},
               "source": "LeCun et al. 1998, Sec. II-B"},
)
def lenet5() -> nn.Module:
    return LeNet5()
