"""SE-ResNet (Hu, Shen, Sun: Squeeze-and-Excitation Networks, 2017), reduction ratio 16.

A squeeze-and-excitation gate (global average pool, FC C->C/16, ReLU, FC C/16->C,
sigmoid, channel-wise scale) after the last batch norm of every bottleneck, before the
shortcut addition (Fig. 3 of the paper). The backbone is archcost's ``resnet50`` /
``resnet101`` (torchvision's v1.5 stride placement).
"""

import torch.nn as nn

from .registry import Accuracy, Paper, register_model
from .resnet import Bottleneck, ResNet

PAPER = Paper("Squeeze-and-Excitation Networks", "Hu, Shen, Sun", 2017, "https://arxiv.org/abs/1709.01507")


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(channels // reduction, channels)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        w = self.avgpool(x).flatten(1)
        w = self.sigmoid(self.fc2(self.relu(self.fc1(w))))
        return x * w[:, :, None, None]


class SEBottleneck(Bottleneck):
    def __init__(self, inplanes, planes, stride=1, downsample=None, reduction=16, **kwargs):
        super().__init__(inplanes, planes, stride, downsample, **kwargs)
        self.se = SqueezeExcite(planes * self.expansion, reduction)

    def residual(self, x):
        return self.se(super().residual(x))


_NOTE = ("SE gates (r=16) on torchvision's ResNet (v1.5 strides). The paper's {g} GFLOPs are for "
         "ResNet v1 (stride in the first 1x1); its SE overhead is the same: GAP + two FC per block.")


@register_model(
    family="senet", input_size=(3, 224, 224), paper=PAPER, depth=50,
    accuracy=Accuracy(76.71, 93.38, "ImageNet-1k val", "Hu et al., Table 2 (SE-ResNet-50, 23.29% / 6.62% error)"),
    note=_NOTE.format(g=3.87),
    published={"params_millions": 28.09, "gflops": 3.87, "source": "Hu et al., Table 2 / Table 7"},
)
def se_resnet50(num_classes: int = 1000, reduction: int = 16) -> nn.Module:
    return ResNet(SEBottleneck, (3, 4, 6, 3), num_classes, reduction=reduction)


@register_model(
    family="senet", input_size=(3, 224, 224), paper=PAPER, depth=101,
    accuracy=Accuracy(77.62, 93.93, "ImageNet-1k val", "Hu et al., Table 2 (SE-ResNet-101, 22.38% / 6.07% error)"),
    note=_NOTE.format(g=7.60),
    published={"params_millions": 49.33, "gflops": 7.60, "source": "Hu et al., Table 2 / Table 7"},
)
def se_resnet101(num_classes: int = 1000, reduction: int = 16) -> nn.Module:
    return ResNet(SEBottleneck, (3, 4, 23, 3), num_classes, reduction=reduction)
