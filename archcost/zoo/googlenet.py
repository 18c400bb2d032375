"""GoogLeNet / Inception v1 (Szegedy et al., 2014).

``googlenet`` is torchvision's network: conv + batch norm everywhere, and a 3x3 conv in
the branch the paper gives as 5x5. ``googlenet_paper`` follows Table 1 of the paper:
true 5x5 branches, LRN in the stem, biases and no batch norm, and the two auxiliary
classifiers of Sec. 5 (on when built with ``aux_logits=True`` and in train mode).
"""

from collections import namedtuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import Accuracy, Paper, register_model

PAPER = Paper("Going Deeper with Convolutions", "Szegedy et al.", 2014,
              "https://arxiv.org/abs/1409.4842")

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) per inception module.
TABLE1 = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def inception_out_channels(name):
    c1, _, c3, _, c5, pp = TABLE1[name]
    return c1 + c3 + c5 + pp


class BasicConv2d(nn.Module):
    """torchvision's conv (no bias) + batch norm (eps 1e-3) + ReLU."""

    def __init__(self, in_ch, out_ch, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class ConvReLU(nn.Module):
    """The paper's conv: bias, ReLU, no normalization."""

    def __init__(self, in_ch, out_ch, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, **kwargs)

    def forward(self, x):
        return F.relu(self.conv(x), inplace=True)


class Inception(nn.Module):
    def __init__(self, in_ch, widths, conv=BasicConv2d, wide_kernel=3):
        super().__init__()
        c1, r3, c3, r5, c5, pp = widths
        self.branch1 = conv(in_ch, c1, kernel_size=1)
        self.branch2 = nn.Sequential(conv(in_ch, r3, kernel_size=1),
                                     conv(r3, c3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(conv(in_ch, r5, kernel_size=1),
                                     conv(r5, c5, kernel_size=wide_kernel, padding=wide_kernel // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     conv(in_ch, pp, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Sec. 5: 5x5/3 average pool (4x4 maps at 14x14), 128 1x1 convs, FC-1024, 70% dropout, FC."""

    def __init__(self, in_ch, num_classes, conv=BasicConv2d, dropout=0.7, paper_pool=False):
        super().__init__()
        # torchvision pools adaptively to 4x4; the paper's 5x5/3 pool gives 4x4 at 14x14.
        self.pool = nn.AvgPool2d(5, stride=3) if paper_pool else None
        self.conv = conv(in_ch, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x):
        x = self.pool(x) if self.pool is not None else F.adaptive_avg_pool2d(x, (4, 4))
        x = self.conv(x)
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)
        return self.fc2(self.dropout(x))


class GoogLeNet(nn.Module):
    """Module names follow torchvision (conv1..conv3, inception3a.., aux1/aux2, fc)."""

    def __init__(self, num_classes=1000, aux_logits=False, transform_input=False,
                 conv=BasicConv2d, wide_kernel=3, lrn=False, dropout=0.2, dropout_aux=0.7):
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.conv1 = conv(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # The paper's stem has local response normalization after the first pool and
        # after conv3 (Fig. 3); torchvision dropped it for batch norm.
        self.lrn1 = nn.LocalResponseNorm(5, alpha=1e-4 * 5, beta=0.75) if lrn else None
        self.conv2 = conv(64, 64, kernel_size=1)
        self.conv3 = conv(64, 192, kernel_size=3, padding=1)
        self.lrn2 = nn.LocalResponseNorm(5, alpha=1e-4 * 5, beta=0.75) if lrn else None
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        chans = 192
        for stage in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
            setattr(self, "inception" + stage, Inception(chans, TABLE1[stage], conv, wide_kernel))
            chans = inception_out_channels(stage)
            if stage == "3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            if stage == "4e":
                # torchvision: 2x2/2; the paper's Table 1 lists 3x3/2. Both give 7x7 from 14x14.
                self.maxpool4 = (nn.MaxPool2d(3, stride=2, ceil_mode=True) if lrn
                                 else nn.MaxPool2d(2, stride=2, ceil_mode=True))
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, conv, dropout_aux, paper_pool=lrn)
            self.aux2 = InceptionAux(528, num_classes, conv, dropout_aux, paper_pool=lrn)
        else:
            self.aux1 = None
            self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

    def _transform_input(self, x):
        # torchvision's ImageNet weights expect inputs re-normalized from (0.5, 0.5) stats.
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        chans = [x[:, i:i + 1] * (std[i] / 0.5) + (mean[i] - 0.5) / 0.5 for i in range(3)]
        return torch.cat(chans, 1)

    def forward(self, x):
        if self.transform_input:
            x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))
        if self.lrn1 is not None:
            x = self.lrn1(x)
        x = self.conv3(self.conv2(x))
        if self.lrn2 is not None:
            x = self.lrn2(x)
        x = self.maxpool2(x)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.avgpool(self.inception5b(self.inception5a(x)))
        x = self.fc(self.dropout(torch.flatten(x, 1)))
        if aux1 is not None or aux2 is not None:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


@register_model(
    family="googlenet", input_size=(3, 224, 224), paper=PAPER, depth=22, torchvision=True,
    accuracy=Accuracy(69.778, 89.530, "ImageNet-1k val", "torchvision GoogLeNet_Weights.IMAGENET1K_V1"),
    note="torchvision's inference network (aux heads off; aux_logits=True adds them, as in its "
         "checkpoint). Deviates from the paper: batch norm after every conv, no LRN, a 3x3 conv "
         "where Table 1 has the 5x5 branch, 2x2 maxpool4. googlenet_paper is the paper's network.",
    published={"params": 6624904, "gmacs": 1.498, "source": "torchvision weights metadata"},
)
def googlenet(num_classes: int = 1000, aux_logits: bool = False, transform_input: bool = False) -> nn.Module:
    return GoogLeNet(num_classes, aux_logits=aux_logits, transform_input=transform_input)


@register_model(
    family="googlenet", input_size=(3, 224, 224), paper=PAPER, depth=22,
    accuracy=Accuracy(None, 89.93, "ILSVRC-2014 val", "Szegedy et al. 2014, Table 3 (1 model, 1 crop: 10.07% top-5 error)"),
    note="Table 1 as printed: true 5x5 branches, biases, LRN in the stem, no batch norm; aux "
         "classifiers of Sec. 5 included (active in train mode only). Table 1's conv1 row "
         "(2.7K params, 34M ops) is not consistent with a 7x7x3x64 conv (9.4K, 118M).",
    published={"params_k": {"conv2": 112, "3a": 159, "3b": 380, "4a": 364, "4b": 437, "4c": 463,
                            "4d": 580, "4e": 840, "5a": 1072, "5b": 1388, "linear": 1000},
               "ops_m": {"conv2": 360, "3a": 128, "3b": 304, "4a": 73, "4b": 88, "4c": 100,
                         "4d": 119, "4e": 170, "5a": 54, "5b": 71, "linear": 1},
               "source": "Szegedy et al. 2014, Table 1 (weights only; K = 1024)"},
)
def googlenet_paper(num_classes: int = 1000, aux_logits: bool = True) -> nn.Module:
    return GoogLeNet(num_classes, aux_logits=aux_logits, conv=ConvReLU, wide_kernel=5, lrn=True,
                     dropout=0.4)
