"""Reading the allocators on a real run: the CPU allocator's events through
``torch.profiler`` (``profile_memory=True``) and CUDA's counters, for a forward or one
training step. What the device itself accounts, against which archcost's figures are checked."""

from __future__ import annotations

import warnings
from typing import Dict, Tuple

import torch
import torch.nn as nn

from archcost.count.engine import _tensors
from archcost.memory.scratch_calls import quiet_stderr as _quiet_stderr
from archcost.zoo.restore import running_as


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


def allocator_step(model: nn.Module, inputs: Tuple[torch.Tensor, ...], optimizer: str = "sgd",
                   autocast=None, checkpoint=()) -> Dict[str, int]:
    """One training step of a real-tensor CPU model under the profiler. Returns
    ``baseline_bytes`` (weights, buffers, optimizer state), and, beyond it,
    ``op_boundary_peak`` and ``allocator_peak`` (as in ``memcheck.profiler_memory``)."""
    from torch.profiler import ProfilerActivity, profile

    from archcost.memory.training import TrainingStep

    step = TrainingStep(model, optimizer, autocast, checkpoint)
    state = [v for st in step.opt.state.values() for v in st.values()
             if isinstance(v, torch.Tensor) and v.device == step.device]
    tensors = {t.untyped_storage()._cdata: t.untyped_storage().nbytes()
               for t in [*step.params, *model.buffers(), *state]}
    with warnings.catch_warnings(), _quiet_stderr():
        warnings.simplefilter("ignore")
        prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        step.run(inputs, within=prof)
    peak, boundary, _ = allocator_walk(list(prof.profiler.kineto_results.events()))
    return {"baseline_bytes": sum(tensors.values()), "op_boundary_peak": boundary,
            "allocator_peak": peak}
