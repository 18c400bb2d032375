"""One input-size rule for every model (stated in ``--input-size --help``):

- ``CxHxW`` is exactly that image;
- ``N`` is a square N x N image with the model's input channels: a zoo model's are its
  paper's; for your own model, the ``in_channels`` of its first convolution (a first
  ``Conv1d`` makes ``N`` a length, ``Conv3d`` a cube); a model without convolutions
  takes ``N`` as a vector of N features;
- a model whose first convolution is a ``Conv2d`` takes nothing else (``3x2`` would be
  read by PyTorch as one unbatched 1-channel 3x2 image, so it is refused); other models
  take the dimensions as given (``16x100`` for a ``Conv1d``'s channels x length). With
  several inputs, the first convolution's rule reads the first; the others are as given.
"""

from typing import Optional, Tuple

import torch.nn as nn

from .engine import AnalysisError


def first_conv(model: nn.Module) -> Optional[Tuple[int, int]]:
    """(in_channels, spatial dims) of the first convolution in module order, or None."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels, len(m.kernel_size)
    return None


def image_layout(name, size, conv, example="224x224") -> Tuple[int, ...]:
    """One per-sample size (no batch) read by the rule above; ``conv`` from :func:`first_conv`."""
    if conv is None:
        return tuple(size)
    channels, spatial = conv
    if len(size) == 1:
        return (channels,) + (size[0],) * spatial
    if spatial == 2 and len(size) != 3:
        raise AnalysisError(f"input size {'x'.join(map(str, size))} for {name}: give N (a square N x N image "
                            f"with its {channels} channels) or CxHxW, e.g. {channels}x{example}")
    return tuple(size)


def needs_model(input_size) -> bool:
    """Whether reading ``input_size`` needs the model (anything but explicit CxHxW shapes)."""
    if input_size is None:
        return False
    if isinstance(input_size, int):
        return True
    sizes = input_size if len(input_size) and all(isinstance(s, (tuple, list)) for s in input_size) else [input_size]
    return any(len(s) != 3 for s in sizes)
