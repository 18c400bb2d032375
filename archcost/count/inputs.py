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
- a text model (``hf:gpt2``) takes token ids: ``N`` (or ``--seq-len N``) is N tokens.
"""

import contextlib
from typing import Optional, Tuple

from archcost.conditions import InputSize

import torch
import torch.nn as nn

from archcost.count.limits import check_shapes
from archcost.errors import AnalysisError
from archcost.count.build import SEED, device_of
from archcost.zoo.sources import SeqLen, token_shapes


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
    if isinstance(input_size, SeqLen):
        input_size = input_size.other
    if input_size is None:
        return False
    if isinstance(input_size, int):
        return True
    sizes = input_size if len(input_size) and all(isinstance(s, (tuple, list)) for s in input_size) else [input_size]
    return any(len(s) != 3 for s in sizes)


def input_shapes(input_size: InputSize, default: Optional[Tuple[int, ...]], batch_size: int, conv=None,
                 name="the model", model=None):
    """Resolve the user's input size(s) to full shapes with the batch dimension (the rule:
    ``inputs.py``; ``conv``: a custom model's first convolution, from ``first_conv``, or
    found in ``model``: the module, or a callable building it, asked only when the rule
    needs it). A text model's default (a ``TokenInput``) gives its token ids instead, N
    being N tokens; a ``SeqLen`` (``--seq-len``) is read by text and image models apart."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AnalysisError(f"batch size must be a positive integer, got {batch_size!r}")
    tokens, input_size = token_shapes(input_size, default, batch_size)
    if tokens is not None:
        return tokens
    if conv is None and default is None and model is not None and needs_model(input_size):
        conv = first_conv(model if isinstance(model, nn.Module) else model())
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AnalysisError(f"batch size must be a positive integer, got {batch_size!r}")
    if input_size is None:
        if default is None:
            raise AnalysisError("input size is required for a model outside the zoo "
                                "(e.g. --input-size 3x224x224)")
        sizes = [tuple(default)]
    elif isinstance(input_size, int):
        sizes = [(input_size,)]
    elif len(input_size) and all(isinstance(s, (tuple, list)) for s in input_size):
        sizes = [tuple(s) for s in input_size]
    else:
        sizes = [tuple(input_size)]
    shapes = []
    for i, s in enumerate(sizes):
        if not s or any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in s):
            raise AnalysisError(f"input size {s!r} must be positive integers (N or CxHxW)")
        if input_size is not None and (default is not None or i == 0):  # a first conv reads the first input
            s = image_layout(name, s, (default[0], len(default) - 1) if default is not None else conv,
                             "x".join(map(str, default[1:])) if default is not None else "224x224")
        shapes.append((batch_size,) + tuple(s))
    check_shapes(shapes)
    return shapes

def make_inputs(shapes, device, dtype, channels_last=False):
    """One input per shape (batch included), or the user's example inputs converted:
    tensors anywhere inside dicts, lists and tuples (a forward taking ``batch = {"ids": ...,
    "mask": ...}``) are moved to ``device``, floating ones cast to ``dtype``, integer ones
    keep their dtype (token ids); other values are passed as they are. Real tensors made from
    a shape hold ``torch.randn`` values from a generator seeded with ``SEED`` (a
    data-dependent forward then takes the same branch every run); meta tensors hold none."""
    gen = torch.Generator().manual_seed(SEED)

    def one(s):
        if isinstance(s, tuple) and all(type(d) is int for d in s) and s:
            t = (torch.empty(s, device="meta", dtype=dtype) if device == "meta"
                 else torch.randn(s, generator=gen, dtype=dtype).to(device))
            return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t
        return convert(s, device, dtype, channels_last)

    return tuple(one(s) for s in shapes)


def convert(obj, device, dtype=None, channels_last=False):
    """``obj`` with every tensor inside it (dicts, lists, tuples, nested) on ``device``
    (shape-only on meta); floating tensors cast to ``dtype`` when given."""
    if isinstance(obj, torch.Tensor):
        cast = dtype if dtype is not None and obj.is_floating_point() else obj.dtype
        t = (torch.empty(obj.shape, dtype=cast, device="meta") if torch.device(device).type == "meta"
             else obj.to(device=device, dtype=cast))
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t
    if isinstance(obj, dict):
        return type(obj)((k, convert(v, device, dtype, channels_last)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        items = [convert(v, device, dtype, channels_last) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return obj


def tensors_in(obj):
    """The tensors inside ``obj`` (dicts, lists, tuples, nested), in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in tensors_in(o)]
    return []


def has_examples(shapes) -> bool:
    """Whether the inputs are the user's example values (not shapes made into randn)."""
    return any(not (isinstance(s, tuple) and s and all(type(d) is int for d in s)) for s in shapes)


def describe_inputs(shapes) -> str:
    """What the input of a real-tensor run was, for the notes."""
    if not has_examples(shapes):
        return f"torch.randn, seed {SEED}"
    ts = [t for s in shapes for t in tensors_in(s)]
    kinds = sorted({str(t.dtype).replace("torch.", "") for t in ts})
    return "the example inputs given" + (f" ({', '.join(kinds)} tensors, their own values)" if kinds else "")

@contextlib.contextmanager
def keyword_inputs(model: nn.Module, kwargs: Optional[dict]):
    """Pass ``kwargs`` to every top-level call of ``model`` (tensors moved to the device of
    its first tensor argument, meta included), for the passes that call ``model(*inputs)``."""
    if not kwargs:
        yield
        return

    def hook(mod, args, kw):
        ref = next((a for a in args if isinstance(a, torch.Tensor)), None)
        device = ref.device if ref is not None else device_of(mod)
        return args, {**convert(dict(kwargs), device), **kw}

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()

def dims(s) -> Tuple[int, ...]:
    """The shape of an input given as a shape or as an example tensor; of a nested input
    (a dict, list or tuple of tensors), its first tensor's."""
    if isinstance(s, tuple) and all(type(d) is int for d in s):
        return s
    ts = tensors_in(s)
    return tuple(ts[0].shape) if ts else ()
