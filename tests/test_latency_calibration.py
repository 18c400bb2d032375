"""The CPU's latency calibration (issue #21): operators timed inside real networks, and the
fixed set of calibration networks it runs."""

from collections import Counter

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
