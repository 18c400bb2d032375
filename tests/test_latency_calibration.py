"""The CPU's latency calibration (issue #21): operators timed inside real networks, and the
fixed set of calibration networks it runs."""

from collections import Counter

import pytest

import torch
import torch.nn as nn

from archcost.count.engine import run_pass
from archcost.roofline import latency_nets
from archcost.roofline.attention_bytes import AttentionCalls, fuse
from archcost.roofline.latency import CLASSES, conv_kinds, op_class
from archcost.roofline.latency_calibrate import BATCHES, MIN_SAMPLES
from archcost.roofline.op_timing import harness_seconds, timed_ops


def test_timed_operators_are_the_counting_pass_records():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()
    x = torch.randn(2, 3, 8, 8)
    tp = timed_ops(model, (x,), repeats=2)
    plain = run_pass(model, (x,), record_ops=True).ops
    assert [(o.op, o.module, o.macs, o.bytes_read, o.bytes_written) for o in tp.ops] == \
        [(o.op, o.module, o.macs, o.bytes_read, o.bytes_written) for o in plain]
    assert len(tp.seconds) == len(tp.ops) and all(s >= 0 for s in tp.seconds)
    assert tp.forward_s > 0 and tp.python_s >= 0 and tp.harness_s >= 0
    assert tp.module_calls == 1 + 4  # the Sequential and its four children, once each


def test_harness_cost_is_not_negative():
    assert harness_seconds(calls=20) >= 0


def test_calibration_networks_hold_every_class():
    """Every operator class gets at least MIN_SAMPLES operators over the calibration batches,
    so none falls back to the element-wise fit."""
    seen = Counter()
    for name in latency_nets.CALIBRATION_NETWORKS:
        model = latency_nets.build(name)
        kinds = conv_kinds(model)
        with AttentionCalls() as cap:
            res = run_pass(model.to("meta"), (torch.empty(1, 3, 224, 224, device="meta"),), record_ops=True)
        ops, _ = fuse(res.ops, cap.calls)
        seen.update(op_class(o.op, o.module, kinds, o.macs) for o in ops)
    assert {c: seen[c] * len(BATCHES) for c in CLASSES if seen[c] * len(BATCHES) < MIN_SAMPLES} == {}


@pytest.mark.parametrize("corrupt", [
    lambda d: {**d, "memory_efficiency": {c: 2.0 for c in CLASSES}},  # above 1: a prediction below its bound
    lambda d: {k: v for k, v in d.items() if k != "memory_efficiency"},  # the previous format (power law)
    lambda d: {**d, "python_s": -1.0},
    lambda d: [d],
])
def test_the_fit_is_cached_and_a_bad_cache_is_fitted_again(monkeypatch, tmp_path, corrupt):
    import json

    from archcost.roofline import calibrate as cc, latency_calibrate as lc
    from archcost.roofline.latency import Efficiencies, Rates

    monkeypatch.setenv("ARCHCOST_CACHE_DIR", str(tmp_path))
    fits = []
    known = Efficiencies({c: 0.5 for c in CLASSES}, {c: 1e-6 for c in CLASSES}, "known",
                         memory_efficiency={c: 0.25 for c in CLASSES}, python_s=2e-6)
    monkeypatch.setattr(lc, "calibrate", lambda rates, log=None: fits.append(1) or known)
    rates = Rates("cpu", {"float32": 1e11}, 1e10, "float32")
    assert lc.cpu_efficiencies(rates) is known and len(fits) == 1
    again = lc.cpu_efficiencies(rates)
    assert len(fits) == 1 and (again.efficiency, again.memory_efficiency, again.overhead_s, again.python_s) == \
        (known.efficiency, known.memory_efficiency, known.overhead_s, known.python_s)
    path = cc.cache_path("cpu-latency")
    path.write_text(json.dumps(corrupt(json.loads(path.read_text()))))
    assert lc.cpu_efficiencies(rates) is known and len(fits) == 2
