"""MobileNetV2 (Sandler et al., 2018), laid out as torchvision's ``mobilenet_v2``:
inverted residuals with linear bottlenecks, depthwise 3x3 convs, ReLU6."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import Accuracy, Paper, register_model

PAPER = Paper("MobileNetV2: Inverted Residuals and Linear Bottlenecks", "Sandler et al.", 2018,
              "https://arxiv.org/abs/1801.04381")

# Table 2 of the paper: expansion t, output channels c, repeats n, first stride s.
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)]


class ConvBNReLU6(nn.Sequential):
    """torchvision's Conv2dNormActivation: conv (no bias), batch norm, ReLU6."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1):
        super().__init__(nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2,
                                   groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand_ratio):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers = [ConvBNReLU6(cin, hidden, kernel_size=1)] if expand_ratio != 1 else []
        layers += [ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=1000, dropout=0.2):
        super().__init__()
        layers, cin = [ConvBNReLU6(3, 32, stride=2)], 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(ConvBNReLU6(cin, 1280, kernel_size=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


@register_model(
    family="mobilenet", input_size=(3, 224, 224), paper=PAPER, depth=53, torchvision=True,
    accuracy=Accuracy(71.878, 90.286, "ImageNet-1k val", "torchvision MobileNet_V2_Weights.IMAGENET1K_V1"),
    note="Width 1.0. Depth 53 = conv and FC layers of Table 2 (1 + 2 + 16x3 + 1 convs, 1 FC).",
    published={"params_millions": 3.4, "mmacs": 300, "source": "Sandler et al. 2018, Table 3"},
)
def mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    return MobileNetV2(num_classes)
