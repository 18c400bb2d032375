"""A target's rates and efficiencies, and the per-layer predicted time of a counted model.

``target_rates`` resolves what ``--target`` names into the ``Rates`` of ``latency.py``
(rate per precision column, bandwidth, the ``--tf32`` mode) and the ``Efficiencies`` that
turn bounds into predicted times: for 'cpu' this machine's calibration and fit (measured
once, cached), for a GPU of the device table its datasheet rates and the stated defaults.
``count_ops`` counts a model's operators as the device runs them (the fused attention
kernel's bytes, ``attention_bytes.py``).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from .latency import GPU_DEFAULTS, Efficiencies, Rates


def gpu_rates(peak, dtype: str, tf32: str = "torch-default") -> Rates:
    """A device-table entry's rates (``DevicePeak``)."""
    return Rates(peak.name, {k: v * 1e12 for k, v in peak.tflops.items()}, peak.bandwidth_bytes_per_s, dtype, tf32)


def target_rates(target: str, dtype: str, tf32: str = "torch-default", refresh: bool = False,
                 log=None) -> Tuple[Rates, Efficiencies, Optional[object]]:
    """(rates, efficiencies, the CPU calibration or None) for a --target name ('cpu' or a
    device key). Raises ValueError for an unknown target."""
    if target == "cpu":
        from . import calibrate as cpu_calibration, latency_calibrate

        cal = cpu_calibration.calibration(refresh=refresh)
        rates = latency_calibrate.cpu_rates(cal, dtype)
        eff = latency_calibrate.cpu_efficiencies(rates, refresh=refresh, stable=cal.stable, log=log)
        return rates, eff, cal
    from archcost.devices import by_key

    peak = by_key(target)
    if peak is None:
        raise ValueError(f"unknown target {target!r}")
    return gpu_rates(peak, dtype, tf32), GPU_DEFAULTS, None


def count_ops(model, inputs, kwargs=None):
    """The per-operator records of one counting pass, with each SDPA call's records replaced
    by the fused kernel's. -> (records, attention calls fused, the pass result)."""
    from archcost.count.engine import run_pass

    from .attention_bytes import AttentionCalls, fuse

    with AttentionCalls() as cap:
        res = run_pass(model, tuple(inputs), kwargs, record_ops=True)
    ops, fused = fuse(res.ops, cap.calls)
    return ops, fused, res


def layer_predictions(ops, rates: Rates, eff: Efficiencies, kinds=None, leaves=None) -> Dict[str, dict]:
    """layer -> {bound_ms, predicted_ms, rate}: the operators' sums per roofline row."""
    from .latency import by_layer, predict_ops

    return by_layer(predict_ops(ops, rates, eff, kinds), leaves)
