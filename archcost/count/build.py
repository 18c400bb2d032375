"""Building a model on a device: on meta first (no weights, no initialisation, the shape
shortcuts of ``shapes.py``), on CPU with its own seeded initialisation when the builder
needs tensor values; and the model the memory and timing passes run."""

from __future__ import annotations

import itertools
from typing import Tuple

import torch
import torch.nn as nn

SEED = 0  # weights (the builder's own initialisation) and inputs of every real-tensor run

# Errors that mean "the forward (or the builder) needs tensor values", which meta has not.

def build_model(builder, device, dtype) -> Tuple[nn.Module, str]:
    """The model in eval mode, and a note ('' when nothing is worth saying).

    ``meta``: built under ``torch.device("meta")`` (no weights, no initialisation). A
    builder that computes with tensor values while constructing (torchvision's RegNet
    derives its widths with ``.tolist()``) is built on CPU instead, with its own
    initialisation (seed ``SEED``), and moved to meta. Other devices: the builder's own
    initialisation, seed ``SEED``, the global random state left as it was."""
    from archcost.zoo.custom import check_module

    note = ""
    model = None
    if device == "meta":
        from archcost.count.shapes import MetaShortcuts

        try:
            with torch.device("meta"), MetaShortcuts():  # weight init: no values to draw
                model = builder()
        except Exception as exc:  # retried on CPU below; a real error raises there again
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            note = (f"built on CPU (the builder needs tensor values: {first}), its own "
                    f"initialisation, seed {SEED}")
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = builder()
    model = split_built(model)[0]
    check_module(model)
    return model.to(device=device, dtype=dtype).eval(), note


def split_built(out):
    """A builder returns a module, or ``(module, example_inputs)``: -> (module, inputs or None).
    ``example_inputs`` is what the forward takes: a tuple or list of its positional arguments,
    or one argument (a tensor, a dict of tensors)."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], nn.Module):
        model, examples = out
        return model, tuple(examples) if isinstance(examples, (tuple, list)) else (examples,)
    return out, None


def built_with_examples(builder):
    """Build on CPU (the builder's own initialisation, seed ``SEED``): (model, example
    inputs or None) -- for a builder that returns its example inputs with the model."""
    from archcost.zoo.custom import check_module

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model, examples = split_built(builder())
    check_module(model)
    return model.eval(), examples

def build(builder, device, dtype):
    return build_model(builder, device, dtype)[0]

def device_of(model):
    return next((t.device for t in itertools.chain(model.parameters(), model.buffers())),
                torch.device("cpu")).type

def runner_model(builder, module, meta_model, device, dtype, channels_last):
    """The model the memory and latency passes run: the user's module, the counted model
    when it can be reused (``meta_model``), else a new one with storage on ``device``
    (values uninitialized: neither memory nor time depends on them; BatchNorm statistics
    are set to 1)."""
    if module is not None:
        model = module
    elif meta_model is not None:
        model = meta_model
    else:
        model = build(builder, "meta", dtype)
        if device != "meta":
            model = model.to_empty(device=device)
            for b in model.buffers():
                b.fill_(1.0 if b.is_floating_point() else 0)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
