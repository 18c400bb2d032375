"""Xception (Chollet, 2017): depthwise separable convolutions with residual connections,
Fig. 5 of the paper. Convolutions have no bias (each is followed by batch norm)."""

import torch.nn as nn

from .registry import Accuracy, Paper, register_model

PAPER = Paper("Xception: Deep Learning with Depthwise Separable Convolutions", "Chollet", 2017,
              "https://arxiv.org/abs/1610.02357")


class SeparableConv2d(nn.Module):
    """3x3 depthwise conv then 1x1 pointwise conv, no non-linearity in between (Sec. 3)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class Block(nn.Module):
    """[ReLU] SepConv BN, repeated, then 3x3/2 max pool with a strided 1x1 conv shortcut
    (entry and exit flows), or an identity shortcut (middle flow)."""

    def __init__(self, cin, widths, first_relu=True, downsample=True):
        super().__init__()
        layers, ch = [], cin
        for i, w in enumerate(widths):
            if i > 0 or first_relu:
                layers.append(nn.ReLU(inplace=False))
            layers += [SeparableConv2d(ch, w), nn.BatchNorm2d(w)]
            ch = w
        if downsample:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            self.skip = nn.Sequential(nn.Conv2d(cin, ch, 1, stride=2, bias=False), nn.BatchNorm2d(ch))
        else:
            self.skip = None
        self.rep = nn.Sequential(*layers)

    def forward(self, x):
        return self.rep(x) + (x if self.skip is None else self.skip(x))


class Xception(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.entry = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            Block(64, (128, 128), first_relu=False), Block(128, (256, 256)), Block(256, (728, 728)))
        self.middle = nn.Sequential(*[Block(728, (728, 728, 728), downsample=False) for _ in range(8)])
        self.exit = nn.Sequential(
            Block(728, (728, 1024)),
            SeparableConv2d(1024, 1536), nn.BatchNorm2d(1536), nn.ReLU(inplace=True),
            SeparableConv2d(1536, 2048), nn.BatchNorm2d(2048), nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.exit(self.middle(self.entry(x)))
        return self.fc(self.avgpool(x).flatten(1))


@register_model(
    family="xception", input_size=(3, 299, 299), paper=PAPER, depth=36,
    accuracy=Accuracy(79.0, 94.5, "ImageNet-1k val", "Chollet 2017, Table 1"),
    note="Fig. 5 without the optional FC layers: 36 conv layers in 14 modules, then logistic "
         "regression. ReLUs before a separable conv are not in-place: the block's input is reused by its shortcut.",
    published={"params": 22855952, "source": "Chollet 2017, Table 3"},
)
def xception(num_classes: int = 1000) -> nn.Module:
    return Xception(num_classes)
