"""Titles, formats and conventions of the roofline columns (merged into tables.COLUMNS)."""

from .units import mib, si


def _ms(v) -> str:
    return f"{v:.3g}"


def _batch(v) -> str:
    return "never" if v is None or v != v else str(int(v))


ROOFLINE_COLUMNS = {
    "kernels": ("ops", str, "ATen operators the layer ran (one kernel launch each)"),
    "operators": ("operators", str, None),
    "bytes_read": ("read", mib, "bytes its operators read, each operand crossing DRAM once (MiB)"),
    "bytes_written": ("written", mib, "bytes its operators wrote (MiB); an in-place op reads and writes its storage"),
    "bytes_moved": ("moved", mib, "bytes read + written (MiB)"),
    "arithmetic_intensity": ("FLOP/B", lambda v: f"{v:.3g}", "arithmetic intensity: FLOPs (2 x MACs) / bytes moved"),
    "rate": ("rate", str, "the precision column bounding the layer's FLOPs: float32 products at FP32 unless "
             "--tf32 on, float32 convolutions at TF32 (cuDNN's default), float16/bfloat16 at the tensor rate"),
    "time_compute_ms": ("compute", _ms, "FLOPs / the target's FLOP/s at each operator's rate (ms)"),
    "time_memory_ms": ("memory", _ms, "bytes moved / the target's memory bandwidth (ms)"),
    "time_overhead_ms": ("launch", _ms, "operators x --launch-overhead-us (ms)"),
    "time_bound_ms": ("bound", _ms, "max(compute, memory, launch) (ms): on a GPU, the least time the layer can "
                      "take at datasheet rates; on --target cpu, the time at the rates a matrix product and a copy "
                      "attain here (a tuned kernel can beat it: the CPU's hardware peak, shown in the notes, is "
                      "the true floor)"),
    "predicted_ms": ("predicted", _ms, "an estimate: per operator, its compute and memory times each over the "
                     "efficiency its class attains, the larger, + a per-kernel overhead of its class and Python's time "
                     "per kernel; fitted on this CPU on the operators of calibration networks, stated defaults for a "
                     "GPU (reports/latency_prediction_cpu.md gives its measured error) (ms)"),
    "predicted_over_measured": ("pred/meas", lambda v: f"{v:.2f}x", "predicted / measured median time"),
    "bound": ("limit", str, "which of compute, memory or launch overhead sets the bound"),
    "share_of_bound": ("share", lambda v: f"{v:.1%}", "the layer's share of the model's time bound"),
    "ridge_batch": ("ridge batch", _batch, "smallest batch at which the layer's intensity reaches the ridge "
                    "(compute-bound from there on; 'never': its intensity levels off below the ridge)"),
    "time_bound_per_image_ms": ("bound/image", _ms, "time bound / batch size (ms)"),
    "bound_share_memory": ("memory-bound", lambda v: f"{v:.1%}", "share of the time bound spent in memory-bound layers"),
    "bound_share_overhead": ("launch-bound", lambda v: f"{v:.1%}", "share of the time bound in launch-bound layers"),
    "ridge_batch_heaviest": ("ridge batch", _batch, "smallest batch from which all the heaviest layers are "
                             "compute-bound (of the layers that can get there, those making up 80% of their "
                             "time bound)"),
    "bound_share_never_compute": ("never compute", lambda v: f"{v:.1%}", "share of the time bound in layers whose "
                                  "intensity stays below the ridge at any batch (ReLU, pooling, batch norm, ...)"),
    "last_to_cross": ("last to cross", str, "the heaviest layer that reaches the ridge last"),
    "measured_over_bound": ("measured/bound", lambda v: f"{v:.1f}x", "measured median time / time bound: how far "
                            "from the physical limit the run is"),
    "flops": ("FLOPs", si, "2 x MACs"),
}
