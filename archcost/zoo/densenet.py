"""DenseNet-BC (Huang, Liu, van der Maaten, Weinberger, 2016), laid out as torchvision's.

Each dense layer is BN-ReLU-1x1 conv (4k maps)-BN-ReLU-3x3 conv (k maps) on the
concatenation of all earlier maps of its block; transitions halve the channels
(compression 0.5) and average-pool 2x2.
"""

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import Accuracy, Paper, register_model

PAPER = Paper("Densely Connected Convolutional Networks", "Huang, Liu, van der Maaten, Weinberger",
              2016, "https://arxiv.org/abs/1608.06993")


class DenseLayer(nn.Module):
    def __init__(self, in_ch, growth, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, bn_size * growth, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, kernel_size=3, padding=1, bias=False)

    def forward(self, features):
        x = torch.cat(features, 1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers, in_ch, growth, bn_size):
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(in_ch + i * growth, growth, bn_size)

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, in_ch, out_ch):
        super().__init__(OrderedDict(norm=nn.BatchNorm2d(in_ch), relu=nn.ReLU(inplace=True),
                                     conv=nn.Conv2d(in_ch, out_ch, 1, bias=False),
                                     pool=nn.AvgPool2d(2, stride=2)))


class DenseNet(nn.Module):
    def __init__(self, growth, block_config, init_features, bn_size=4, num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv0=nn.Conv2d(3, init_features, kernel_size=7, stride=2, padding=3, bias=False),
            norm0=nn.BatchNorm2d(init_features), relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(kernel_size=3, stride=2, padding=1)))
        ch = init_features
        for i, n in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(n, ch, growth, bn_size))
            ch += n * growth
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(ch, ch // 2))
                ch //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(ch))
        self.classifier = nn.Linear(ch, num_classes)

    def forward(self, x):
        x = F.relu(self.features(x), inplace=True)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


# name: (growth k, blocks, initial features, torchvision acc@1, acc@5, paper params millions)
_VARIANTS = {
    "densenet121": (32, (6, 12, 24, 16), 64, 74.434, 91.972, 8.0),
    "densenet161": (48, (6, 12, 36, 24), 96, 77.138, 93.560, 28.7),
    "densenet169": (32, (6, 12, 32, 32), 64, 75.600, 92.806, 14.1),
    "densenet201": (32, (6, 12, 48, 32), 64, 76.896, 93.370, 20.0),
}


def _register(name, growth, blocks, init, top1, top5, params_m):
    depth = int(name[len("densenet"):])

    @register_model(family="densenet", input_size=(3, 224, 224), paper=PAPER, depth=depth,
                    torchvision=True, name=name,
                    note=f"DenseNet-BC, k={growth}, blocks {blocks} (Table 1 of the paper; "
                         "densenet161 is the k=48 variant from the authors' release).",
                    accuracy=Accuracy(top1, top5, "ImageNet-1k val",
                                      f"torchvision DenseNet{depth}_Weights.IMAGENET1K_V1"),
                    published={"params_millions": params_m, "source": "Huang et al. / authors' model release"})
    def build(num_classes: int = 1000) -> nn.Module:
        return DenseNet(growth, blocks, init, num_classes=num_classes)

    build.__name__ = name
    return build


for _name, _v in _VARIANTS.items():
    globals()[_name] = _register(_name, *_v)
