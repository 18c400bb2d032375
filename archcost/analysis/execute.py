"""Running the counting pass: on meta stand-ins first, then on real CPU tensors when the
builder or the forward needs values (and saying so), with one-line messages for inputs
that do not fit the network."""

from __future__ import annotations

import contextlib
import re
from typing import Optional

import torch
import torch.nn as nn

from archcost.count.engine import LayerFailure, run_fvcore, run_pass
from archcost.count.inputs import convert, describe_inputs, dims, keyword_inputs, make_inputs
from archcost.errors import AnalysisError
from archcost.zoo.restore import preserved
from archcost.count.build import SEED, build, build_model, device_of

_SHAPE_ERRORS = re.compile(r"too small|can't be greater|cannot be multiplied|size mismatch|"
                           r"expected input|channels|non-positive|must match the size|"
                           r"Expected .* dimension|shape .* is invalid", re.I)

_NEEDS_VALUES = re.compile(r"meta tensor|no data|cannot be converted to Scalar|data-independent|"
                           r"data-dependent|item\(\)", re.I)

def needs_values(exc: BaseException) -> bool:
    """Whether an error says the code read tensor values, which meta tensors have not."""
    return bool(_NEEDS_VALUES.search(str(exc)))

def _is_shape_error(exc) -> bool:
    return isinstance(exc, (RuntimeError, ValueError, IndexError, TypeError)) and bool(
        _SHAPE_ERRORS.search(str(exc)))

def _failure_message(name, failure: LayerFailure, shapes, smallest=None) -> str:
    msg = str(failure.exc).strip().splitlines()[0] if str(failure.exc).strip() else type(failure.exc).__name__
    shape = "x".join(str(d) for d in dims(shapes[0])[1:])
    text = f"{name} fails on input {shape} at layer {failure.name} ({failure.type}): {msg}"
    if smallest:
        text += f"; the smallest square input that works is {smallest}"
    elif re.search(r"takes \d+ positional arguments? but \d+ were given", msg) and len(shapes) > 1:
        text += f"; {len(shapes)} input sizes were given: give one --input-size per input the model takes"
    elif re.search(r"indices.*(Long|Int)|scalar type Long", msg):
        text += ("; the model takes integer inputs (token ids), which --input-size cannot give: use "
                 "archcost.analyze(model, inputs=[torch.randint(...)]) in Python")
    return text

def smallest_working_size(builder, channels, dtype, hi, lo=1) -> Optional[str]:
    """Binary search on meta tensors for the smallest square HxW the model accepts."""
    model = build(builder, "meta", dtype)

    def works(s):
        try:
            run_pass(model, make_inputs([(1, channels, s, s)], "meta", dtype))
            return True
        except LayerFailure:
            return False

    if not works(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if works(mid):
            hi = mid
        else:
            lo = mid + 1
    return f"{channels}x{hi}x{hi}"

def _fallback_note(failure: LayerFailure, shapes, weights: str = f"the builder's initialisation, seed {SEED}",
                   where: str = "CPU") -> str:
    msg = (str(failure.exc).strip().splitlines() or [type(failure.exc).__name__])[0]
    why = ("the forward reads tensor values, so the count depends on them" if needs_values(msg)
           else "the meta pass failed")
    return (f"counted on real {where} tensors: {why} (at {failure.name}: {msg}); weights: {weights}; "
            f"input: {describe_inputs(shapes)}")

@contextlib.contextmanager
def _on_meta(module: nn.Module):
    """The user's module with shape-only stand-ins for its weights and buffers (tied ones
    stay tied), put back as they were on leaving."""
    memo = {}

    def meta(t, param):
        if id(t) not in memo:
            m = torch.empty(t.shape, dtype=t.dtype, device="meta")
            memo[id(t)] = nn.Parameter(m, requires_grad=t.requires_grad) if param else m
        return memo[id(t)]

    with preserved(module):
        for m in module.modules():
            for slots, param in ((m._parameters, True), (m._buffers, False)):
                if isinstance(slots, dict):  # a ScriptModule's cannot be replaced: it fails on meta
                    for k, t in slots.items():
                        if t is not None:
                            slots[k] = meta(t, param)
        yield module

def run_counting(name, spec, builder, module, shapes, engine, dtype, kwargs=None, record_ops=False):
    """-> (PassResult, model, engine that ran, note)."""
    if module is not None:
        device = device_of(module)
        was_training = module.training
        module.eval()
        try:
            inputs = make_inputs(shapes, device, dtype)
            if engine == "fvcore":
                with keyword_inputs(module, kwargs):
                    return run_fvcore(module, inputs), module, "fvcore", ""
            note = ""
            if engine in ("auto", "meta") and device != "meta":
                # Counted on shape-only stand-ins first: fast, and it tells whether the forward
                # reads values (then it runs on the module's own weights, and says so).
                try:
                    with _on_meta(module):
                        res = run_pass(module, make_inputs(shapes, "meta", dtype), convert(kwargs, "meta"),
                                       record_ops=record_ops)
                    return res, module, "meta", ""
                except LayerFailure as f:
                    if engine == "meta" or _is_shape_error(f.exc):
                        raise
                    note = _fallback_note(f, shapes, "the module's own", device)
            return run_pass(module, inputs, convert(kwargs, device), record_ops=record_ops), module, device, note
        except LayerFailure as f:
            raise AnalysisError(_failure_message(name, f, shapes)) from None
        finally:
            module.train(was_training)
    try:
        note = ""
        if engine in ("auto", "meta"):
            model, note = build_model(builder, "meta", dtype)
            try:
                return run_pass(model, make_inputs(shapes, "meta", dtype), convert(kwargs, "meta"),
                                record_ops=record_ops), model, \
                    "meta", note
            except LayerFailure as f:
                if engine == "meta" or _is_shape_error(f.exc):
                    raise
                note = "; ".join(n for n in (note, _fallback_note(f, shapes)) if n)
        model, built = build_model(builder, "cpu", dtype)
        inputs = make_inputs(shapes, "cpu", dtype)
        if engine == "fvcore":
            with keyword_inputs(model, kwargs):
                return run_fvcore(model, inputs), model, "fvcore", built
        return run_pass(model, inputs, kwargs, record_ops=record_ops), model, "cpu", note or built
    except LayerFailure as f:
        smallest = None
        if _is_shape_error(f.exc) and len(shapes) == 1 and len(shapes[0]) == 4 and not kwargs:
            c, h, w = dims(shapes[0])[1:]
            default = spec.input_size[1] if spec else max(h, w)
            try:
                smallest = smallest_working_size(builder, c, dtype, max(default, h, w, 8))
            except Exception:
                smallest = None
        raise AnalysisError(_failure_message(name, f, shapes, smallest)) from None
