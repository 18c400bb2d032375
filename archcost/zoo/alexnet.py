"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) and ZFNet (Zeiler & Fergus, 2013).

``alexnet`` is torchvision's single-tower variant (64-192-384-256-256 maps, no LRN),
which follows Krizhevsky's "One weird trick" (2014) rather than the 2012 paper.
``alexnet_paper`` is the 2012 network: two GPU towers written as grouped
convolutions, local response normalization and 227x227 input.
"""

import torch.nn as nn

from .registry import Accuracy, Paper, register_model

ALEXNET_PAPER = Paper("ImageNet Classification with Deep Convolutional Neural Networks",
                      "Krizhevsky, Sutskever, Hinton", 2012,
                      "https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html")
ZFNET_PAPER = Paper("Visualizing and Understanding Convolutional Networks",
                    "Zeiler, Fergus", 2013, "https://arxiv.org/abs/1311.2901")


class AlexNet(nn.Module):
    """torchvision's layout: ``features``, ``avgpool`` (6x6), ``classifier``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def paper_lrn() -> nn.LocalResponseNorm:
    # Paper (Sec. 3.3): b = a / (k + alpha * sum a^2)^beta with k=2, n=5, alpha=1e-4,
    # beta=0.75. torch divides alpha by n, so torch's alpha is 5 * 1e-4.
    return nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)


class ConvNet8(nn.Module):
    """Five convolutions and three FC layers, the 2012/2013 ImageNet template.

    ``convs`` rows are (out_channels, kernel, stride, padding, groups, then
    "lrn"/"pool" markers applied after the ReLU in that order).
    """

    def __init__(self, convs, pool_padding, num_classes=1000, dropout=0.5):
        super().__init__()
        layers, in_ch = [], 3
        for out_ch, k, s, p, g, *after in convs:
            layers += [nn.Conv2d(in_ch, out_ch, k, stride=s, padding=p, groups=g),
                       nn.ReLU(inplace=True)]
            for op in after:
                layers.append(paper_lrn() if op == "lrn" else
                              nn.MaxPool2d(3, stride=2, padding=pool_padding.pop(0)))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(in_ch * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


@register_model(
    family="alexnet", input_size=(3, 224, 224), paper=ALEXNET_PAPER, depth=8, torchvision=True,
    accuracy=Accuracy(56.522, 79.066, "ImageNet-1k val", "torchvision AlexNet_Weights.IMAGENET1K_V1"),
    note="torchvision's one-tower AlexNet (64/192/384/256/256 maps, no LRN, 6x6 adaptive "
         "pool), after Krizhevsky's 'One weird trick' (2014); the 2012 network is alexnet_paper.",
    published={"params": 61100840, "gmacs": 0.714, "source": "torchvision weights metadata"},
)
def alexnet(num_classes: int = 1000) -> nn.Module:
    return AlexNet(num_classes)


@register_model(
    family="alexnet", input_size=(3, 227, 227), paper=ALEXNET_PAPER, depth=8,
    accuracy=Accuracy(62.5, 83.0, "ILSVRC-2010 test", "Krizhevsky et al. 2012, Table 1 (CNN: 37.5% / 17.0% error)"),
    note="The 2012 network: conv2, conv4, conv5 are grouped (groups=2) for the two GPU towers; "
         "LRN after conv1 and conv2, then overlapping 3x3/2 max pooling. 227x227 input: the "
         "paper's '224' gives 54x54, not 55x55, with an 11x11 stride-4 unpadded conv.",
    published={"params": 60965224, "source": "issue #3 / per-layer sum of the paper's shapes (paper text: '60 million')"},
)
def alexnet_paper(num_classes: int = 1000) -> nn.Module:
    return ConvNet8([(96, 11, 4, 0, 1, "lrn", "pool"), (256, 5, 1, 2, 2, "lrn", "pool"),
                     (384, 3, 1, 1, 1), (384, 3, 1, 1, 2), (256, 3, 1, 1, 2, "pool")],
                    pool_padding=[0, 0, 0], num_classes=num_classes)


@register_model(
    family="zfnet", input_size=(3, 224, 224), paper=ZFNET_PAPER, depth=8,
    accuracy=Accuracy(61.6, 83.5, "ILSVRC-2012 val", "Zeiler & Fergus 2013, Table 2 (1 convnet: 38.4% / 16.5% error)"),
    note="Fig. 3: 7x7 stride-2 conv1 (96 maps), 5x5 stride-2 conv2, contrast normalization "
         "(LRN here) after the first two layers. Pools 1 and 2 use padding 1 to give the "
         "figure's 55x55 and 13x13 maps; conv1 uses padding 1 for 110x110.",
)
def zfnet(num_classes: int = 1000) -> nn.Module:
    return ConvNet8([(96, 7, 2, 1, 1, "pool", "lrn"), (256, 5, 2, 0, 1, "pool", "lrn"),
                     (384, 3, 1, 1, 1), (384, 3, 1, 1, 1), (256, 3, 1, 1, 1, "pool")],
                    pool_padding=[1, 1, 0], num_classes=num_classes)
