"""Model registry: ``register_model`` decorator, ``list_models``, ``get_model``.

A model is a builder function returning an ``nn.Module`` plus a :class:`ModelSpec`
with the facts about it (paper, default input size, published figures).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch.nn as nn


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str
    year: int
    url: str


@dataclass(frozen=True)
class Accuracy:
    """A published accuracy, stored with where it comes from (never measured here)."""

    top1: Optional[float]  # percent
    top5: Optional[float]  # percent
    dataset: str
    source: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    builder: Callable[..., nn.Module] = field(repr=False, compare=False)
    input_size: Tuple[int, int, int]  # C, H, W
    paper: Paper
    depth: int  # weight layers, as the paper counts them
    accuracy: Accuracy
    torchvision: bool = False  # same network as torchvision's model of this name
    note: str = ""  # where our network deviates from the paper, and why
    published: Dict[str, object] = field(default_factory=dict, compare=False)

    def as_row(self) -> dict:
        c, h, w = self.input_size
        return {
            "name": self.name,
            "family": self.family,
            "input_size": f"{c}x{h}x{w}",
            "depth": self.depth,
            "paper": self.paper.title,
            "year": self.paper.year,
            "url": self.paper.url,
            "top1": self.accuracy.top1,
            "top5": self.accuracy.top5,
            "accuracy_dataset": self.accuracy.dataset,
            "accuracy_source": self.accuracy.source,
            "torchvision": self.torchvision,
            "note": self.note,
        }


_REGISTRY: Dict[str, ModelSpec] = {}


def register_model(*, family: str, input_size: Tuple[int, int, int], paper: Paper, depth: int,
                   accuracy: Accuracy, torchvision: bool = False, note: str = "",
                   published: Optional[dict] = None, name: Optional[str] = None):
    """Decorator registering a builder under its function name (or ``name``)."""

    def wrap(builder: Callable[..., nn.Module]):
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        _REGISTRY[key] = ModelSpec(key, family, builder, tuple(input_size), paper, depth,
                                   accuracy, torchvision, note, dict(published or {}))
        return builder

    return wrap


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _load_zoo() -> None:
    from archcost import zoo  # noqa: F401  (importing the package registers the families)
    from archcost.plugins import load_entry_points

    load_entry_points()


def list_models(pattern: str = "*") -> List[str]:
    """Registered names matching a shell-style pattern or a family name, naturally sorted;
    case-insensitive (``VGG16``, ``ResNet*``)."""
    _load_zoo()
    exact = _canonical(pattern)
    if exact is not None:  # an exact name wins over a family of the same name
        return [exact]
    low = pattern.lower()
    names = [n for n, s in _REGISTRY.items()
             if fnmatch.fnmatchcase(n.lower(), low) or s.family.lower() == low]
    return sorted(names, key=_natural_key)


def families() -> List[str]:
    _load_zoo()
    return sorted({s.family for s in _REGISTRY.values()}, key=_natural_key)


def get_spec(name: str) -> ModelSpec:
    _load_zoo()
    key = _canonical(name)
    if key is None:
        raise KeyError(unknown_model_message(name))
    return _REGISTRY[key]


def _canonical(name: str) -> Optional[str]:
    """The registered spelling of ``name``, matched exactly or else ignoring case."""
    if name in _REGISTRY:
        return name
    return next((n for n in _REGISTRY if n.lower() == str(name).lower()), None)


def unknown_model_message(name: str) -> str:
    _load_zoo()
    close = difflib.get_close_matches(str(name).lower(), list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see `archcost list`"
    if str(name).endswith(".py"):  # a file without its builder
        hint = f"a model file needs the function that builds the model: {name}:build (file.py:builder)"
    return f"unknown model {name!r}: {hint}"


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model (random weights; nothing is downloaded)."""
    return get_spec(name).builder(**kwargs)
