"""``archcost reproduce``: the papers' and lectures' claims as experiments, measured.
Imports analysis/, roofline/ and everything below them."""

from .claims import (CLAIM_COLUMNS, EXPERIMENTS, EXTRA_COLUMNS, NAMES, ROW_COLUMNS, aux_classifiers,  # noqa: F401
                     bottleneck, claims, dense_connectivity, depthwise_separable, gap_vs_fc, grouped_conv,
                     resnet_bottleneck, run, se_overhead, stacked_3x3)
