"""``train_peak_bytes`` checked by another mechanism: the CPU allocator's own events.

The same training step (``training.TrainingStep.run``: forward, loss, backward, optimizer
step) runs on real CPU tensors under ``torch.profiler`` with ``profile_memory``. What was
allocated before it (weights, buffers, optimizer state, input) is the baseline; the
running sum of the allocator's events during the step, sampled as each top-level operator
returns, is the live memory the dispatch-level tracker sees (``scratch=False``); its
unsampled maximum also holds what kernels allocate and free inside themselves (im2col and
oneDNN scratch, ``convolution_backward``'s buffers), which ``train_peak_bytes`` includes,
measured (``memory/scratch.py``).
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn as nn

from archcost.measure.allocator import allocator_step


BACKWARD_WHY = {
    "native_batch_norm_backward": "archcost counts norm gradients (2 per element for the input, 1 for weight "
                                  "and bias); torch's counter has no formula for normalization",
    "native_layer_norm_backward": "archcost counts norm gradients; torch's counter does not count norms",
    "native_group_norm_backward": "archcost counts norm gradients; torch's counter does not count norms",
    "adaptive_avg_pool2d_backward": "archcost counts 1 per input element, as fvcore's forward; torch's counter "
                                     "ignores pooling",
    "upsample_nearest2d_backward": "archcost counts upsampling gradients as the forward; torch's counter does not",
    "upsample_bilinear2d_backward": "archcost counts upsampling gradients as the forward; torch's counter does not",
}
GROUPED_WHY = ("torch's conv_backward_flop ignores groups in the weight gradient (it counts a grouped "
               "weight gradient as a dense one, x groups); archcost counts it as the forward, like the "
               "input gradient: the difference is exactly sum((groups - 1) x forward MACs) over grouped "
               "convolutions whose weight needs a gradient")


def torch_backward_macs(model: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> Dict[str, int]:
    """torch.utils.flop_counter.FlopCounterMode over a real backward (FLOPs / 2 per ATen
    operator), the forward and the loss outside the counter."""
    from torch.utils.flop_counter import FlopCounterMode

    from archcost.memory.forward import running_as
    from archcost.memory.training import loss_of

    grads = {id(p): p.grad for p in model.parameters()}
    try:
        with running_as(model, train=True), torch.enable_grad():
            loss = loss_of(model(*inputs), {})
            mode = FlopCounterMode(display=False)
            with mode:
                loss.backward()
    finally:
        for p in model.parameters():
            p.grad = grads.get(id(p))
    return {str(op).split(".")[-1]: int(f) // 2 for op, f in mode.get_flop_counts()["Global"].items()}


def _builder_and_shapes(name, input_size, batch_size, freeze, caller):
    """(the model's builder, frozen as asked; the input shapes by the input-size rule) of a
    zoo name or a file.py:builder reference."""
    from archcost.count.inputs import input_shapes
    from archcost.count.build import build
    from archcost.zoo.sources import resolve_model
    from archcost.memory.training import frozen_builder

    name, spec, builder, module = resolve_model(name, {})
    if module is not None:
        raise ValueError(f"{caller} takes a zoo name or a file.py:builder reference")
    if freeze:
        builder = frozen_builder(builder, freeze)
    shapes = input_shapes(input_size, spec.input_size if spec else None, batch_size, name=name,
                          model=lambda: build(builder, "meta", torch.float32))
    return builder, shapes


def backward_cross_check(name, input_size=None, batch_size: int = 2, freeze=()):
    """archcost's backward MACs per ATen operator next to FlopCounterMode's over a real
    CPU backward of the same model, each difference explained. Returns a DataFrame."""
    import pandas as pd

    from archcost.count.inputs import make_inputs
    from archcost.count.build import runner_model
    from archcost.memory.backward import backward_pass

    builder, shapes = _builder_and_shapes(name, input_size, batch_size, freeze, "backward_cross_check()")
    meta = runner_model(builder, None, None, "meta", torch.float32, False)
    ours = backward_pass(meta, make_inputs(shapes, "meta", torch.float32))
    real = runner_model(builder, None, None, "cpu", torch.float32, False)
    theirs = torch_backward_macs(real, make_inputs(shapes, "cpu", torch.float32))
    grouped = ours.grouped_weight_excess
    rows = []
    for op in sorted(set(ours.by_op) | set(theirs), key=lambda o: -ours.by_op.get(o, 0)):
        a, b = ours.by_op.get(op, 0), theirs.get(op, 0)
        if a == b:
            why = "same count"
        elif op == "convolution_backward" and b - a == grouped:
            why = GROUPED_WHY
        else:
            why = BACKWARD_WHY.get(op, "counted by one side only")
        rows.append({"operator": op, "macs": a, "torch_macs": b, "difference": a - b, "why": why})
    for op, n in sorted(ours.uncounted.items()):
        rows.append({"operator": op, "macs": 0, "torch_macs": theirs.get(op, 0), "difference": 0,
                     "why": f"no rule on either side ({n} calls; its forward has none either)"})
    total_a, total_b = ours.macs, sum(theirs.values())
    rows.append({"operator": "(total)", "macs": total_a, "torch_macs": total_b, "difference": total_a - total_b,
                 "why": "sum of the rows above"})
    return pd.DataFrame(rows)


def compare_step(name, input_size=None, batch_size: int = 2, optimizer: str = "sgd", freeze=()):
    """archcost's train_peak_bytes (meta tensors) next to the CPU allocator's events over
    the same step on real tensors, each difference explained. Returns a DataFrame."""
    import pandas as pd

    from archcost.count.inputs import make_inputs
    from archcost.count.build import runner_model
    from archcost.checks.memcheck import _row
    from archcost.memory.training import step_memory

    builder, shapes = _builder_and_shapes(name, input_size, batch_size, freeze, "compare_step()")
    ours = step_memory(runner_model(builder, None, None, "meta", torch.float32, False),
                       make_inputs(shapes, "meta", torch.float32), optimizer)
    tensors = step_memory(runner_model(builder, None, None, "meta", torch.float32, False),
                          make_inputs(shapes, "meta", torch.float32), optimizer, scratch=False)
    ev = allocator_step(runner_model(builder, None, None, "cpu", torch.float32, False),
                        make_inputs(shapes, "cpu", torch.float32), optimizer)
    counters = ev["baseline_bytes"] - (ours.weight_bytes + ours.buffer_bytes + ours.optimizer_state_bytes)
    base = ev["baseline_bytes"] - counters
    return pd.DataFrame([
        _row("weights + buffers + optimizer state", base, ev["baseline_bytes"],
             "CPU tensors allocated before the step (storage sizes)",
             "equal, but for Adam's step counters: a 4-byte CPU tensor per parameter, in the CPU model's "
             "memory, in host memory when the model is on a GPU or meta" if counters else "equal"),
        _row(f"train_peak_bytes, tensors only ({optimizer}, peak in {tensors.peak_phase})", tensors.train_peak_bytes,
             base + ev["op_boundary_peak"],
             "CPU profiler allocator events through the step, sampled as each top-level operator returns",
             "equal but for the class labels of the loss (8 bytes a sample: input, made outside the tracker) "
             "and LeNet-5's 48 bytes of scalars; autograd's in-place gradient accumulation, which a dispatch "
             "mode turns off, is accounted for (training.StepLive._engine_accumulation)"),
        _row(f"train_peak_bytes ({optimizer}, peak in {ours.peak_phase})", ours.train_peak_bytes,
             base + ev["allocator_peak"], "CPU profiler allocator events, every allocation",
             f"equal but for the class labels (as above): the scratch kernels allocate and free inside "
             f"themselves (im2col, oneDNN reorders, convolution_backward's buffers) is measured on this CPU and "
             f"counted at its call ({ours.scratch_at_peak} bytes at the peak; memory/scratch.py)"),
    ])
