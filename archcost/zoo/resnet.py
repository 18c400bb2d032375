"""ResNet (He et al., 2015) and ResNeXt (Xie et al., 2016), laid out as torchvision's.

torchvision's ResNet is "v1.5": a downsampling bottleneck strides in its 3x3 conv, where
the paper strides in the first 1x1. Parameters are identical; MACs are higher
(4.11 G vs ~3.86 G for ResNet-50). ``stride_in_1x1=True`` builds the paper's v1.
"""

import torch.nn as nn

from .registry import Accuracy, Paper, register_model

PAPER = Paper("Deep Residual Learning for Image Recognition", "He, Zhang, Ren, Sun", 2015,
              "https://arxiv.org/abs/1512.03385")
RESNEXT_PAPER = Paper("Aggregated Residual Transformations for Deep Neural Networks",
                      "Xie, Girshick, Dollar, Tu, He", 2016, "https://arxiv.org/abs/1611.05431")


def conv3x3(cin, cout, stride=1, groups=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, **_):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x):
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def forward(self, x):
        out = self.residual(x)
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class Bottleneck(BasicBlock):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 stride_in_1x1=False):
        nn.Module.__init__(self)
        width = int(planes * (base_width / 64.0)) * groups
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, s1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, s3, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.bn3(self.conv3(x))


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, **block_kwargs):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stage = self._make_layer(block, planes, blocks, 1 if i == 0 else 2, block_kwargs)
            setattr(self, f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride, kwargs):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, **kwargs)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


_NOTE = ("torchvision's v1.5: a downsampling bottleneck strides in its 3x3 conv (the paper: "
         "in the first 1x1), which raises MACs over Table 1's figure, not params.")
# name: (block, layers, torchvision acc@1, acc@5, Table 1 FLOPs (multiply-adds) x1e9)
_VARIANTS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), 69.758, 89.078, 1.8),
    "resnet34": (BasicBlock, (3, 4, 6, 3), 73.314, 91.420, 3.6),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 76.130, 92.862, 3.8),
    "resnet101": (Bottleneck, (3, 4, 23, 3), 77.374, 93.546, 7.6),
    "resnet152": (Bottleneck, (3, 8, 36, 3), 78.312, 94.046, 11.3),
}


def _register(name, block, layers, top1, top5, gmacs):
    depth = int(name[len("resnet"):])

    @register_model(family="resnet", input_size=(3, 224, 224), paper=PAPER, depth=depth,
                    torchvision=True, name=name,
                    note=_NOTE if block is Bottleneck else "same as the paper's Table 1 (option B shortcuts).",
                    accuracy=Accuracy(top1, top5, "ImageNet-1k val",
                                      f"torchvision ResNet{depth}_Weights.IMAGENET1K_V1"),
                    published={"gmacs": gmacs, "source": "He et al. 2015, Table 1 (FLOPs = multiply-adds)"})
    def build(num_classes: int = 1000, stride_in_1x1: bool = False) -> nn.Module:
        kwargs = {"stride_in_1x1": True} if stride_in_1x1 else {}
        return ResNet(block, layers, num_classes, **kwargs)

    build.__name__ = name
    return build


for _name, _v in _VARIANTS.items():
    globals()[_name] = _register(_name, *_v)


@register_model(
    family="resnext", input_size=(3, 224, 224), paper=RESNEXT_PAPER, depth=50, torchvision=True,
    accuracy=Accuracy(77.618, 93.698, "ImageNet-1k val", "torchvision ResNeXt50_32X4D_Weights.IMAGENET1K_V1"),
    note="ResNet-50 with 32 groups of width 4 in every 3x3 conv (cardinality 32); torchvision's v1.5 stride placement.",
    published={"gmacs": 4.2, "params_millions": 25.0, "source": "Xie et al. 2016, Table 1"},
)
def resnext50_32x4d(num_classes: int = 1000) -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, groups=32, base_width=4)
