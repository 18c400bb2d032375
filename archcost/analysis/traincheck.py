"""``train_peak_bytes`` checked by another mechanism: the CPU allocator's own events.

The same training step (``training.TrainingStep.run``: forward, loss, backward, optimizer
step) runs on real CPU tensors under ``torch.profiler`` with ``profile_memory``. What was
allocated before it (weights, buffers, optimizer state, input) is the baseline; the
running sum of the allocator's events during the step, sampled as each top-level operator
returns, is the live memory the dispatch-level tracker should see; its unsampled maximum
also holds what kernels allocate and free inside themselves (im2col and oneDNN scratch,
``convolution_backward``'s buffers), which no tensor ever holds.
"""

from __future__ import annotations

import warnings
from typing import Dict, Tuple

import torch
import torch.nn as nn

from .memcheck import _quiet_stderr, _top_level_ends
from .training import TrainingStep


def allocator_step(model: nn.Module, inputs: Tuple[torch.Tensor, ...], optimizer: str = "sgd",
                   autocast=None) -> Dict[str, int]:
    """One training step of a real-tensor CPU model under the profiler. Returns
    ``baseline_bytes`` (weights, buffers, optimizer state), and, beyond it,
    ``op_boundary_peak`` and ``allocator_peak`` (as in ``memcheck.profiler_memory``)."""
    from torch.profiler import ProfilerActivity, profile

    step = TrainingStep(model, optimizer, autocast)
    state = [v for st in step.opt.state.values() for v in st.values()
             if isinstance(v, torch.Tensor) and v.device == step.device]
    tensors = {t.untyped_storage()._cdata: t.untyped_storage().nbytes()
               for t in [*step.params, *model.buffers(), *state]}
    with warnings.catch_warnings(), _quiet_stderr():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step.run(inputs)
    events = list(prof.profiler.kineto_results.events())
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
    return {"baseline_bytes": sum(tensors.values()), "op_boundary_peak": boundary,
            "allocator_peak": peak}
