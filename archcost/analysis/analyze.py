"""``analyze(model_or_name, ...)``: the one entry point joining the passes into frames."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from archcost.analysis.execute import run_counting
from archcost.analysis.partition import mark_shared
from archcost.analysis.passes import add_latency, add_memory, add_train_latency
from archcost.analysis.result import Analysis, frames
from archcost.conditions import FIELDS, InputSize, RunConditions, unknown_keyword
from archcost.count.inputs import first_conv, input_shapes, keyword_inputs, make_inputs, needs_model
from archcost.errors import AnalysisError
from archcost.zoo.restore import restores_model
from archcost.count.build import build, built_with_examples, device_of, runner_model
from archcost.zoo.sources import resolve_model

class OutOfDeviceMemory(AnalysisError):
    """The model runs, but not at this batch size on this device."""


@restores_model
def analyze(model_or_name, input_size: InputSize = None, batch_size: int = 1,
            dtype: Union[str, torch.dtype] = torch.float32, engine: str = "auto",
            memory: bool = True, optimizer: str = "sgd", device: str = "cpu",
            channels_last: bool = False, amp: bool = False, latency: bool = False,
            layer_latency: bool = False, repeats: int = 20, warmup: int = 5, time_budget_s: Optional[float] = None,
            inputs: Optional[Sequence] = None, input_kwargs: Optional[dict] = None, record_ops: bool = False,
            train: bool = False, freeze: Sequence[str] = (), checkpoint: Sequence[str] = (),
            memory_on: str = "auto", conditions: Optional[RunConditions] = None, **builder_kwargs) -> Analysis:
    """Count parameters, MACs (one fused multiply-add = 1; flops = 2 x macs) and
    activations of a zoo model (by name), a ``file.py:builder`` / ``module:builder``
    reference, or an ``nn.Module`` (handed back bit for bit: mode, hooks, weights, buffers,
    dtype, device, memory format; see ``restore.py``).

    ``input_size``: N (square image; the rule: ``inputs.py``), (C, H, W), or a list of shapes;
    the batch dimension is added. Zoo models default to their paper's input size.

    ``memory``: also measure ``saved_bytes``, ``peak_bytes`` and ``train_bytes`` (with
    ``optimizer`` sgd|momentum|adam), see ``memory.py``. ``device`` (cpu|cuda) is where
    memory and latency are measured; on CPU without ``amp`` the memory passes run on
    shape-only meta tensors, which allocate exactly as CPU tensors do (tested).
    ``latency``: time the forward (``repeats`` after ``warmup``; with ``time_budget_s``, as many
    as fit in that many seconds, at least 3, at most ``repeats``: ``measure/timing.py``); ``layer_latency``: per
    leaf module too. ``amp``: run under ``torch.autocast(dtype)`` with float32 weights
    instead of casting the model to ``dtype``. ``channels_last``: NHWC memory format.
    ``train``: also measure one whole training step (``training.py``: ``train_peak_bytes``
    and its phase and breakdown) and its backward MACs (``backward.py``). ``freeze``:
    fnmatch patterns of parameter names to freeze (requires_grad off) for every pass; a
    user's module gets its flags back. ``checkpoint``: with ``train``, segments run under
    activation checkpointing (``checkpointing.py``). ``memory_on="meta"``: the memory passes
    on meta tensors only, without kernel scratch (``peak_scratch_bytes`` empty) and with
    attention and recurrent layers as meta's decomposition, said in ``memory_note`` (a zoo's
    fast path); "auto" (the default) as described above.

    ``inputs``: example positional inputs instead of ``input_size`` (tensors, whose shapes
    and integer dtypes are kept — on real tensors their values too —, or other values passed
    as they are); ``input_kwargs``: keyword inputs (a dict) passed to every forward.

    The ``notes`` column says when the count was not taken on meta tensors and why (a
    builder that needs tensor values, a forward that reads them: then the count may depend
    on the weights and input, which are seeded and stated).

    ``conditions``: a ``RunConditions`` instead of the keywords above (keywords given as well
    override its fields). Any other keyword goes to a named model's builder when the builder
    takes it; else it is a ``TypeError`` naming the closest keyword, as for any function.

    ``record_ops``: keep the engine's per-operator records in ``Analysis.ops`` (the roofline's bytes).
    """

    given = {k: v for k, v in locals().items() if k not in ("model_or_name", "conditions", "builder_kwargs")
             and v is not _DEFAULTS[k]}
    cond = dataclasses.replace(conditions or RunConditions(), **given)
    builder_kwargs = _builder_keywords(model_or_name, builder_kwargs)
    if cond.freeze and isinstance(model_or_name, nn.Module):
        from archcost.memory.training import frozen

        with frozen(model_or_name, cond.freeze):
            return analyze(model_or_name, conditions=dataclasses.replace(cond, freeze=()), **builder_kwargs)
    return _analyze(model_or_name, cond.checked(), builder_kwargs)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConditions)}


def _builder_keywords(model_or_name, kwargs: dict) -> dict:
    """Keywords beyond the conditions go to a named model's builder, when it takes them."""
    if not kwargs:
        return kwargs
    allowed = list(FIELDS) + ["conditions"]
    if isinstance(model_or_name, nn.Module):
        raise unknown_keyword(next(iter(kwargs)), allowed)
    if ":" in str(model_or_name):
        return kwargs  # a file's builder: its own signature speaks when it is called
    _, spec, _, _ = resolve_model(model_or_name, {})
    params = inspect.signature(spec.builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for k in kwargs:
            if k not in params:
                raise unknown_keyword(k, allowed + list(params))
    return kwargs


def _analyze(model_or_name, cond: RunConditions, builder_kwargs: dict) -> Analysis:
    name, spec, builder, module = resolve_model(model_or_name, builder_kwargs)
    weight_dtype = cond.weight_dtype
    if cond.freeze:
        from archcost.memory.training import frozen_builder

        builder = frozen_builder(builder, cond.freeze)
    if spec is None and module is None and cond.inputs is None and cond.input_size is None:
        # a builder may return (model, example_inputs): the inputs are then the example
        model, examples = built_with_examples(builder)
        if examples is not None:
            if cond.batch_size != 1:
                raise AnalysisError(f"{name} returns its example inputs, which carry their own batch: "
                                    "drop the batch size, or give an input size")
            module, cond = model, dataclasses.replace(cond, inputs=examples).checked()
    if module is not None:
        module.to(dtype=weight_dtype)  # the user's module is analysed in --dtype, then restored
    if cond.inputs is not None:
        if cond.input_size is not None or cond.batch_size != 1:
            raise AnalysisError("example inputs carry their own sizes and batch: give inputs, or "
                                "input_size and batch_size, not both")
        shapes = [tuple(x) if isinstance(x, list) and all(type(d) is int for d in x) else x for x in cond.inputs]
    else:
        conv = (first_conv(module or build(builder, "meta", weight_dtype))
                if not spec and needs_model(cond.input_size) else None)
        shapes = input_shapes(cond.input_size, spec.input_size if spec else None, cond.batch_size, conv, name)
    from archcost.roofline.attention_bytes import AttentionCalls, fuse

    with AttentionCalls() as attention:  # shapes of the attention calls, for the fused kernel's bytes
        result, model, used, note = run_counting(name, spec, builder, module, shapes, cond.engine, weight_dtype,
                                                 cond.input_kwargs, cond.record_ops)
    if cond.record_ops and result.ops:
        result.ops, _ = fuse(result.ops, attention.calls)  # the device's attention kernel, not meta's decomposition
    analysis = frames(name, spec, model, shapes, weight_dtype, result, used)
    mark_shared(analysis.layers, model)
    if result.scripted:
        where = ", ".join(n or "(model)" for n in result.scripted)
        note = "; ".join(n for n in (note, f"TorchScript modules ({where}) take no Python hooks: their operators "
                                           "are counted, for the module around them") if n)
    analysis.summary["notes"] = note
    analysis.device_paths = result.device_paths
    analysis.macs_by_aten = dict(result.macs_by_aten)
    analysis.ops = result.ops if cond.record_ops and used != "fvcore" else None
    if analysis.ops is not None:
        from archcost.roofline.latency import conv_kinds

        analysis.conv_kinds = conv_kinds(model)
    s = analysis.summary
    s["dtype"] = cond.dtype_name
    s["channels_last"] = cond.channels_last
    from archcost.devices import device_name

    s["device"] = cond.device
    s["device_name"] = device_name(cond.device)
    if not (cond.memory or cond.latency or cond.layer_latency or cond.train):
        return analysis
    _add_passes(analysis, cond, name, builder, module, model, used, shapes, result.device_paths)
    return analysis


def _add_passes(analysis, cond, name, builder, module, model, used, shapes, device_paths):
    """The memory, training and latency passes, on the counted model when it can be reused.
    On CPU without amp or timing they run on the counted meta model (same allocations, no
    compute). Attention and recurrent layers run other kernels on a real device than their
    math decomposition on meta, and allocate differently: their memory is measured on real
    tensors of the device (values uninitialised: memory does not depend on them)."""
    device, dtype, weight_dtype = cond.device, cond.dtype, cond.weight_dtype
    meta_only = cond.memory_on == "meta"
    real = (cond.real or bool(device_paths)) and not meta_only
    reuse = model if (used == "meta" and not real) or (used in ("cpu", "fvcore") and device == "cpu") else None
    if reuse is None and used in ("cpu", "fvcore") and module is None:
        reuse = model.to(device)  # real weights: a data-dependent forward takes the counted branch
    runner = runner_model(builder, module, reuse, device if real else "meta", weight_dtype, cond.channels_last)
    run_inputs = make_inputs(shapes, device_of(runner), weight_dtype, cond.channels_last)
    amp_ctx = (lambda: torch.autocast(device_type=device, dtype=dtype)) if cond.amp else contextlib.nullcontext
    try:
        with keyword_inputs(runner, cond.input_kwargs):
            if cond.memory:
                with amp_ctx():
                    add_memory(analysis, runner, run_inputs, cond.optimizer, device, scratch=not meta_only)
                if device_paths and device == "cpu" and meta_only and device_of(runner) == "meta":
                    before = analysis.summary["memory_note"].iloc[0]
                    analysis.summary["memory_note"] = (
                        f"measured on meta tensors: {', '.join(device_paths)} as meta's math decomposition, which "
                        "holds what CPU's fused kernels do not (attention's score matrices)"
                        + ("; " + before if before else ""))
                elif device_paths and device == "cpu":
                    before = analysis.summary["memory_note"].iloc[0]
                    analysis.summary["memory_note"] = (
                        f"measured on real CPU tensors: {', '.join(device_paths)} run fused kernels on "
                        "CPU, not the math decomposition meta runs" + ("; " + before if before else ""))
            if cond.train:
                from archcost.memory.backward import add_backward
                from archcost.memory.training import add_training

                add_training(analysis, runner, run_inputs, cond.optimizer, amp_ctx if cond.amp else None,
                             cond.checkpoint)
                # MACs depend on shapes only: counted on the (meta) counting model
                add_backward(analysis, model, make_inputs(shapes, device_of(model), weight_dtype), cond.checkpoint)
            if cond.train and cond.latency:
                add_train_latency(analysis, runner, run_inputs, device, cond.optimizer, cond.repeats, cond.warmup,
                                  amp_ctx if cond.amp else None, cond.checkpoint)
            if cond.latency or cond.layer_latency:
                add_latency(analysis, runner, run_inputs, device, cond.repeats, cond.warmup,
                            dtype if cond.amp else None, cond.layer_latency, cond.time_budget_s)
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        raise OutOfDeviceMemory(f"{name} at batch {cond.batch_size} does not fit in {device} memory: "
                                f"{str(exc).splitlines()[0]}") from None
