"""Predicted latency: the roofline bound of each operator, divided by the efficiency its
class reaches on the target, plus a fixed cost per kernel and Python's time per kernel.

    predicted_ms(op) = max(compute / efficiency(class), memory / memory_efficiency(class))
                       + overhead(class) + fresh + python
    compute = flops / rate(op),  memory = bytes / bandwidth,  bound(op) = max(compute, memory)

summed over a model's operators (kernels run one after another in an eager forward).
``fresh`` is what an output of 32 MiB or more costs on a CPU for landing in newly mapped pages
(``op_fresh_s``; measured by the calibration): a batch-16 network with large activations
pays it at most layers, a batch-1 one almost nowhere.
``rate(op)`` is the arithmetic rate the device runs the operator at (``precision.py``: FP32,
TF32 or the tensor rate; on a CPU its modelled hardware peak, ``devices/cpu_facts.py``).
The classes: convolutions by kind (stem: at most 4 input channels; 1x1; k x k; grouped;
depthwise), matmul, attention, norms (batch; layer and group), pools (windowed max and
windowed average, each with disjoint or overlapping windows; global average), element-wise operators by what bounds them on a CPU
core (activations that evaluate a transcendental; copies and layout changes, including a
product's copy of a transposed operand; the rest). A class has two efficiencies, one for each
side of the roof (a 1x1 convolution of ResNet-50 is compute-bound and runs near its rate,
one of MobileNet's is memory-bound and runs far from its bandwidth), both at most 1, so no
prediction is below its bound; small operators are slower than their share of the roof
by the class's fixed overhead.

On a CPU everything is fitted on this machine (``latency_calibrate``): the operators of a
fixed set of calibration networks (``latency_nets``) are timed one by one inside those
networks, on real tensors, and each class's curve is fitted to them; ``python`` is what a
plain forward of those networks takes beyond its fitted operators (module calls, wrappers,
views), per kernel. All of it is cached like the roof. For GPUs the efficiencies and the
launch overhead are the stated defaults of ``GPU_DEFAULTS``, each with its source, and
``python`` is 0 (the CPU queues kernels ahead of the GPU), until a GPU run fits them
(``bench/latency_prediction.py --target auto``).

This is an estimate. Its error, measured on this CPU over the zoo and other families at
batch 1 and 16 (networks outside the calibration set), is in
``reports/latency_prediction_cpu.md``. What it leaves out: an operator's time depends only
on its class, its FLOPs and its bytes (its shape beyond them, e.g. a 1x1 convolution with
16 channels over a large image, which oneDNN runs far slower than its bytes suggest, is
averaged over by the fit); caches beyond the two tiers of
``Rates`` (an activation still in cache from the layer before moves faster, and the first
operator after a large one finds its code and data evicted: the fit sees both as they
happened in the calibration networks); fusion (oneDNN folding a bias or ReLU into a
convolution); Python's time as a constant per kernel, whatever the modules around it; and
the machine's state (another job sharing the core's caches or the memory bus slows every
operator: a calibration on a busy machine predicts a busy machine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from . import precision

# A class fitted a second time on its operators whose bytes fit the target's cache tier
# (``Rates.in_cache``) is stored under ``class + CACHE_TIER``: small kernels have their own
# fixed cost and reach their own share of the cache's rate (a per-channel batch norm over a
# 50 KB activation costs what its call costs; a copy within L2 runs near the copy's rate).
CACHE_TIER = "@cache"
CLASSES = ("conv_stem", "conv_1x1", "conv_kxk", "conv_grouped", "conv_depthwise", "matmul", "attention",
           "norm_batch", "norm_layer", "pool_max", "pool_max_overlap", "pool_avg", "pool_avg_overlap", "pool_global",
           "activation", "layout", "elementwise")
# Norms and pools by kind: on a CPU an eval batch norm is a per-channel scale and shift while
# a layer norm reduces over each row first; windowed pooling reads each input element once
# per window holding it, so overlapping windows (ResNet's 3x3/2, Inception's 3x3/1: up to 9
# reads per element) are their own classes beside disjoint ones (VGG's 2x2/2); adaptive
# (global) average pooling reads it once.
BATCH_NORM_OPS = frozenset({"batch_norm", "native_batch_norm", "_native_batch_norm_legit_no_training"})
NORM_OPS = frozenset({"layer_norm", "group_norm", "instance_norm", "rms_norm", "local_response_norm",
                      "native_layer_norm", "native_group_norm"})
ATTENTION_OPS = frozenset({"scaled_dot_product_attention"})
GLOBAL_POOL_OPS = frozenset({"adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d"})
# Views whose schema declares no alias, so a counting pass records their output as written;
# on a device they return an alias of their input and move nothing.
ALIAS_OPS = frozenset({"unsafe_view", "_unsafe_view", "_reshape_alias"})
# Element-wise operators by what bounds them on a CPU core: activations that evaluate a
# transcendental or a piecewise polynomial per element (exp, erf, tanh, division: the vector
# unit's time, not memory's), copies and layout changes (strided reads), and the rest
# (ReLU, clamps, additions and products: a pass over memory).
ACTIVATION_OPS = frozenset("""
gelu silu sigmoid tanh hardswish hardsigmoid softmax _softmax log_softmax _log_softmax mish elu selu celu
softplus exp erf sin cos pow rsqrt sqrt log normalize logsigmoid
""".split())
LAYOUT_OPS = frozenset("""
cat stack clone copy copy_ _to_copy to contiguous unsafe_view _unsafe_view index index_select gather
constant_pad_nd pad roll flip repeat tile expand_copy permute_copy transpose_copy channel_shuffle
pixel_shuffle pixel_unshuffle
""".split())


@dataclass
class Efficiencies:
    """Per operator class: the fraction of the compute rate (``efficiency``) and of the
    bandwidth (``memory_efficiency``; absent: ``efficiency``) its operators attain, and a
    fixed time per kernel (seconds); ``python_s`` is added to every kernel of every class:

        time = max(compute / efficiency, memory / memory_efficiency) + overhead + python_s

    Efficiencies are taken in (0, 1], so a time is never below its bound. ``source`` says how
    they were obtained."""

    efficiency: Dict[str, float]
    overhead_s: Dict[str, float]
    source: str
    fit: Dict[str, dict] = field(default_factory=dict)  # class -> samples, rms relative error
    memory_efficiency: Dict[str, float] = field(default_factory=dict)
    python_s: float = 0.0  # per kernel: the forward's time outside the kernels (module calls, views), spread evenly

    def of(self, cls: str, in_cache: bool = False):
        """(compute efficiency, memory efficiency, overhead) of ``cls`` (the element-wise class's
        when absent); for an operator in the cache tier, the class's own fit there
        (``cls + CACHE_TIER``) where it has one."""
        key = cls + CACHE_TIER if in_cache and cls + CACHE_TIER in self.efficiency else cls
        key = key if key in self.efficiency else "elementwise"
        e = self.efficiency.get(key, 1.0)
        m = self.memory_efficiency.get(key, e)
        c = self.overhead_s.get(key, 0.0)
        return min(1.0, max(e, 1e-6)), min(1.0, max(m, 1e-6)), max(0.0, c)

    def seconds(self, cls: str, compute_s: float, memory_s: float, in_cache: bool = False) -> float:
        """The predicted time of one kernel of ``cls`` (Python's time excluded)."""
        e, m, c = self.of(cls, in_cache)
        return max(compute_s / e, memory_s / m) + c


# GPU defaults: stated, not fitted here (no GPU has been lent to this project). Each figure
# is a round value from its source; a GPU run of bench/latency_prediction.py replaces them.
_CUBLAS = ("NVIDIA, 'Matrix Multiplication Background User's Guide' (docs.nvidia.com/deeplearning/performance): "
           "large GEMMs reach 70-80% of the tensor-core peak")
_MEMBOUND = ("NVIDIA, 'GPU Performance Background User's Guide': memory-bound kernels reach 80-90% of the "
             "datasheet bandwidth")
_LAUNCH = "a CUDA kernel launch costs 3-5 us from eager PyTorch (PyTorch blog, 'Accelerating PyTorch with CUDA Graphs')"
GPU_DEFAULTS = Efficiencies(
    efficiency={"conv_stem": 0.3, "conv_1x1": 0.6, "conv_kxk": 0.6, "conv_grouped": 0.3, "conv_depthwise": 0.5,
                "matmul": 0.7, "attention": 0.5, "norm_batch": 0.8, "norm_layer": 0.8, "pool_max": 0.8,
                "pool_avg": 0.8, "pool_max_overlap": 0.8, "pool_avg_overlap": 0.8, "pool_global": 0.8,
                "activation": 0.85, "layout": 0.85, "elementwise": 0.85},
    overhead_s={c: 4e-6 for c in CLASSES},
    source=f"stated defaults, not measured on this GPU: compute efficiencies after {_CUBLAS} (convolutions, "
           f"grouped and depthwise lower, a guess; memory-bound classes as their memory efficiency); memory "
           f"efficiencies 0.85 after {_MEMBOUND}; overhead: {_LAUNCH}",
    memory_efficiency={c: 0.85 for c in CLASSES})


def conv_kind(module) -> str:
    """The class of a convolution module (``nn.ConvNd``-like: in_channels, groups, kernel_size)."""
    groups = int(getattr(module, "groups", 1) or 1)
    cin = int(getattr(module, "in_channels", 0) or 0)
    kernel = tuple(getattr(module, "kernel_size", ()) or ())
    if groups > 1 and groups == cin:
        return "conv_depthwise"
    if groups > 1:
        return "conv_grouped"
    if 0 < cin <= 4:
        return "conv_stem"
    if kernel and all(k == 1 for k in kernel):
        return "conv_1x1"
    return "conv_kxk"


def pool_kind(module) -> Optional[str]:
    """The class of a windowed pooling module (``nn.MaxPoolNd``/``AvgPoolNd``-like: kernel_size,
    stride): '_overlap' when a window is wider than its stride; None for other modules."""
    kind = type(module).__name__.lower()
    kernel = getattr(module, "kernel_size", None)
    if "pool" not in kind or "adaptive" in kind or kernel is None or ("max" not in kind and "avg" not in kind):
        return None
    n = 3 if "3d" in kind else 1 if "1d" in kind else 2
    kernel = tuple(kernel) if isinstance(kernel, (tuple, list)) else (kernel,) * n
    stride = getattr(module, "stride", None) or kernel
    stride = tuple(stride) if isinstance(stride, (tuple, list)) else (stride,) * n
    base = "pool_max" if "max" in kind else "pool_avg"
    return base + "_overlap" if any(int(k) > int(s) for k, s in zip(kernel, stride)) else base


def conv_kinds(model) -> Dict[str, str]:
    """module name -> class, for every convolution and windowed pooling module of ``model``."""
    out = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "in_channels") and hasattr(mod, "kernel_size") and hasattr(mod, "groups"):
            out[name] = conv_kind(mod)
        elif pool_kind(mod):
            out[name] = pool_kind(mod)
    return out


def op_class(op: str, module: str = "", kinds: Optional[Mapping[str, str]] = None, macs: Optional[int] = None) -> str:
    """The class of one operator record; ``macs`` = 0 inside a convolution or a product is its
    copy of an operand (a transposed input made contiguous): a layout operator."""
    engine = precision.engine_of(op)
    if engine in ("conv", "matmul") and macs == 0 and op not in ATTENTION_OPS:
        return "layout"
    if engine == "conv":
        return (kinds or {}).get(module, "conv_kxk")
    if op in ATTENTION_OPS:
        return "attention"
    if engine == "matmul":
        return "matmul"
    if op in BATCH_NORM_OPS:
        return "norm_batch"
    if op in NORM_OPS:
        return "norm_layer"
    if op in GLOBAL_POOL_OPS:
        return "pool_global"
    if "pool" in op:
        kind = (kinds or {}).get(module, "")
        return kind if kind.startswith("pool_") else "pool_max" if "max" in op else "pool_avg"
    base = op.rstrip("_") if op.endswith("_") and not op.startswith("_") else op
    if base in ACTIVATION_OPS:
        return "activation"
    if base in LAYOUT_OPS:
        return "layout"
    return "elementwise"


@dataclass(frozen=True)
class Rates:
    """A target's rates: FLOP/s per rate column (float32, tf32, float16, ...), bytes/s, and
    which column each engine uses for the run's dtype (``precision.rates_for``)."""

    device: str
    columns: Mapping[str, float]  # column -> FLOP/s
    bandwidth: float
    dtype: str
    tf32: str = "torch-default"
    cache_bandwidth: float = 0.0  # a second tier for operators moving at most cache_bytes (CPU: L2); 0 = none
    cache_bytes: int = 0
    fresh_bandwidth: float = 0.0  # CPU: bytes/s of writing an output into fresh pages (calibrate.py); 0 = none
    fresh_bytes: int = 0  # outputs of at least this many bytes are written into fresh pages

    def in_cache(self, moved: int) -> bool:
        """Whether an operator moving ``moved`` bytes is bounded by the cache tier."""
        return bool(self.cache_bandwidth) and moved <= self.cache_bytes

    def bandwidth_for(self, moved: int) -> float:
        return self.cache_bandwidth if self.in_cache(moved) else self.bandwidth

    def column(self, op: str) -> Optional[str]:
        return precision.rate_column(op, self.dtype, self.columns, self.tf32)

    def flops_per_s(self, op: str) -> float:
        col = self.column(op)
        if col is None:
            raise ValueError(f"{self.device} has no {self.dtype} rate (it has {', '.join(self.columns)})")
        return self.columns[col]


def op_times_s(o, rates: Rates):
    """(FLOPs / the operator's rate, bytes / bandwidth of the tier they fit in), seconds
    ((0, 0) for an ``ALIAS_OPS`` view)."""
    if o.op in ALIAS_OPS:
        return 0.0, 0.0
    flops = 2 * int(o.macs)
    t_c = flops / rates.flops_per_s(o.op) if flops else 0.0
    moved = int(o.bytes_read) + int(o.bytes_written)
    return t_c, moved / rates.bandwidth_for(moved)


def op_fresh_s(o, rates: Rates) -> float:
    """What an operator's output costs beyond its bound for landing in fresh pages: on a CPU
    with glibc an output of at least ``fresh_bytes`` gets a new mapping, faulted in and zeroed
    as it is written (``calibrate.py``); an in-place operator or a view allocates nothing. 0
    on a GPU (the caching allocator keeps its blocks)."""
    if not rates.fresh_bandwidth or o.inplace or o.op in ALIAS_OPS or int(o.bytes_written) < rates.fresh_bytes:
        return 0.0
    return int(o.bytes_written) / rates.fresh_bandwidth


def op_in_cache(o, rates: Rates) -> bool:
    """Whether the operator's bytes fit the target's cache tier (its memory time is at the cache's rate)."""
    return rates.in_cache(int(o.bytes_read) + int(o.bytes_written))


def op_bound_s(o, rates: Rates) -> float:
    """The operator's roofline bound: the larger of its compute and memory times, seconds."""
    return max(op_times_s(o, rates))


def predict_ops(ops: Iterable, rates: Rates, eff: Efficiencies, kinds: Optional[Mapping[str, str]] = None) -> List[dict]:
    """One dict per operator: module, op, class, rate column, bound_ms, predicted_ms."""
    out = []
    for o in ops:
        cls = op_class(o.op, o.module, kinds, o.macs)
        t_c, t_m = op_times_s(o, rates)
        bound = max(t_c, t_m)
        fresh = op_fresh_s(o, rates)
        out.append({"module": o.module, "op": o.op, "op_class": cls, "rate": rates.column(o.op) if o.macs else "",
                    "macs": int(o.macs), "bytes": int(o.bytes_read) + int(o.bytes_written),
                    "bound_ms": bound * 1e3,
                    "predicted_ms": (eff.seconds(cls, t_c, t_m, op_in_cache(o, rates)) + fresh + eff.python_s) * 1e3})
    return out


def by_layer(predicted: Sequence[dict], leaves: Optional[set] = None) -> Dict[str, dict]:
    """Per layer (``roofline.layer_name``'s rows): bound_ms, predicted_ms, the rate columns used."""
    from .bounds import layer_name

    rows: Dict[str, dict] = {}
    for p in predicted:
        name = layer_name(p["module"], leaves)
        r = rows.setdefault(name, {"bound_ms": 0.0, "predicted_ms": 0.0, "rates": []})
        r["bound_ms"] += p["bound_ms"]
        r["predicted_ms"] += p["predicted_ms"]
        if p["rate"] and p["rate"] not in r["rates"]:
            r["rates"].append(p["rate"])
    for r in rows.values():
        r["rate"] = "+".join(r.pop("rates"))
    return rows


def totals(predicted: Sequence[dict]) -> dict:
    return {"bound_ms": sum(p["bound_ms"] for p in predicted),
            "predicted_ms": sum(p["predicted_ms"] for p in predicted), "kernels": len(predicted)}
