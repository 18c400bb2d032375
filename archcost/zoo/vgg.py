"""VGG (Simonyan & Zisserman, 2014): configurations A, B, D, E of Table 1, with and
without batch norm, laid out as torchvision's ``vgg*`` (``features``, 7x7 ``avgpool``,
``classifier``)."""

import torch.nn as nn

from .registry import Accuracy, Paper, register_model

PAPER = Paper("Very Deep Convolutional Networks for Large-Scale Image Recognition",
              "Simonyan, Zisserman", 2014, "https://arxiv.org/abs/1409.1556")

# Table 1 of the paper: numbers are 3x3 conv widths, "M" a 2x2/2 max pool.
CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, cfg, batch_norm=False, num_classes=1000, dropout=0.5):
        super().__init__()
        layers, in_ch = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(nn.Conv2d(in_ch, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_ch = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


# (name, cfg, depth, batch_norm, torchvision acc@1, acc@5, paper params in millions)
_VARIANTS = [
    ("vgg11", "A", 11, False, 69.020, 88.628, 133), ("vgg13", "B", 13, False, 69.928, 89.246, 133),
    ("vgg16", "D", 16, False, 71.592, 90.382, 138), ("vgg19", "E", 19, False, 72.376, 90.876, 144),
    ("vgg11_bn", "A", 11, True, 70.370, 89.810, 133), ("vgg13_bn", "B", 13, True, 71.586, 90.374, 133),
    ("vgg16_bn", "D", 16, True, 73.360, 91.516, 138), ("vgg19_bn", "E", 19, True, 74.218, 91.842, 144),
]


def _register(name, cfg, depth, bn, top1, top5, paper_m):
    weights = f"VGG{depth}{'_BN' if bn else ''}_Weights.IMAGENET1K_V1"
    note = (f"configuration {cfg} of Table 1" + (" with batch norm after every conv (not in the "
            "paper; torchvision's _bn variant)" if bn else "") + ". The 7x7 adaptive pool is a "
            "no-op at 224x224 that lets other sizes reach the FC layers.")

    @register_model(family="vgg", input_size=(3, 224, 224), paper=PAPER, depth=depth,
                    torchvision=True, name=name, note=note,
                    accuracy=Accuracy(top1, top5, "ImageNet-1k val", f"torchvision {weights}"),
                    published={"params_millions": paper_m, "source": "Simonyan & Zisserman, Table 2"})
    def build(num_classes: int = 1000) -> nn.Module:
        return VGG(CFGS[cfg], batch_norm=bn, num_classes=num_classes)

    build.__name__ = name
    return build


for _v in _VARIANTS:
    globals()[_v[0]] = _register(*_v)
