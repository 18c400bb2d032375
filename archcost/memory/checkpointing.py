"""Activation checkpointing of chosen segments (Chen et al. 2016, "Training Deep Nets with
Sublinear Memory Cost"), applied for the duration of a measurement.

A segment is a module whose forward runs under ``torch.utils.checkpoint.checkpoint``
(non-reentrant): autograd keeps only the segment's inputs and recomputes its forward in
backward. ``SEGMENTS`` are fnmatch patterns on module names (``'layer?'``: ResNet's four
stages; ``'layer?.*'``: every block; ``'features.*'``: every VGG feature layer) or ``top``
(each child of the model). Only the outermost matching modules become segments: a match
inside a segment is already recomputed with it. What it saves and what it costs are then
measured, not modelled: ``train_peak_bytes`` by the step's live tensors, the recomputed
MACs as the extra MACs counted during backward.
"""

from __future__ import annotations

import contextlib
import fnmatch
from typing import List, Sequence

import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from archcost.count.engine import named_modules_unique
from archcost.errors import AnalysisError


def segments(model: nn.Module, patterns: Sequence[str]) -> List[str]:
    """The names of the outermost modules matching ``patterns`` ('top': the children)."""
    names = [n for n, _ in named_modules_unique(model) if n]
    chosen: List[str] = []
    for name in names:  # parents come before their children
        if any(name.startswith(c + ".") for c in chosen):
            continue
        top = "." not in name
        if any((p == "top" and top) or (p != "top" and fnmatch.fnmatchcase(name, p)) for p in patterns):
            chosen.append(name)
    if patterns and not chosen:
        examples = ", ".join(names[:4]) or "(no submodules)"
        raise AnalysisError(f"--checkpoint {' '.join(repr(p) for p in patterns)} matches no module; "
                            f"names look like {examples} (fnmatch patterns, or 'top' for each child)")
    return chosen


def frozen_args(args):
    """The arguments with each list copied: the recomputation runs on the arguments as they
    were at the call. DenseNet's dense layers get their block's list of features, which the
    block appends to afterwards; without the copy their recomputation would concatenate the
    later features too (and fail on the shapes)."""
    return tuple(list(a) if isinstance(a, list) else a for a in args)


@contextlib.contextmanager
def checkpointed(model: nn.Module, patterns: Sequence[str]):
    """Run the matching segments under non-reentrant checkpointing while inside the block."""
    if not patterns:
        yield []
        return
    modules = dict(named_modules_unique(model))
    chosen = segments(model, patterns)
    wrapped = []
    try:
        for name in chosen:
            mod = modules[name]
            original = mod.forward

            def forward(*args, _original=original, **kwargs):
                # RNG state is not restored for the recomputation (no memory difference;
                # meta tensors have no generator): dropout masks may differ on real tensors.
                return checkpoint(_original, *frozen_args(args), use_reentrant=False, preserve_rng_state=False,
                                  **kwargs)

            mod.forward = forward
            wrapped.append(mod)
        yield chosen
    finally:
        for mod in wrapped:
            del mod.forward  # the instance attribute; the class's forward shows again
