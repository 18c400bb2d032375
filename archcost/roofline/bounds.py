"""Roofline: bytes moved, arithmetic intensity, and the fastest a layer can possibly run.

The bytes model is "each operand crosses DRAM once": every ATen operator a layer runs
reads each of its tensor operands (input activations, weights, buffers; each distinct
storage once) from memory and writes its outputs once. A layer's ``bytes_read`` and
``bytes_written`` are the sums over its operators, so an intermediate between two
operators of one layer is written and read back (no fusion). What this ignores: reuse
through caches across operators and layers (an output still in L2 when the next layer
reads it), re-reads inside a kernel when tiles do not fit on chip, im2col and other
workspaces, and fused epilogues (a ReLU folded into the convolution before it costs no
traffic on a GPU with cuDNN fusion). So ``time_memory_ms`` is the time to move the bytes
an unfused run must move, at the datasheet bandwidth, not a prediction of a profile.

An in-place operator (``ReLU(inplace=True)``) reads its input and writes the same
storage: it counts both (N bytes read, N written). In-place saves memory capacity, not
traffic: the values still travel to the arithmetic units and back.

Per layer, for a roof (peak FLOP/s, bandwidth, and optionally a launch overhead):
``flops`` = 2 x MACs; ``arithmetic_intensity`` = flops / (bytes_read + bytes_written);
``time_compute_ms`` = flops / peak; ``time_memory_ms`` = bytes / bandwidth;
``time_overhead_ms`` = kernels x launch overhead (one kernel per ATen operator);
``time_bound_ms`` = the largest of the three, and ``bound`` names it. The maximum, not
the sum: a device overlaps transfers with arithmetic, and a queue of launches with the
kernels already running, so a layer cannot finish before its slowest resource does.
Operators without a MAC rule (max pooling, ReLU, additions) count 0 FLOPs: their compute
time is taken as 0 and they are memory-bound, as they are in practice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

OWN = " [own ops]"
BOUNDS = ("compute", "memory", "overhead")
LAYER_COLUMNS = ["layer", "type", "kernels", "macs", "flops", "bytes_read", "bytes_written",
                 "arithmetic_intensity", "rate", "time_compute_ms", "time_memory_ms", "time_overhead_ms",
                 "time_bound_ms", "bound", "share_of_bound"]
# The share of the model's MAC-layer time bound that defines its "heaviest layers".
HEAVIEST_SHARE = 0.8


@dataclass(frozen=True)
class Roof:
    """A device's ceilings for one dtype: ``peak_flops`` (FLOP/s), ``bandwidth`` (bytes/s),
    and a per-kernel ``launch_overhead_s`` (0 = not modelled). With ``columns`` (the device's
    rate per precision column) each operator is bounded at the rate its precision runs at
    (``precision.py``: float32 products at FP32 unless ``tf32`` enables TF32, convolutions at
    cuDNN's TF32, float16/bfloat16 at the tensor rate); ``peak_flops``/``dtype`` are then the
    convolutions' rate, the headline."""

    device: str
    dtype: str  # the peak's column: float32, tf32, float16, bfloat16
    peak_flops: float
    bandwidth: float
    source: str = ""
    launch_overhead_s: float = 0.0
    columns: Tuple[Tuple[str, float], ...] = ()  # (column, FLOP/s) pairs; () = one rate for all
    run_dtype: str = ""  # the dtype the model runs in
    tf32: str = "torch-default"

    def rate_of(self, op: str) -> Tuple[str, float]:
        """(column, FLOP/s) that bounds operator ``op``."""
        if self.columns:
            from .precision import rate_column

            table = dict(self.columns)
            col = rate_column(op, self.run_dtype or self.dtype, table, self.tf32)
            if col is not None:
                return col, table[col]
        return self.dtype, self.peak_flops

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP/byte) where the two roofs meet."""
        return self.peak_flops / self.bandwidth

    def attainable(self, intensity: float) -> float:
        """FLOP/s the roofline allows at ``intensity``: min(peak, intensity x bandwidth)."""
        return min(self.peak_flops, intensity * self.bandwidth)


def layer_name(module: str, leaves: Optional[set]) -> str:
    """The row an operator belongs to: its module when that is a leaf (or when no leaf set
    is given), else the module's own functional code, '<module> [own ops]' ('(model)'
    for the model's forward)."""
    if leaves is None or module in leaves:
        return module or "(model)"
    return (module or "(model)") + OWN


def aggregate(ops: Iterable, leaves: Optional[set] = None, types: Optional[Mapping[str, str]] = None,
              roof: Optional[Roof] = None) -> List[dict]:
    """Sum op records (``module, op, macs, bytes_read, bytes_written, inplace``) per layer,
    in the order the layers first ran. ``leaves``: names of leaf modules; ``types``: module
    name -> class name; ``roof``: each operator's compute time at its own rate
    (``Roof.rate_of``), summed in ``compute_s``, and the rates used in ``rate``."""
    rows: Dict[str, dict] = {}
    for o in ops:
        name = layer_name(o.module, leaves)
        row = rows.get(name)
        if row is None:
            kind = "functional" if name.endswith(OWN) else (types or {}).get(o.module, "")
            row = rows[name] = {"layer": name, "type": kind, "kernels": 0, "macs": 0, "bytes_read": 0,
                                "bytes_written": 0, "operators": []}
        row["kernels"] += 1
        row["macs"] += int(o.macs)
        row["bytes_read"] += int(o.bytes_read)
        row["bytes_written"] += int(o.bytes_written)
        if roof is not None and o.macs:
            col, rate = roof.rate_of(o.op)
            row["compute_s"] = row.get("compute_s", 0.0) + 2 * int(o.macs) / rate
            row.setdefault("rates", [])
            if col not in row["rates"]:
                row["rates"].append(col)
        if o.op not in row["operators"]:
            row["operators"].append(o.op)
    out = list(rows.values())
    for row in out:
        row["flops"] = 2 * row["macs"]
        row["operators"] = ",".join(row["operators"])
        if roof is not None:
            row["rate"] = "+".join(row.pop("rates", []))
    return out


def bound_layer(row: dict, roof: Roof) -> dict:
    """The roofline columns of one aggregated row (a new dict)."""
    moved = row["bytes_read"] + row["bytes_written"]
    flops = 2 * row["macs"]
    t_compute = row["compute_s"] if "compute_s" in row else flops / roof.peak_flops
    t_memory = moved / roof.bandwidth
    t_overhead = row["kernels"] * roof.launch_overhead_s
    times = {"compute": t_compute, "memory": t_memory, "overhead": t_overhead}
    # Ties go to the first of compute, memory, overhead; an op-less row has no bound.
    which = max(BOUNDS, key=lambda b: (times[b], -BOUNDS.index(b))) if any(times.values()) else ""
    return {**row, "flops": flops,
            "arithmetic_intensity": flops / moved if moved else None,
            "time_compute_ms": t_compute * 1e3, "time_memory_ms": t_memory * 1e3,
            "time_overhead_ms": t_overhead * 1e3, "time_bound_ms": max(times.values()) * 1e3,
            "bound": which, "rate": row.get("rate", roof.dtype if flops else ""),
            # the layer's own ridge: where its rate and the bandwidth meet
            "ridge": (flops / t_compute / roof.bandwidth) if flops and t_compute else roof.ridge}


def bound_layers(rows: Sequence[dict], roof: Roof) -> List[dict]:
    out = [bound_layer(r, roof) for r in rows]
    total = sum(r["time_bound_ms"] for r in out)
    for r in out:
        r["share_of_bound"] = r["time_bound_ms"] / total if total else None
    return out


def ridge_batch(macs_per_image, bytes_fixed, bytes_per_image, ridge: float) -> Optional[int]:
    """Smallest batch b >= 1 at which 2 x macs x b / (bytes_fixed + bytes_per_image x b)
    reaches ``ridge``; None when it never does (intensity tends to 2 x macs / bytes_per_image).
    Exact rational arithmetic, so a layer exactly on the ridge counts as crossed."""
    m, w, a, r = Fraction(macs_per_image), Fraction(bytes_fixed), Fraction(bytes_per_image), Fraction(ridge)
    if m <= 0:
        return None
    slope = 2 * m - r * a
    if slope <= 0:
        return None
    return max(1, math.ceil(r * w / slope))


def split_bytes(rows_a: Sequence[dict], batch_a: int, rows_b: Sequence[dict], batch_b: int) -> Dict[str, tuple]:
    """Per layer: (macs per image, fixed bytes, bytes per image) from the same layers counted
    at two batch sizes. Bytes are affine in the batch (weights once, activations per image),
    so two counts determine both parts exactly."""
    by_name = {r["layer"]: r for r in rows_b}
    out = {}
    for r in rows_a:
        s = by_name.get(r["layer"])
        if s is None:
            continue
        moved_a = r["bytes_read"] + r["bytes_written"]
        moved_b = s["bytes_read"] + s["bytes_written"]
        per_image = Fraction(moved_b - moved_a, batch_b - batch_a)
        out[r["layer"]] = (Fraction(r["macs"], batch_a), moved_a - per_image * batch_a, per_image)
    return out


def add_ridge_batches(rows: List[dict], parts: Mapping[str, tuple], ridge: float) -> None:
    """Each row's ridge batch at its own ridge (its rate's, when bounded per operator), else ``ridge``."""
    for r in rows:
        p = parts.get(r["layer"])
        r["ridge_batch"] = ridge_batch(p[0], p[1], p[2], r.get("ridge") or ridge) if p else None


def heaviest(rows: Sequence[dict], share: float = HEAVIEST_SHARE) -> List[dict]:
    """The layers with MACs that, largest time bound first, make up ``share`` of the time
    bound of all layers with MACs."""
    mac_rows = sorted((r for r in rows if r["macs"] > 0), key=lambda r: -r["time_bound_ms"])
    total = sum(r["time_bound_ms"] for r in mac_rows)
    out, acc = [], 0.0
    for r in mac_rows:
        if total and acc >= share * total:
            break
        out.append(r)
        acc += r["time_bound_ms"]
    return out


def summarize(rows: Sequence[dict], roof: Roof, batch_size: int) -> dict:
    """Model-level roofline: the time bound (sum over layers, kernels run one after another),
    per image, the share of it in memory- and overhead-bound layers, the model's aggregate
    intensity, and (when the rows carry ``ridge_batch``) the share in layers that never turn
    compute-bound and the batch from which every one of the heaviest other layers is."""
    total = sum(r["time_bound_ms"] for r in rows)
    flops = sum(r["flops"] for r in rows)
    moved = sum(r["bytes_read"] + r["bytes_written"] for r in rows)
    share = {b: (sum(r["time_bound_ms"] for r in rows if r["bound"] == b) / total if total else None)
             for b in BOUNDS}
    out = {"target": roof.device, "peak_dtype": roof.dtype, "peak_tflops": roof.peak_flops / 1e12,
           "bandwidth_gbs": roof.bandwidth / 1e9, "ridge_flop_per_byte": roof.ridge,
           "launch_overhead_us": roof.launch_overhead_s * 1e6,
           "flops": flops, "bytes_moved": moved, "arithmetic_intensity": flops / moved if moved else None,
           "time_bound_ms": total, "time_bound_per_image_ms": total / batch_size,
           "bound_share_memory": share["memory"], "bound_share_compute": share["compute"],
           "bound_share_overhead": share["overhead"]}
    if rows and all("ridge_batch" in r for r in rows):
        # Layers whose intensity levels off below the ridge (ReLU, pooling, batch norm: no weights
        # to reuse) stay memory-bound at any batch; the heaviest of the others say when batching
        # has made the model's weight-bound work compute-bound.
        never = sum(r["time_bound_ms"] for r in rows if r["ridge_batch"] is None)
        out["bound_share_never_compute"] = never / total if total else None
        heavy = heaviest([r for r in rows if r["ridge_batch"] is not None])
        out["heaviest_layers"] = len(heavy)
        out["ridge_batch_heaviest"] = max(r["ridge_batch"] for r in heavy) if heavy else None
        out["last_to_cross"] = max(heavy, key=lambda r: r["ridge_batch"])["layer"] if heavy else ""
    return out
