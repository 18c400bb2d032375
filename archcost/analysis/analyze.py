"""``analyze(model_or_name, ...)``: the one entry point joining the passes into frames."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Union

import pandas as pd
import torch
import torch.nn as nn

from .engine import AnalysisError, LayerFailure, PassResult, run_fvcore, run_pass
from .inputs import first_conv, image_layout, needs_model
from .limits import check_shapes
from .partition import container_activations, mark_shared
from .restore import preserved, restores_model

class OutOfDeviceMemory(AnalysisError):
    """The model runs, but not at this batch size on this device."""


InputSize = Union[int, Sequence[int], Sequence[Sequence[int]], None]

LAYER_COLUMNS = ["layer", "type", "depth", "is_leaf", "output_shape", "params", "self_params",
                 "macs", "self_macs", "activations", "activation_bytes", "aliased", "calls"]
MEMORY_LAYER_COLUMNS = ["saved_bytes", "self_saved_bytes", "peak_bytes"]
ENGINES = ("auto", "meta", "cpu", "fvcore")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}

# Error texts that mean "this input does not fit this network", not "meta cannot run it".
_SHAPE_ERRORS = re.compile(r"too small|can't be greater|cannot be multiplied|size mismatch|"
                           r"expected input|channels|non-positive|must match the size|"
                           r"Expected .* dimension|shape .* is invalid", re.I)


@dataclass
class Analysis:
    """``layers``: one row per module (execution order); ``summary``: one row for the model;
    ``by_operator``: MACs per operator and the operators that were not counted."""

    layers: pd.DataFrame
    summary: pd.DataFrame
    by_operator: pd.DataFrame
    device_paths: list = field(default_factory=list)  # ops whose kernels differ on meta
    macs_by_aten: dict = field(default_factory=dict)  # MACs by ATen op (crosscheck.py)
    ops: Optional[list] = None  # the engine's per-operator records (roofline bytes); None under fvcore

    @property
    def row(self) -> dict:
        return self.summary.iloc[0].to_dict()

    def breakdown(self, depth: Optional[int] = None) -> pd.DataFrame:
        """Rows that partition the model: every leaf (or, with ``depth``, the modules at
        that depth and shallower leaves), plus an ``[own ops]`` row for each enclosing
        module whose own forward code runs counted ops (``F.adaptive_avg_pool2d`` in
        DenseNet's forward) or owns parameters directly. Their params and MACs sum to
        the model's totals."""
        ly = self.layers
        if depth is None:
            cut = ly["is_leaf"]
            above = ~ly["is_leaf"]
        else:
            cut = (ly["depth"] == depth) | (ly["is_leaf"] & (ly["depth"] < depth))
            above = ~ly["is_leaf"] & (ly["depth"] < depth)
        out = []
        for i, rec in enumerate(ly.to_dict("records")):
            own_saved = rec.get("self_saved_bytes", 0) or 0
            own_backward = rec.get("self_backward_macs", 0) or 0
            if above.iloc[i] and (rec["self_macs"] or rec["self_params"] or own_saved or own_backward):
                own = {**rec, "layer": f"{rec['layer']} [own ops]", "type": "functional",
                       "output_shape": "", "params": rec["self_params"], "macs": rec["self_macs"],
                       "activations": 0, "activation_bytes": 0, "is_leaf": False, "aliased": False}
                if "saved_bytes" in rec:
                    own.update(saved_bytes=own_saved, peak_bytes=float("nan"))
                if "backward_macs" in rec:
                    own["backward_macs"] = rec["self_backward_macs"]
                if "latency_ms" in rec:
                    own["latency_ms"] = float("nan")
                out.append(own)
            if cut.iloc[i] and rec["depth"] > 0:
                out.append(rec)
        rows = pd.DataFrame(out, columns=ly.columns)
        return rows if depth is None else container_activations(rows, ly)


def parse_input_size(text: str) -> Tuple[int, ...]:
    """'224' -> (224,), '3x224x224' -> (3, 224, 224); raises ValueError with a hint."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"input size {text!r} is not N or CxHxW (e.g. 224 or 3x224x224)") from None
    if any(d <= 0 for d in dims):
        raise ValueError(f"input size {text!r} has a dimension <= 0; sizes must be positive")
    return dims


def input_shapes(input_size: InputSize, default: Optional[Tuple[int, ...]], batch_size: int, conv=None,
                 name="the model", model=None):
    """Resolve the user's input size(s) to full shapes with the batch dimension (the rule:
    ``inputs.py``; ``conv``: a custom model's first convolution, from ``first_conv``, or
    found in ``model``: the module, or a callable building it, asked only when the rule
    needs it)."""
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


def _resolve(model_or_name, builder_kwargs):
    """-> (name, spec or None, builder or None, module or None)."""
    if isinstance(model_or_name, nn.Module):
        return type(model_or_name).__name__, None, None, model_or_name
    from archcost.zoo.custom import resolve_builder
    from archcost.zoo.registry import get_spec

    name = str(model_or_name)
    if ":" in name:
        builder = resolve_builder(name)
        return name, None, lambda: builder(**builder_kwargs), None
    try:
        spec = get_spec(name)
    except KeyError as exc:
        raise AnalysisError(exc.args[0]) from None
    return name, spec, lambda: spec.builder(**builder_kwargs), None


SEED = 0  # weights (the builder's own initialisation) and inputs of every real-tensor run

# Errors that mean "the forward (or the builder) needs tensor values", which meta has not.
_NEEDS_VALUES = re.compile(r"meta tensor|no data|cannot be converted to Scalar|data-independent|"
                           r"data-dependent|item\(\)", re.I)


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
        from .memory import MetaShortcuts

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
    check_module(model)
    return model.to(device=device, dtype=dtype).eval(), note


def _build(builder, device, dtype):
    return build_model(builder, device, dtype)[0]


def _make_inputs(shapes, device, dtype, channels_last=False):
    """One input per shape (batch included), or the user's example tensors converted.
    Real tensors hold ``torch.randn`` values from a generator seeded with ``SEED`` (a
    data-dependent forward then takes the same branch every run); meta tensors hold none."""
    gen = torch.Generator().manual_seed(SEED)

    def one(s):
        if isinstance(s, torch.Tensor):
            cast = dtype if s.is_floating_point() else s.dtype
            t = (torch.empty(s.shape, dtype=cast, device="meta") if device == "meta"
                 else s.to(device=device, dtype=cast))
        elif not isinstance(s, tuple):
            return s  # a non-tensor argument, passed as it is
        elif device == "meta":
            t = torch.empty(s, device="meta", dtype=dtype)
        else:
            t = torch.randn(s, generator=gen, dtype=dtype).to(device)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t

    return tuple(one(s) for s in shapes)


@contextlib.contextmanager
def keyword_inputs(model: nn.Module, kwargs: Optional[dict]):
    """Pass ``kwargs`` to every top-level call of ``model`` (tensors moved to the device of
    its first tensor argument, meta included), for the passes that call ``model(*inputs)``."""
    if not kwargs:
        yield
        return

    def hook(mod, args, kw):
        ref = next((a for a in args if isinstance(a, torch.Tensor)), None)
        device = ref.device if ref is not None else _device_of(mod)
        moved = {k: (torch.empty(v.shape, dtype=v.dtype, device="meta") if torch.device(device).type == "meta"
                     else v.to(device)) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        return args, {**moved, **kw}

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _is_shape_error(exc) -> bool:
    return isinstance(exc, (RuntimeError, ValueError, IndexError, TypeError)) and bool(
        _SHAPE_ERRORS.search(str(exc)))


def _failure_message(name, failure: LayerFailure, shapes, smallest=None) -> str:
    msg = str(failure.exc).strip().splitlines()[0] if str(failure.exc).strip() else type(failure.exc).__name__
    shape = "x".join(str(d) for d in _dims(shapes[0])[1:])
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
    model = _build(builder, "meta", dtype)

    def works(s):
        try:
            run_pass(model, _make_inputs([(1, channels, s, s)], "meta", dtype))
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


def _fallback_note(failure: LayerFailure, weights: str = f"the builder's initialisation, seed {SEED}",
                   where: str = "CPU") -> str:
    msg = (str(failure.exc).strip().splitlines() or [type(failure.exc).__name__])[0]
    why = ("the forward reads tensor values, so the count depends on them" if _NEEDS_VALUES.search(msg)
           else "the meta pass failed")
    return (f"counted on real {where} tensors: {why} (at {failure.name}: {msg}); weights: {weights}; "
            f"input: torch.randn, seed {SEED}")


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


def _run(name, spec, builder, module, shapes, engine, dtype, kwargs=None, record_ops=False):
    """-> (PassResult, model, engine that ran, note)."""
    if module is not None:
        device = _device_of(module)
        was_training = module.training
        module.eval()
        try:
            inputs = _make_inputs(shapes, device, dtype)
            if engine == "fvcore":
                with keyword_inputs(module, kwargs):
                    return run_fvcore(module, inputs), module, "fvcore", ""
            note = ""
            if engine in ("auto", "meta") and device != "meta":
                # Counted on shape-only stand-ins first: fast, and it tells whether the forward
                # reads values (then it runs on the module's own weights, and says so).
                try:
                    with _on_meta(module):
                        res = run_pass(module, _make_inputs(shapes, "meta", dtype), kwargs, record_ops=record_ops)
                    return res, module, "meta", ""
                except LayerFailure as f:
                    if engine == "meta" or _is_shape_error(f.exc):
                        raise
                    note = _fallback_note(f, "the module's own", device)
            return run_pass(module, inputs, kwargs, record_ops=record_ops), module, device, note
        except LayerFailure as f:
            raise AnalysisError(_failure_message(name, f, shapes)) from None
        finally:
            module.train(was_training)
    try:
        note = ""
        if engine in ("auto", "meta"):
            model, note = build_model(builder, "meta", dtype)
            try:
                return run_pass(model, _make_inputs(shapes, "meta", dtype), kwargs, record_ops=record_ops), model, \
                    "meta", note
            except LayerFailure as f:
                if engine == "meta" or _is_shape_error(f.exc):
                    raise
                note = "; ".join(n for n in (note, _fallback_note(f)) if n)
        model, built = build_model(builder, "cpu", dtype)
        inputs = _make_inputs(shapes, "cpu", dtype)
        if engine == "fvcore":
            with keyword_inputs(model, kwargs):
                return run_fvcore(model, inputs), model, "fvcore", built
        return run_pass(model, inputs, kwargs, record_ops=record_ops), model, "cpu", note or built
    except LayerFailure as f:
        smallest = None
        if _is_shape_error(f.exc) and len(shapes) == 1 and len(shapes[0]) == 4 and not kwargs:
            c, h, w = _dims(shapes[0])[1:]
            default = spec.input_size[1] if spec else max(h, w)
            try:
                smallest = smallest_working_size(builder, c, dtype, max(default, h, w, 8))
            except Exception:
                smallest = None
        raise AnalysisError(_failure_message(name, f, shapes, smallest)) from None


def _dims(s) -> Tuple[int, ...]:
    """The shape of an input given as a shape or as an example tensor."""
    return tuple(s.shape) if isinstance(s, torch.Tensor) else tuple(s) if isinstance(s, tuple) else ()


@restores_model
def analyze(model_or_name, input_size: InputSize = None, batch_size: int = 1,
            dtype: Union[str, torch.dtype] = torch.float32, engine: str = "auto",
            memory: bool = True, optimizer: str = "sgd", device: str = "cpu",
            channels_last: bool = False, amp: bool = False, latency: bool = False,
            layer_latency: bool = False, repeats: int = 20, warmup: int = 5,
            inputs: Optional[Sequence] = None, input_kwargs: Optional[dict] = None, record_ops: bool = False,
            train: bool = False, freeze: Sequence[str] = (), checkpoint: Sequence[str] = (),
            **builder_kwargs) -> Analysis:
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
    ``latency``: time the forward (``repeats`` after ``warmup``); ``layer_latency``: per
    leaf module too. ``amp``: run under ``torch.autocast(dtype)`` with float32 weights
    instead of casting the model to ``dtype``. ``channels_last``: NHWC memory format.
    ``train``: also measure one whole training step (``training.py``: ``train_peak_bytes``
    and its phase and breakdown) and its backward MACs (``backward.py``). ``freeze``:
    fnmatch patterns of parameter names to freeze (requires_grad off) for every pass; a
    user's module gets its flags back. ``checkpoint``: with ``train``, segments run under
    activation checkpointing (``checkpointing.py``).

    ``inputs``: example positional inputs instead of ``input_size`` (tensors, whose shapes
    and integer dtypes are kept — on real tensors their values too —, or other values passed
    as they are); ``input_kwargs``: keyword inputs (a dict) passed to every forward.

    The ``notes`` column says when the count was not taken on meta tensors and why (a
    builder that needs tensor values, a forward that reads them: then the count may depend
    on the weights and input, which are seeded and stated).

    ``record_ops``: keep the engine's per-operator records in ``Analysis.ops`` (the roofline's bytes).
    """
    if freeze and isinstance(model_or_name, nn.Module):
        from .training import frozen

        with frozen(model_or_name, freeze):
            return analyze(model_or_name, input_size=input_size, batch_size=batch_size, dtype=dtype, engine=engine,
                           memory=memory, optimizer=optimizer, device=device, channels_last=channels_last, amp=amp,
                           latency=latency, layer_latency=layer_latency, repeats=repeats, warmup=warmup,
                           inputs=inputs, input_kwargs=input_kwargs, record_ops=record_ops, train=train,
                           checkpoint=checkpoint,
                           **builder_kwargs)
    if engine not in ENGINES:
        raise AnalysisError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise AnalysisError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    from .memory import OPTIMIZERS

    if optimizer not in OPTIMIZERS:
        raise AnalysisError(f"unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    device = resolve_device(device)
    if amp and dtype == torch.float32:
        raise AnalysisError("amp needs a lower precision: add --dtype float16 or --dtype bfloat16")
    weight_dtype = torch.float32 if amp else dtype
    name, spec, builder, module = _resolve(model_or_name, builder_kwargs)
    if freeze:
        from .training import frozen_builder

        builder = frozen_builder(builder, freeze)
    if module is not None:
        module.to(dtype=weight_dtype)  # the user's module is analysed in --dtype, then restored
    if inputs is not None:
        if input_size is not None or batch_size != 1:
            raise AnalysisError("example inputs carry their own sizes and batch: give inputs, or "
                                "input_size and batch_size, not both")
        shapes = [tuple(x) if isinstance(x, list) and all(type(d) is int for d in x) else x for x in inputs]
    else:
        conv = (first_conv(module or _build(builder, "meta", weight_dtype))
                if not spec and needs_model(input_size) else None)
        shapes = input_shapes(input_size, spec.input_size if spec else None, batch_size, conv, name)
    result, model, used, note = _run(name, spec, builder, module, shapes, engine, weight_dtype, input_kwargs,
                                     record_ops)
    analysis = _frames(name, spec, model, shapes, weight_dtype, result, used)
    mark_shared(analysis.layers, model)
    if result.scripted:
        where = ", ".join(n or "(model)" for n in result.scripted)
        note = "; ".join(n for n in (note, f"TorchScript modules ({where}) take no Python hooks: their operators "
                                           "are counted, for the module around them") if n)
    analysis.summary["notes"] = note
    analysis.device_paths = result.device_paths
    analysis.macs_by_aten = dict(result.macs_by_aten)
    analysis.ops = result.ops if record_ops and used != "fvcore" else None
    s = analysis.summary
    s["dtype"] = str(dtype).replace("torch.", "") + (" (amp)" if amp else "")
    s["channels_last"] = channels_last
    from .devices import device_name

    s["device"] = device
    s["device_name"] = device_name(device)
    if not (memory or latency or layer_latency or train):
        return analysis
    # On CPU the memory passes run on the counted meta model (same allocations, no
    # compute); timing, autocast and CUDA need real tensors.
    # Attention and recurrent layers run other kernels on a real device than their math
    # decomposition on meta, and allocate differently: their memory is measured on real
    # tensors of the device (values uninitialised: memory does not depend on them).
    real = device != "cpu" or amp or latency or layer_latency or bool(result.device_paths)
    reuse = model if (used == "meta" and not real) or (used in ("cpu", "fvcore") and device == "cpu") else None
    if reuse is None and used in ("cpu", "fvcore") and module is None:
        reuse = model.to(device)  # real weights: a data-dependent forward takes the counted branch
    runner = _runner(builder, module, reuse, device if real else "meta", weight_dtype, channels_last)
    run_inputs = _make_inputs(shapes, _device_of(runner), weight_dtype, channels_last)
    amp_ctx = (lambda: torch.autocast(device_type=device, dtype=dtype)) if amp else contextlib.nullcontext
    try:
        with keyword_inputs(runner, input_kwargs):
            if memory:
                with amp_ctx():
                    _add_memory(analysis, runner, run_inputs, optimizer, device)
                if result.device_paths and device == "cpu":
                    analysis.summary["memory_note"] = (
                        f"measured on real CPU tensors: {', '.join(result.device_paths)} run fused kernels on "
                        "CPU, not the math decomposition meta runs" + (
                            "; " + analysis.summary["memory_note"].iloc[0] if analysis.summary["memory_note"].iloc[0]
                            else ""))
            if train:
                from .backward import add_backward
                from .training import add_training

                add_training(analysis, runner, run_inputs, optimizer, amp_ctx if amp else None, checkpoint)
                # MACs depend on shapes only: counted on the (meta) counting model
                add_backward(analysis, model, _make_inputs(shapes, _device_of(model), weight_dtype), checkpoint)
            if train and latency:
                from .training import add_train_latency

                add_train_latency(analysis, runner, run_inputs, device, optimizer, repeats, warmup,
                                  amp_ctx if amp else None, checkpoint)
            if latency or layer_latency:
                _add_latency(analysis, runner, run_inputs, device, repeats, warmup, dtype if amp else None,
                             layer_latency)
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        raise OutOfDeviceMemory(f"{name} at batch {batch_size} does not fit in {device} memory: "
                                f"{str(exc).splitlines()[0]}") from None
    return analysis


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise AnalysisError("--device cuda, but torch sees no CUDA GPU here "
                            f"(torch {torch.__version__}); use --device cpu or auto")
    if device not in ("cpu", "cuda", "meta"):
        raise AnalysisError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


def _device_of(model):
    import itertools

    return next((t.device for t in itertools.chain(model.parameters(), model.buffers())),
                torch.device("cpu")).type


def _runner(builder, module, meta_model, device, dtype, channels_last):
    """The model the memory and latency passes run: the user's module, the counted model
    when it can be reused (``meta_model``), else a new one with storage on ``device``
    (values uninitialized: neither memory nor time depends on them; BatchNorm statistics
    are set to 1)."""
    if module is not None:
        model = module
    elif meta_model is not None:
        model = meta_model
    else:
        model = _build(builder, "meta", dtype)
        if device != "meta":
            model = model.to_empty(device=device)
            for b in model.buffers():
                b.fill_(1.0 if b.is_floating_point() else 0)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _add_memory(analysis, model, inputs, optimizer, device):
    from . import memory as mem

    s = analysis.summary
    modules = {}
    s["memory_note"] = ""  # columns in this order: note, saved, peak, optimizer, train, where
    s["saved_bytes"] = pd.NA
    s["peak_bytes"] = mem.peak_pass(model, inputs, modules)
    s["optimizer"] = optimizer
    s["train_bytes"] = pd.NA
    s["memory_measured_on"] = used = _device_of(model)
    try:
        saved = mem.saved_pass(model, inputs, modules)
    except (ValueError, RuntimeError) as exc:
        # e.g. BatchNorm refusing a train-mode forward on 1 value per channel (batch 1,
        # a 1x1 map): the model cannot train on this input, so nothing is saved to measure.
        saved = None
        s["saved_bytes"] = s["train_bytes"] = pd.NA
        for rec in modules.values():  # unknown per layer too, not 0
            rec.saved_bytes = rec.self_saved_bytes = pd.NA
        s["memory_note"] = "no train-mode forward on this input: " + str(exc).strip().splitlines()[0]
    if saved is not None:
        trainable = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values()
                        if p.requires_grad)
        s["saved_bytes"] = saved
        s["train_bytes"] = mem.train_bytes(int(s["param_bytes"].iloc[0]), int(s["buffer_bytes"].iloc[0]),
                                           trainable, saved, optimizer)
        if used == "cuda":
            from .memcheck import cuda_allocator

            ev = cuda_allocator(model, inputs)
            tr = cuda_allocator(model, inputs, train=True)
            s["peak_bytes_allocator"] = ev["allocator_peak"]
            s["saved_bytes_allocator"] = tr["live_after"] - ev["live_after"]
    ly = analysis.layers
    keys = ["" if n == "(model)" else n for n in ly["layer"]]
    for col in mem.ModuleMemory.__dataclass_fields__:
        ly[col] = [getattr(modules.get(k, mem.ModuleMemory()), col) for k in keys]


def _add_latency(analysis, model, inputs, device, repeats, warmup, amp_dtype, per_layer):
    from . import devices, timing

    s = analysis.summary
    batch = int(s["batch_size"].iloc[0])
    if per_layer:
        layers, plain, hooked, overhead = timing.time_layers(model, inputs, device, repeats, warmup, amp_dtype)
        keys = ["" if n == "(model)" else n for n in analysis.layers["layer"]]
        analysis.layers["latency_ms"] = [layers.get(k, float("nan")) for k in keys]
        s["hooked_latency_ms"] = hooked.median_ms
        s["layer_timing_overhead_ms"] = overhead
    else:
        plain = timing.time_forward(model, inputs, device, repeats, warmup, amp_dtype)
    for k, v in plain.row(batch).items():
        s[k] = v
    tflops = float(s["flops"].iloc[0]) / (plain.median_ms / 1e3) / 1e12
    s["achieved_tflops"] = tflops
    peak = devices.find_peak(devices.device_name(device)) if device == "cuda" else None
    key = str(amp_dtype or s["dtype"].iloc[0]).replace("torch.", "").split(" ")[0]
    key = devices.peak_key(key, device, torch.backends.cudnn.allow_tf32)
    if peak is not None and key == "tf32" and "tf32" not in peak.tflops:
        key = "float32"  # no TF32 on this GPU (V100, T4): float32 runs at the FP32 rate
    peak_tflops = peak.tflops.get(key) if peak else None
    s["device_peak_tflops"] = peak_tflops or float("nan")
    s["peak_dtype"] = key if peak_tflops else ""
    s["peak_fraction"] = tflops / peak_tflops if peak_tflops else float("nan")
    s["peak_source"] = peak.source if peak else ""


def _frames(name, spec, model, shapes, dtype, res: PassResult, engine) -> Analysis:
    recs = sorted(res.records.values(), key=lambda r: (r.order < 0, r.order))
    layers = pd.DataFrame([{c: getattr(r, c) for c in LAYER_COLUMNS} for r in recs],
                          columns=LAYER_COLUMNS)
    params = list({id(p): p for p in model.parameters()}.values())
    buffers = list({id(b): b for b in model.buffers()}.values())
    uncounted = "; ".join(f"{op} x{n}" for op, n in sorted(res.uncounted.items()))
    summary = pd.DataFrame([{
        "model": name,
        "family": spec.family if spec else "custom",
        "input_shape": ",".join("x".join(map(str, _dims(s))) for s in shapes if _dims(s)),
        "batch_size": (_dims(shapes[0]) or (1,))[0] if shapes else 1,
        "dtype": str(dtype).replace("torch.", ""),
        "params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "param_bytes": sum(p.numel() * p.element_size() for p in params),
        "buffer_bytes": sum(b.numel() * b.element_size() for b in buffers),
        "macs": res.macs,
        "flops": 2 * res.macs,
        "activations": res.activations,
        "activation_bytes": res.activation_bytes,
        "uncounted_ops": uncounted,
        "engine": engine,
        "torch_version": torch.__version__,
    }])
    by_op = [{"operator": op, "macs": m, "calls_uncounted": 0} for op, m in res.macs_by_op.most_common()]
    by_op += [{"operator": op, "macs": 0, "calls_uncounted": n} for op, n in sorted(res.uncounted.items())]
    return Analysis(layers, summary, pd.DataFrame(by_op, columns=["operator", "macs", "calls_uncounted"]))
