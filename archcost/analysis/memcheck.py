"""Independent checks of ``memory.py``'s figures, by other mechanisms than its own.

- CPU: the profiler's allocator events (``torch.profiler`` with ``profile_memory``). Their
  running sum, sampled when each top-level operator returns, is the live tensor memory
  the dispatch-level tracker should see; its unsampled maximum also includes what
  operators allocate and free inside themselves (im2col buffers, oneDNN scratch).
  After a train-mode forward, the allocator still holds what autograd saved plus the
  output.
- CUDA: the caching allocator's ``memory_allocated`` / ``max_memory_allocated``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Dict, Tuple

import torch
import torch.nn as nn

from .engine import _tensors
from .memory import running_as


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's C++ side prints start/stop lines on fd 2; keep them off the terminal."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _top_level_ends(events):
    """End times of the outermost operator calls (one thread's nesting, by intervals)."""
    ops = sorted(((e.start_ns(), e.end_ns()) for e in events
                  if e.name() != "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
                  and e.name().startswith("aten::")), key=lambda r: (r[0], -r[1]))
    ends, reach = [], -1
    for s, e in ops:
        if s >= reach:
            ends.append(e)
            reach = e
    return ends


def profiler_memory(model: nn.Module, inputs: Tuple[torch.Tensor, ...], train: bool = False) -> Dict[str, int]:
    """One forward under the CPU profiler. Returns ``allocator_peak`` (every allocation),
    ``op_boundary_peak`` (sampled when top-level operators return), ``live_after`` (still
    allocated when the forward returns, output included) and ``output_bytes``."""
    from torch.profiler import ProfilerActivity, profile

    with running_as(model, train), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grad = torch.enable_grad() if train else torch.no_grad()
        with _quiet_stderr(), grad, profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = model(*inputs)
        output_bytes = sum(t.untyped_storage().nbytes() for t in {id(t): t for t in _tensors(out)}.values())
        del out
    peak, boundary, current = allocator_walk(list(prof.profiler.kineto_results.events()))
    return {"allocator_peak": peak, "op_boundary_peak": boundary, "live_after": current,
            "output_bytes": output_bytes}


def allocator_walk(events):
    """(every-allocation peak, peak sampled as each top-level operator returns, bytes still
    allocated at the end) from the profiler's events."""
    mem = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    current = peak = boundary = 0
    i = 0
    for end in _top_level_ends(events):
        while i < len(mem) and mem[i][0] <= end:
            current += mem[i][1]
            peak = max(peak, current)
            i += 1
        boundary = max(boundary, current)
    for _, n in mem[i:]:
        current += n
        peak = max(peak, current)
    return peak, boundary, current


def cuda_allocator(model: nn.Module, inputs: Tuple[torch.Tensor, ...], train: bool = False):
    """Peak and final bytes the CUDA caching allocator hands out during one forward,
    beyond what was allocated before it (weights, input)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with running_as(model, train), (torch.enable_grad() if train else torch.no_grad()):
        out = model(*inputs)
        torch.cuda.synchronize()
        result = {"allocator_peak": torch.cuda.max_memory_allocated() - base,
                  "live_after": torch.cuda.memory_allocated() - base}
        del out
    return result


def _row(quantity, ours, theirs, by, why):
    return {"quantity": quantity, "archcost": int(ours), "independent": int(theirs), "by": by,
            "relative_difference": (ours - theirs) / theirs if theirs else float("nan"), "why": why}


def compare(name, input_size=None, batch_size: int = 1, device: str = "cpu", dtype: str = "float32"):
    """archcost's peak_bytes and saved_bytes next to independent measurements of the
    same forward, each difference explained. Returns a DataFrame."""
    import pandas as pd

    from . import memory as mem
    from .analyze import DTYPES, _build, _make_inputs, _resolve, _runner, analyze, build_model, input_shapes
    from .engine import AnalysisError

    name, spec, builder, module = _resolve(name, {})
    if module is not None:
        raise ValueError("compare() takes a zoo name or a file.py:builder reference")
    counted = analyze(name, input_size=input_size, batch_size=batch_size, memory=False,
                      dtype=dtype)  # input errors, in one line
    dt = DTYPES[dtype]
    shapes = input_shapes(input_size, spec.input_size if spec else None, batch_size, name=name,
                          model=lambda: _build(builder, "meta", torch.float32))
    on_values = counted.row["engine"] != "meta"  # the forward reads tensor values: real tensors only
    if on_values:
        real = build_model(builder, device, dt)[0]
    else:
        real = _runner(builder, None, None, device, dt, False)
    inputs = _make_inputs(shapes, device, dt)
    try:
        on_real = mem.measure(real, inputs)
        on_meta = None if on_values else mem.measure(_build(builder, "meta", dt),
                                                     _make_inputs(shapes, "meta", dt))
    except (ValueError, RuntimeError) as exc:
        raise AnalysisError(f"{name} cannot run a train-mode forward on input "
                            f"{'x'.join(map(str, shapes[0]))} (needed for saved_bytes): "
                            f"{str(exc).strip().splitlines()[0]}; try a larger --input-size or --batch-size") from None
    # What archcost reports: the meta figure, unless the model runs kernels whose memory
    # differs by device (attention, recurrent layers) or reads tensor values: then the
    # figure on real tensors, as analyze() measures it.
    paths = counted.device_paths
    ours = on_real if paths or on_values else on_meta
    rows = []
    pairs = [] if on_values else [("peak_bytes (inference)", on_meta.peak_bytes, on_real.peak_bytes),
                                  ("saved_bytes (training)", on_meta.saved_bytes, on_real.saved_bytes)]
    for quantity, m, r in pairs:
        if m == r:
            why = "the same operators allocate the same storages on meta and real tensors"
        elif paths:
            why = (f"meta runs the math decomposition of {', '.join(paths)}, {device} runs fused kernels that "
                   f"allocate differently: archcost reports the {device} figure for this model (rows below)")
        else:
            why = (f"an operator allocates differently on meta than on {device}; archcost reports the meta "
                   "figure, the rows below compare it with the allocator")
        rows.append(_row(quantity, m, r, f"the same tracker on meta (archcost) and on {device} tensors", why))
    if device == "cpu":
        ev = profiler_memory(real, inputs)
        tr = profiler_memory(real, inputs, train=True)
        rows += [
            _row("peak_bytes (inference)", ours.peak_bytes, ev["op_boundary_peak"],
                 "CPU profiler allocator events, sampled as each top-level operator returns",
                 "equal unless a composite operator frees a temporary it returned internally "
                 "(max_pool2d's int64 indices: counted by archcost, gone when max_pool2d returns)"),
            _row("peak_bytes (inference)", ours.peak_bytes, ev["allocator_peak"],
                 "CPU profiler allocator events, every allocation",
                 "the allocator also sees scratch that operators allocate and free inside themselves "
                 "(im2col buffers, oneDNN workspaces), which no tensor ever holds"),
            _row("saved_bytes (training)", ours.saved_bytes, tr["live_after"] - tr["output_bytes"],
                 "CPU profiler: bytes still allocated after a train-mode forward, minus the output",
                 "what autograd holds for backward is all that stays allocated after the forward"),
        ]
    else:
        ev = cuda_allocator(real, inputs)
        tr = cuda_allocator(real, inputs, train=True)
        rows += [
            _row("peak_bytes (inference)", on_real.peak_bytes, ev["allocator_peak"],
                 "CUDA caching allocator, max_memory_allocated",
                 "the allocator also counts cuDNN/cuBLAS workspaces and rounds blocks up to 512 bytes"),
            _row("saved_bytes (training)", on_real.saved_bytes, tr["live_after"] - ev["live_after"],
                 "CUDA caching allocator: allocated after a train-mode forward, minus the inference output",
                 "what autograd holds for backward is all that stays allocated after the forward"),
        ]
    return pd.DataFrame(rows)
