"""Predicted latency: the roofline bound of each operator, divided by the efficiency its
class reaches on the target, plus a fixed cost per kernel.

    predicted_ms(op) = max(flops / rate(op), bytes / bandwidth) / efficiency(class, size)
                       + overhead(class)

summed over a model's operators (kernels run one after another in an eager forward).
``rate(op)`` is the arithmetic rate the device runs the operator at (``precision.py``: FP32,
TF32 or the tensor rate; on a CPU its modelled hardware peak, ``devices/cpu_facts.py``).
The classes: convolutions by kind (stem: at most 4 input channels; 1x1; k x k; grouped;
depthwise), matmul, attention, norms (batch; layer and group), pools (max; average),
elementwise (everything else that moves data). The efficiency of a class may depend on the
operator's size (a power law in its bound, ``Efficiencies``); a prediction is never below
the bound.

On a CPU the efficiencies are fitted on this machine (``latency_calibrate``: each class
timed on a set of layer shapes, a least-squares line through log time against log bound)
and the per-kernel overhead is the time of a module call on a one-element tensor; both are
cached like the roof. For GPUs they are the stated defaults of ``GPU_DEFAULTS``, each
with its source, until a GPU run fits them (``bench/latency_prediction.py --target auto``).

This is an estimate. Its error, measured on this CPU over the zoo and other families at
batch 1 and 16, is in ``reports/latency_prediction_cpu.md``; what it leaves out: caches
beyond the two tiers of ``Rates`` (an activation still in L3 from the layer before moves
faster than the calibrated bandwidth: the fitted efficiencies absorb that on average), fusion (oneDNN or cuDNN folding a bias or ReLU into
the convolution), and Python's own time between modules beyond the per-kernel overhead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from . import precision

CLASSES = ("conv_stem", "conv_1x1", "conv_kxk", "conv_grouped", "conv_depthwise", "matmul", "attention",
           "norm_batch", "norm_layer", "pool_max", "pool_avg", "elementwise")
# Norms and pools by kind: on a CPU an eval batch norm is a per-channel scale and shift while
# a layer norm reduces over each row first; max pooling writes int64 indices and runs far
# from its bound (18x for ResNet's 3x3/2 at one thread), average pooling does not.
BATCH_NORM_OPS = frozenset({"batch_norm", "native_batch_norm", "_native_batch_norm_legit_no_training"})
NORM_OPS = frozenset({"layer_norm", "group_norm", "instance_norm", "rms_norm", "local_response_norm",
                      "native_layer_norm", "native_group_norm"})
ATTENTION_OPS = frozenset({"scaled_dot_product_attention"})


@dataclass
class Efficiencies:
    """Per operator class: the efficiency ``e`` (fraction of the bound's rate attained) of an
    operator whose bound is ``REFERENCE_S``, how it changes with size (``exponent`` b: 1 =
    the same at every size; below 1, small operators are less efficient than large ones), and
    a fixed time per kernel (seconds):

        time(bound) = max(bound, REFERENCE_S x (bound / REFERENCE_S) ** b / e) + overhead

    The max keeps every prediction at or above its bound. ``source`` says how they were
    obtained."""

    efficiency: Dict[str, float]
    overhead_s: Dict[str, float]
    source: str
    fit: Dict[str, dict] = field(default_factory=dict)  # class -> samples, rms relative error
    exponent: Dict[str, float] = field(default_factory=dict)  # class -> b (1 when absent)

    def of(self, cls: str):
        e = self.efficiency.get(cls, self.efficiency.get("elementwise", 1.0))
        b = self.exponent.get(cls, 1.0)
        c = self.overhead_s.get(cls, self.overhead_s.get("elementwise", 0.0))
        return max(e, 1e-6), b, max(0.0, c)

    def seconds(self, cls: str, bound_s: float) -> float:
        """The predicted time of one kernel of ``cls`` whose roofline bound is ``bound_s``."""
        e, b, c = self.of(cls)
        if bound_s <= 0:
            return c
        return max(bound_s, REFERENCE_S * (bound_s / REFERENCE_S) ** b / e) + c


REFERENCE_S = 1e-3  # the bound at which an efficiency is stated (1 ms)


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
                "pool_avg": 0.8, "elementwise": 0.85},
    overhead_s={c: 4e-6 for c in CLASSES},
    source=f"stated defaults, not measured on this GPU: compute-bound classes after {_CUBLAS} (convolutions, "
           f"grouped and depthwise lower, a guess); memory-bound classes after {_MEMBOUND}; overhead: {_LAUNCH}")


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


def conv_kinds(model) -> Dict[str, str]:
    """module name -> conv class, for every convolution module of ``model``."""
    out = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "in_channels") and hasattr(mod, "kernel_size") and hasattr(mod, "groups"):
            out[name] = conv_kind(mod)
    return out


def op_class(op: str, module: str = "", kinds: Optional[Mapping[str, str]] = None) -> str:
    engine = precision.engine_of(op)
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
    if "pool" in op:
        return "pool_max" if "max" in op else "pool_avg"
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

    def bandwidth_for(self, moved: int) -> float:
        return self.cache_bandwidth if self.cache_bandwidth and moved <= self.cache_bytes else self.bandwidth

    def column(self, op: str) -> Optional[str]:
        return precision.rate_column(op, self.dtype, self.columns, self.tf32)

    def flops_per_s(self, op: str) -> float:
        col = self.column(op)
        if col is None:
            raise ValueError(f"{self.device} has no {self.dtype} rate (it has {', '.join(self.columns)})")
        return self.columns[col]


def op_bound_s(o, rates: Rates) -> float:
    """max(FLOPs / the operator's rate, bytes / bandwidth of the tier they fit in), seconds."""
    flops = 2 * int(o.macs)
    t_c = flops / rates.flops_per_s(o.op) if flops else 0.0
    moved = int(o.bytes_read) + int(o.bytes_written)
    return max(t_c, moved / rates.bandwidth_for(moved))


def predict_ops(ops: Iterable, rates: Rates, eff: Efficiencies, kinds: Optional[Mapping[str, str]] = None) -> List[dict]:
    """One dict per operator: module, op, class, rate column, bound_ms, predicted_ms."""
    out = []
    for o in ops:
        cls = op_class(o.op, o.module, kinds)
        bound = op_bound_s(o, rates)
        out.append({"module": o.module, "op": o.op, "op_class": cls, "rate": rates.column(o.op) if o.macs else "",
                    "macs": int(o.macs), "bytes": int(o.bytes_read) + int(o.bytes_written),
                    "bound_ms": bound * 1e3, "predicted_ms": eff.seconds(cls, bound) * 1e3})
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
