"""One analysis pass per (model, input): parameters, MACs and activations per module.

The pass runs the model once (on shape-only ``meta`` tensors when it can: a model built by
archcost never gets real weights) under two modes:

- ``CountingMode``, a TorchDispatchMode, sees every ATen operator that runs, whatever
  wraps it (``nn.MultiheadAttention``'s functional forward, TorchScript, custom autograd
  functions, recurrent layers), and applies the MAC rules of ``ops.py`` to it;
- ``NamingMode``, a TorchFunctionMode, sees the functions a model's code calls
  (``F.conv2d``, ``x + y``) and names the ATen operators beneath each one after it, so
  that ``by_operator`` says ``linear`` rather than ``addmm``; for the few composites whose
  fvcore rule is not the sum of their parts (``ops.FUNCTION_RULES``) it counts the call
  whole and the operators beneath it not again.

Forward hooks keep the stack of running modules (each MAC goes to every module on it,
once, even when a module calls itself) and record each module's output.
``engine="fvcore"`` instead traces a real-tensor copy with ``fvcore.nn.FlopCountAnalysis``.
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

from archcost.count import rules as ops

from archcost.count.inputs import tensors_in as _tensors
from archcost.count.shapes import MetaShortcuts
from archcost.count.storage import StorageTracker


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
class OpRecord:
    """One ATen operator call (views excluded), in execution order."""

    module: str  # innermost module running ('' = the model's own forward code)
    op: str  # operator name as in by_operator
    macs: int  # 0 when the op has no MAC rule
    bytes_read: int  # its tensor operands, each distinct storage once
    bytes_written: int  # its outputs (an in-place op writes its input's storage: counted)
    inplace: bool  # an output's storage is an operand's


@dataclass
class PassResult:
    records: Dict[str, LayerRecord]
    macs: int
    activations: int
    activation_bytes: int
    macs_by_op: Counter
    uncounted: Counter
    output: object = field(default=None, repr=False)
    ops: List[OpRecord] = field(default_factory=list, repr=False)
    device_paths: List[str] = field(default_factory=list)  # ops whose kernel differs by device
    macs_by_aten: Counter = field(default_factory=Counter)  # by ATen op (function for FUNCTION_RULES)
    scripted: List[str] = field(default_factory=list)  # TorchScript modules, counted in their parent


def _shape_str(ts: Sequence[torch.Tensor]) -> str:
    return ",".join("x".join(str(d) for d in t.shape) or "scalar" for t in ts)


# Operators whose kernel (and so whose memory) differs between meta and a real device:
# fused attention on CPU/CUDA against meta's math decomposition, the fast paths of
# nn.MultiheadAttention / TransformerEncoderLayer, oneDNN's fused recurrent layers.
DEVICE_PATHS = frozenset({
    "scaled_dot_product_attention", "multi_head_attention_forward", "lstm", "gru", "rnn_tanh",
    "rnn_relu", "_native_multi_head_attention", "_transformer_encoder_layer_fwd", "mkldnn_rnn_layer",
    "_scaled_dot_product_flash_attention_for_cpu"})


ATTENTION = "scaled_dot_product_attention"


class _Frame:
    __slots__ = ("name", "suppress", "relabel", "macs", "uncounted")

    def __init__(self, name, suppress, relabel):
        self.name, self.suppress, self.relabel = name, suppress, relabel
        self.macs, self.uncounted = 0, False


# Cost-free operators that move no data either: creation without values, metadata, and the
# storage juggling below views. Views themselves are recognised by their schema.
_NO_TRAFFIC = frozenset("""
empty empty_like empty_strided new_empty new_empty_strided resize_ set_ _local_scalar_dense item sym_size
sym_stride sym_numel sym_storage_offset is_same_size _assert_async _assert_tensor_metadata record_stream
_has_compatible_shallow_copy_type lift_fresh detach_ _conj _neg_view _resolve_conj _resolve_neg
""".split())


def _moves_data(func, packet: str) -> bool:
    """Whether a cost-free ATen operator reads or writes tensor data (ReLU, cat, copies do;
    views, which return an alias of an input without writing it, and _NO_TRAFFIC do not)."""
    if packet in _NO_TRAFFIC:
        return False
    returns = func._schema.returns
    return not (returns and all(r.alias_info is not None and not r.alias_info.is_write for r in returns))


def _storage_bytes(tensors) -> Tuple[int, set]:
    total, keys = 0, set()
    for t in tensors:
        st = t.untyped_storage()
        k = st._cdata
        if k not in keys:
            keys.add(k)
            total += min(t.numel() * t.element_size(), st.nbytes())
    return total, keys


def _flat_tensors(args) -> List[torch.Tensor]:
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, torch.Tensor))
    return out


class CountingMode(MetaShortcuts):
    """Counts the MACs of every ATen operator that runs under it (``ops.ATEN_RULES``),
    attributed to the modules on ``stack`` (names of running modules, kept by hooks) and to
    an operator name; with ``record_ops``, one ``OpRecord`` per operator. On meta tensors
    the common ops run in closed form (``MetaShortcuts``)."""

    def __init__(self, stack: List[str], records: Dict[str, LayerRecord], record_ops: bool = False):
        super().__init__()
        self.stack, self.records, self.record_ops = stack, records, record_ops
        self.total = 0
        self.by_op: Counter = Counter()
        self.by_aten: Counter = Counter()  # MACs by ATen op (function name for FUNCTION_RULES)
        self.uncounted: Counter = Counter()
        self.ops: List[OpRecord] = []
        self.frames: List[_Frame] = []
        self.seen: set = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = self.call(func, args, kwargs)
        packet = func._overloadpacket.__name__
        if packet in ops.ATEN_NO_COST:
            if self.record_ops and _moves_data(func, packet):  # no MACs, but bytes (the roofline's)
                self._record(self._label(packet, args), 0, args, out)
            return out
        self.seen.add(packet)
        frame = self.frames[-1] if self.frames else None
        rule = ops.ATEN_RULES.get(packet)
        macs = rule(args, kwargs, out) if rule is not None and not (frame and frame.suppress) else None
        label = self._label(packet, args)
        if macs is None:
            if rule is None and frame is None:
                self.uncounted[label] += 1
            elif rule is None:
                frame.uncounted = True
            counted = 0
        else:
            counted = self.add(macs, label, packet)
            if frame is not None:
                frame.macs += counted
        if self.record_ops:
            self._record(label, counted, args, out)
        return out

    def _label(self, packet: str, args) -> str:
        """The operator name of an ATen call: the function around it (inside one that
        relabels, e.g. nn.MultiheadAttention's, by what the op is), else its own name."""
        frame = self.frames[-1] if self.frames else None
        if frame is None:
            return ops.aten_label(packet, args)
        if frame.relabel:
            return frame.relabel.get(packet) or ops.ATEN_LABELS.get(packet, frame.name)
        return frame.name

    def add(self, macs, label, aten=None) -> int:
        """Count ``macs`` (an int, or {operator: MACs} for a fused op) for the running modules."""
        parts = macs.items() if isinstance(macs, dict) else ((label, macs),)
        total = 0
        for name, m in parts:
            m = int(m)
            total += m
            self.by_op[name] += m
            self.by_aten[name if name == ATTENTION or not aten else aten] += m  # attention: its own row
        self.total += total
        for scope in dict.fromkeys(self.stack):  # a module calling itself counts once
            self.records[scope].macs += total
        if self.stack:
            self.records[self.stack[-1]].self_macs += total
        return total

    def _record(self, label, macs, args, out):
        read, keys = _storage_bytes(_flat_tensors(args))
        outs = _tensors(out)
        written, out_keys = _storage_bytes(outs)
        self.ops.append(OpRecord(self.stack[-1] if self.stack else "", label, macs, read, written,
                                 bool(out_keys & keys)))


# Calls that only read metadata or make views: no frame needed (nothing beneath has a cost).
_PASSTHROUGH = frozenset("""
size dim numel shape dtype device __get__ __set__ stride is_contiguous __len__ __iter__ __bool__
__format__ __repr__ __hash__ __contains__ item tolist data_ptr element_size storage_offset
is_floating_point requires_grad_ untyped_storage view view_as reshape reshape_as flatten unflatten
permute transpose t squeeze unsqueeze expand expand_as contiguous narrow select detach unbind chunk
split __getitem__ getitem _has_compatible_shallow_copy_type is_complex get_device __index__
__int__ __float__ dim_order __eq__ __ne__ movedim
""".split())


class NamingMode(TorchFunctionMode):
    """Names the ATen operators beneath each function call after the function (frames on
    ``counter``), and counts ``ops.FUNCTION_RULES`` composites whole."""

    def __init__(self, counter: CountingMode):
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        raw = getattr(func, "__name__", "")
        if raw in _PASSTHROUGH:
            return func(*args, **kwargs)
        name = ops.op_name(func)
        if name.startswith("_") and not name.startswith("__"):
            name = name.lstrip("_")
        rule = ops.FUNCTION_RULES.get(name)
        c = self.counter
        frame = _Frame(name, rule is not None, ops.RELABEL.get(name))
        start = len(c.ops)
        c.frames.append(frame)
        try:
            out = func(*args, **kwargs)
        finally:
            c.frames.pop()
        c.seen.add(name)
        if rule is not None and ops.is_tensor_result(out):
            macs = rule(args, kwargs, out)
            if macs is None:
                c.uncounted[name] += 1
            else:
                counted = c.add(macs, name)
                if c.record_ops and len(c.ops) > start:  # on the call's last operator
                    c.ops[-1].macs += counted
                elif c.record_ops:
                    c.ops.append(OpRecord(c.stack[-1] if c.stack else "", name, counted, 0, 0, False))
        elif frame.uncounted and not frame.macs and name not in ops.FUNCTION_NO_COST:
            c.uncounted[name] += 1
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
        kind = getattr(mod, "original_name", None) or type(mod).__name__  # a ScriptModule's class name
        records[name] = LayerRecord(name or "(model)", kind, depth, is_leaf, params, own)
    return records


def script_modules(model: nn.Module) -> List[str]:
    """Names of the outermost TorchScript modules: Python hooks cannot run on them or inside
    them, so their operators are counted (at the dispatch level) for the module around them."""
    found: List[str] = []
    for name, mod in named_modules_unique(model):
        if isinstance(mod, torch.jit.ScriptModule) and not within(name, found):
            found.append(name)
    return found


def within(name: str, roots: List[str]) -> bool:
    """Whether module ``name`` is one of ``roots`` or inside one ('' is the whole model)."""
    return any(r == "" or name == r or name.startswith(r + ".") for r in roots)


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

    scripted = script_modules(model)
    try:
        for name, mod in named_modules_unique(model):
            if leaves_only and (not name or next(mod.children(), None) is not None):
                continue
            if within(name, scripted):
                continue  # TorchScript takes no Python hooks
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
            n, size = int(t.numel()), int(t.element_size())  # ints, also under fvcore's JIT trace
            rec.activations += n
            rec.activation_bytes += n * size
            new = tracker.add(t)
            if new and rec.is_leaf:
                totals[0] += n
                totals[1] += n * size

    return module_hooks(model, enter, leave)


def _pass_state(model, inputs):
    """Per-module records, the module stack, a storage tracker that already knows the
    inputs (they are not activations), and the [elements, bytes] activation totals."""
    tracker = StorageTracker()
    for t in _tensors(list(inputs)):  # a None among the positional inputs is no storage
        tracker.add(t)
    return module_records(model), [], tracker, [0, 0]


def run_pass(model: nn.Module, inputs: Tuple[torch.Tensor, ...], kwargs: Optional[dict] = None,
             record_ops: bool = False, counter_cls=None) -> PassResult:
    """Run ``model(*inputs, **kwargs)`` once under counting (eval statistics as the model is
    set, no grad); the model's mode is left as it was. ``record_ops``: keep one ``OpRecord``
    per ATen operator in ``PassResult.ops``. ``counter_cls``: makes the counting mode from
    (stack, records, record_ops); ``CountingMode`` when None (the latency calibration's
    subclass also times each operator)."""
    records, stack, tracker, totals = _pass_state(model, _tensors(list(inputs)) + _tensors(kwargs or {}))
    if isinstance(model, torch.jit.ScriptModule):  # no hooks: the whole forward is the model's own
        stack.append("")
        records[""].calls, records[""].order = 1, 0
    counter = (counter_cls or CountingMode)(stack, records, record_ops)
    with _hooks(model, records, stack, tracker, totals, [0]), torch.no_grad():
        try:
            with counter, NamingMode(counter):
                out = model(*inputs, **(kwargs or {}))
        except Exception as exc:  # name the layer where it failed
            where = stack[-1] if stack else ""
            raise LayerFailure(where, records.get(where), exc) from exc
    _roll_up_uncalled(records)
    paths = sorted(counter.seen & DEVICE_PATHS)
    return PassResult(records, counter.total, totals[0], totals[1], counter.by_op, counter.uncounted, out,
                      counter.ops, paths, counter.by_aten, script_modules(model))


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
    """The same pass, with MACs from fvcore's JIT trace (real tensors needed), run as a user
    runs ``FlopCountAnalysis(model, inputs)``: in grad mode, so that attention takes the
    same (unfused) path as in training rather than the inference fast path."""
    from fvcore.nn import FlopCountAnalysis

    records, stack, tracker, totals = _pass_state(model, inputs)
    fca = FlopCountAnalysis(model, inputs if len(inputs) != 1 else inputs[0])
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    with _hooks(model, records, stack, tracker, totals, [0]), warnings.catch_warnings():
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
    return PassResult(records, int(fca.total()), totals[0], totals[1], by_op, uncounted, macs_by_aten=by_op)
