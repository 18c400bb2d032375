"""One analysis pass per (model, input): parameters, MACs and activations per module.

The pass runs the model once on shape-only ``meta`` tensors (a model built by archcost
never gets real weights) under a TorchFunctionMode that applies the MAC rules of
``ops.py`` to every functional call, while forward hooks record each module's output.
``engine="fvcore"`` instead traces a real-tensor copy with ``fvcore.nn.FlopCountAnalysis``
(the same counts, slower); the tests assert both agree on every zoo model.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from . import ops, shapes
from .storage import StorageTracker

# Closed-form meta shapes for common ops (see shapes.py); tests turn it off to compare.
USE_SHORTCUTS = True


class AnalysisError(ValueError):
    """A problem with the model or its input, phrased for the user (one line)."""


@dataclass
class LayerRecord:
    layer: str
    type: str
    depth: int
    is_leaf: bool
    params: int  # in this module's subtree, each parameter once
    self_params: int = 0  # owned directly (not by a child module)
    order: int = -1  # position of the first call; -1 when never called
    calls: int = 0
    macs: int = 0  # in this module's calls, children included (fvcore's by_module)
    self_macs: int = 0  # in this module's own forward code, outside any child module
    output_shape: str = ""
    activations: int = 0
    activation_bytes: int = 0
    aliased: bool = False  # output reuses an earlier tensor's memory (in-place op, view)


@dataclass
class PassResult:
    records: Dict[str, LayerRecord]
    macs: int
    activations: int
    activation_bytes: int
    macs_by_op: Counter
    uncounted: Counter
    output: object = field(default=None, repr=False)


def _tensors(obj) -> List[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return []


def _shape_str(ts: Sequence[torch.Tensor]) -> str:
    return ",".join("x".join(str(d) for d in t.shape) or "scalar" for t in ts)


class _CountingMode(TorchFunctionMode):
    def __init__(self, stack: List[str], records: Dict[str, LayerRecord]):
        super().__init__()
        self.stack, self.records = stack, records
        self.total = 0
        self.by_op: Counter = Counter()
        self.uncounted: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        raw = getattr(func, "__name__", "")
        out = shapes.shortcut(raw, args, kwargs) if USE_SHORTCUTS else None
        if out is None:
            out = func(*args, **kwargs)
        name = ops.op_name(func)
        if name in ops.NO_COST or not ops.is_tensor_result(out):
            return out
        rule = ops.RULES.get(raw) or ops.RULES.get(name)
        first = out if isinstance(out, torch.Tensor) else _tensors(out)[0]
        macs = rule(args, kwargs, first) if rule else None
        if macs is None:
            self.uncounted[name] += 1
            return out
        macs = int(macs)
        self.total += macs
        self.by_op[name] += macs
        for scope in self.stack:
            self.records[scope].macs += macs
        if self.stack:
            self.records[self.stack[-1]].self_macs += macs
        return out


def named_modules_unique(model: nn.Module):
    seen = set()
    for name, mod in model.named_modules():
        if id(mod) not in seen:
            seen.add(id(mod))
            yield name, mod


def module_records(model: nn.Module) -> Dict[str, LayerRecord]:
    records = {}
    for name, mod in named_modules_unique(model):
        params = sum(p.numel() for p in {id(p): p for p in mod.parameters()}.values())
        own = sum(p.numel() for p in mod.parameters(recurse=False))
        is_leaf = next(mod.children(), None) is None
        depth = 0 if name == "" else name.count(".") + 1
        records[name] = LayerRecord(name or "(model)", type(mod).__name__, depth, is_leaf, params, own)
    return records


@contextlib.contextmanager
def module_hooks(model: nn.Module, on_enter, on_exit, leaves_only: bool = False):
    """Call ``on_enter(name, args)`` before and ``on_exit(name, out)`` after every module's
    forward (each module once, by its first name; only leaves with ``leaves_only``);
    the hooks are removed on exit. The callbacks' return values are dropped: a hook that
    returned something would replace the module's input or output."""
    handles = []

    def pre(name):
        def hook(mod, args):
            on_enter(name, args)
        return hook

    def post(name):
        def hook(mod, args, out):
            on_exit(name, out)
        return hook

    try:
        for name, mod in named_modules_unique(model):
            if leaves_only and (not name or next(mod.children(), None) is not None):
                continue
            handles.append(mod.register_forward_pre_hook(pre(name)))
            handles.append(mod.register_forward_hook(post(name)))
        yield
    finally:
        for h in handles:
            h.remove()


def _hooks(model, records, stack, tracker, totals, counter):
    def enter(name, args):
        stack.append(name)

    def leave(name, out):
        stack.pop()
        rec = records[name]
        outs = _tensors(out)
        if rec.calls == 0:
            rec.order = counter[0]
            counter[0] += 1
            rec.output_shape = _shape_str(outs)
            rec.aliased = bool(outs) and all(tracker.seen(t) for t in outs)
        rec.calls += 1
        for t in outs:
            rec.activations += t.numel()
            rec.activation_bytes += t.numel() * t.element_size()
            new = tracker.add(t)
            if new and rec.is_leaf:
                totals[0] += t.numel()
                totals[1] += t.numel() * t.element_size()

    return module_hooks(model, enter, leave)


def _pass_state(model, inputs):
    """Per-module records, the module stack, a storage tracker that already knows the
    inputs (they are not activations), and the [elements, bytes] activation totals."""
    tracker = StorageTracker()
    for t in inputs:
        tracker.add(t)
    return module_records(model), [], tracker, [0, 0]


def run_pass(model: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> PassResult:
    """Run ``model(*inputs)`` once under counting; the model's mode is left as it was."""
    records, stack, tracker, totals = _pass_state(model, inputs)
    mode = _CountingMode(stack, records)
    with _hooks(model, records, stack, tracker, totals, [0]), torch.no_grad():
        try:
            with mode:
                out = model(*inputs)
        except Exception as exc:  # name the layer where it failed
            where = stack[-1] if stack else ""
            raise LayerFailure(where, records.get(where), exc) from exc
    _roll_up_uncalled(records)
    return PassResult(records, mode.total, totals[0], totals[1], mode.by_op, mode.uncounted, out)


def _children(records, name):
    prefix = name + "." if name else ""
    return [r for n, r in records.items()
            if n != name and n.startswith(prefix) and "." not in n[len(prefix):]]


def _roll_up_uncalled(records):
    """A container that is never called itself (a ModuleList) still holds its children's
    MACs, as in fvcore's by_module (scopes nest by name)."""
    for name in sorted(records, key=lambda n: -n.count(".") if n else 1):
        rec = records[name]
        if rec.calls == 0 and not rec.is_leaf:
            rec.macs = sum(c.macs for c in _children(records, name))


class LayerFailure(Exception):
    def __init__(self, name, record, exc):
        self.name = name or "(model)"
        self.type = record.type if record else ""
        self.exc = exc
        super().__init__(f"{self.name} ({self.type}): {exc}")


def run_fvcore(model: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> PassResult:
    """The same pass, with MACs from fvcore's JIT trace (real tensors needed)."""
    from fvcore.nn import FlopCountAnalysis

    records, stack, tracker, totals = _pass_state(model, inputs)
    fca = FlopCountAnalysis(model, inputs if len(inputs) != 1 else inputs[0])
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    with _hooks(model, records, stack, tracker, totals, [0]), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            by_module = fca.by_module()
        except Exception as exc:
            where = stack[-1] if stack else ""
            raise LayerFailure(where, records.get(where), exc) from exc
        by_op = Counter({k: int(v) for k, v in fca.by_operator().items()})
        uncounted = Counter({k.replace("aten::", ""): v for k, v in fca.unsupported_ops().items()})
    aliases = {name: name for name, _ in named_modules_unique(model)}
    for name, rec in records.items():
        key = "" if rec.layer == "(model)" else name
        rec.macs = int(by_module.get(aliases.get(key, key), 0))
    for name, rec in records.items():  # own = inclusive minus the direct children's
        rec.self_macs = rec.macs - sum(c.macs for c in _children(records, name))
    return PassResult(records, int(fca.total()), totals[0], totals[1], by_op, uncounted)
