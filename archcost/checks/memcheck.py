"""Independent checks of ``memory.py``'s figures, by other mechanisms than its own.

- CPU: the profiler's allocator events (``torch.profiler`` with ``profile_memory``). Their
  running sum, sampled when each top-level operator returns, is the live tensor memory
  the dispatch-level tracker sees; its unsampled maximum also includes what operators
  allocate and free inside themselves (im2col buffers, oneDNN scratch), which archcost's
  peaks include, measured (``memory/scratch.py``).
  After a train-mode forward, the allocator still holds what autograd saved plus the
  output.
- CUDA: the caching allocator's ``memory_allocated`` / ``max_memory_allocated``.
"""

from __future__ import annotations


import torch

from archcost.measure.allocator import cuda_allocator, profiler_memory


def _row(quantity, ours, theirs, by, why):
    return {"quantity": quantity, "archcost": int(ours), "independent": int(theirs), "by": by,
            "relative_difference": (ours - theirs) / theirs if theirs else float("nan"), "why": why}


def compare(name, input_size=None, batch_size: int = 1, device: str = "cpu", dtype: str = "float32"):
    """archcost's peak_bytes and saved_bytes next to independent measurements of the
    same forward, each difference explained. Returns a DataFrame."""
    import pandas as pd

    from archcost.memory import forward as mem
    from archcost.analysis.analyze import analyze
    from archcost.conditions import DTYPES
    from archcost.count.inputs import input_shapes, make_inputs
    from archcost.count.build import build, build_model, runner_model
    from archcost.zoo.sources import resolve_model
    from archcost.errors import AnalysisError

    name, spec, builder, module = resolve_model(name, {})
    if module is not None:
        raise ValueError("compare() takes a zoo name or a file.py:builder reference")
    counted = analyze(name, input_size=input_size, batch_size=batch_size, memory=False,
                      dtype=dtype)  # input errors, in one line
    dt = DTYPES[dtype]
    shapes = input_shapes(input_size, spec.input_size if spec else None, batch_size, name=name,
                          model=lambda: build(builder, "meta", torch.float32))
    on_values = counted.row["engine"] != "meta"  # the forward reads tensor values: real tensors only
    if on_values:
        real = build_model(builder, device, dt)[0]
    else:
        real = runner_model(builder, None, None, device, dt, False)
    inputs = make_inputs(shapes, device, dt)
    try:
        on_real = mem.measure(real, inputs)
        on_meta = None if on_values else mem.measure(build(builder, "meta", dt),
                                                     make_inputs(shapes, "meta", dt))
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
        model, model_inputs = (real, inputs) if paths or on_values else (build(builder, "meta", dt),
                                                                       make_inputs(shapes, "meta", dt))
        tensors = mem.peak_pass(model, model_inputs, {}, scratch=False)
        rows += [
            _row("peak_bytes, tensors only (inference)", tensors, ev["op_boundary_peak"],
                 "CPU profiler allocator events, sampled as each top-level operator returns",
                 "equal unless a composite operator frees a temporary it returned internally "
                 "(max_pool2d's int64 indices: counted by archcost, gone when max_pool2d returns)"),
            _row("peak_bytes (inference)", ours.peak_bytes, ev["allocator_peak"],
                 "CPU profiler allocator events, every allocation",
                 f"equal: the scratch kernels allocate and free inside themselves (im2col, oneDNN reorders) is "
                 f"measured on this CPU and counted at its call ({ours.scratch_at_peak} bytes at the peak; "
                 "memory/scratch.py)"),
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
