"""predicted_ms (issue #21): bound per operator at its precision's rate, / efficiency + overhead."""

import pytest
import torch.nn as nn

from archcost.devices import by_key
from archcost.count.engine import OpRecord
from archcost.roofline.latency import (CLASSES, GPU_DEFAULTS, Efficiencies, Rates, by_layer, conv_kind, conv_kinds,
                                       op_class, op_fresh_s, op_in_cache, op_times_s, pool_kind, predict_ops, totals)
from archcost.roofline.latency_calibrate import EFFICIENCY_GRID, OVERHEAD_US, fit, fit_class

A100 = by_key("a100-80gb")


def a100(dtype="float32", tf32="torch-default"):
    return Rates(A100.name, {k: v * 1e12 for k, v in A100.tflops.items()}, A100.bandwidth_gbs * 1e9, dtype, tf32)


def test_fc_and_conv_bounds_at_their_own_rates():
    fc = OpRecord("fc", "linear", 256 * 2048 * 1000, 4 * (256 * 2048 + 2048 * 1000 + 1000), 4 * 256 * 1000, False)
    conv = OpRecord("conv", "conv2d", 10**10, 10**6, 10**6, False)
    unit = Efficiencies({c: 1.0 for c in CLASSES}, {c: 0.0 for c in CLASSES}, "ideal")
    p = predict_ops([fc, conv], a100(), unit, {"conv": "conv_kxk"})
    assert p[0]["rate"] == "float32" and p[0]["bound_ms"] == pytest.approx(2 * 256 * 2048 * 1000 / 19.5e12 * 1e3)
    assert p[1]["rate"] == "tf32" and p[1]["bound_ms"] == pytest.approx(2 * 10**10 / 156e12 * 1e3)
    half = predict_ops([fc], a100("float16"), unit)[0]
    assert half["rate"] == "float16"  # bytes as recorded; FLOPs at the tensor rate
    assert half["bound_ms"] == pytest.approx(max(2 * 256 * 2048 * 1000 / 312e12, fc.bytes_read / 2039e9 +
                                                 fc.bytes_written / 2039e9) * 1e3)


def test_prediction_is_each_side_over_its_efficiency_plus_overhead_never_below_the_bound():
    relu = OpRecord("a", "relu", 0, 4000, 4000, False)  # memory-bound: no FLOPs
    fc = OpRecord("b", "linear", 10**6, 10**4, 10**3, False)  # compute-bound on an A100 at FP32
    eff = Efficiencies({"elementwise": 0.9, "matmul": 0.25}, {"elementwise": 2e-6, "matmul": 1e-6}, "test",
                       memory_efficiency={"elementwise": 0.5, "matmul": 0.8})
    p = predict_ops([relu, fc], a100(), eff)
    assert p[0]["predicted_ms"] == pytest.approx((8000 / (A100.bandwidth_gbs * 1e9) / 0.5 + 2e-6) * 1e3)
    assert p[1]["predicted_ms"] == pytest.approx((max(2 * 10**6 / 19.5e12 / 0.25, 11000 / (A100.bandwidth_gbs * 1e9) / 0.8)
                                                  + 1e-6) * 1e3)
    assert all(row["predicted_ms"] >= row["bound_ms"] for row in p)
    t = totals(p)
    assert t["predicted_ms"] == pytest.approx(sum(r["predicted_ms"] for r in p)) and t["kernels"] == 2
    layers = by_layer(p)
    assert set(layers) == {"a", "b"} and layers["b"]["rate"] == "float32"
    # an efficiency above 1 is taken as 1: a prediction never beats its bound
    over = Efficiencies({"elementwise": 3.0}, {"elementwise": 0.0}, "bad", memory_efficiency={"elementwise": 3.0})
    assert predict_ops([relu], a100(), over)[0]["predicted_ms"] == pytest.approx(p[0]["bound_ms"])


def test_gpu_defaults_cover_every_class_and_cite_sources():
    for side in (GPU_DEFAULTS.efficiency, GPU_DEFAULTS.memory_efficiency):
        assert set(side) == set(CLASSES) and all(0 < e <= 1 for e in side.values())
    assert "NVIDIA" in GPU_DEFAULTS.source and "not measured" in GPU_DEFAULTS.source


@pytest.mark.parametrize("layer, kind", [
    (nn.Conv2d(3, 64, 7), "conv_stem"), (nn.Conv2d(64, 64, 1), "conv_1x1"), (nn.Conv2d(64, 64, 3), "conv_kxk"),
    (nn.Conv2d(64, 64, 3, groups=32), "conv_grouped"), (nn.Conv2d(64, 64, 3, groups=64), "conv_depthwise"),
])
def test_conv_kinds(layer, kind):
    assert conv_kind(layer) == kind


@pytest.mark.parametrize("layer, kind", [
    (nn.MaxPool2d(2), "pool_max"), (nn.MaxPool2d(3, 2, 1), "pool_max_overlap"), (nn.MaxPool2d(3, 1, 1), "pool_max_overlap"),
    (nn.AvgPool2d(2), "pool_avg"), (nn.AvgPool2d(3, 1, 1), "pool_avg_overlap"), (nn.AvgPool2d((2, 3), (2, 2)), "pool_avg_overlap"),
    (nn.MaxPool1d(4), "pool_max"), (nn.AdaptiveAvgPool2d(1), None), (nn.ReLU(), None),
])
def test_pool_kinds_by_window_overlap(layer, kind):
    """A window wider than its stride reads an element more than once: its own class."""
    assert pool_kind(layer) == kind
    if kind:
        model = nn.Sequential(layer)
        assert op_class("max_pool2d" if "max" in kind else "avg_pool2d", "0", conv_kinds(model)) == kind


def test_operator_classes():
    assert [op_class(o) for o in ("linear", "bmm", "scaled_dot_product_attention", "batch_norm", "layer_norm",
                                  "group_norm", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "relu", "add_",
                                  "hardtanh", "gelu", "silu", "sigmoid", "hardswish", "softmax", "cat", "clone",
                                  "unsafe_view")] == \
        ["matmul", "matmul", "attention", "norm_batch", "norm_layer", "norm_layer", "pool_max", "pool_avg",
         "pool_global", "elementwise", "elementwise", "elementwise", "activation", "activation", "activation",
         "activation", "activation", "layout", "layout", "layout"]
    # a product's or a convolution's record without MACs is its copy of an operand
    assert op_class("linear", macs=0) == "layout" and op_class("linear", macs=10) == "matmul"
    assert op_class("conv2d", "c", {"c": "conv_1x1"}, 0) == "layout"
    assert op_class("scaled_dot_product_attention", macs=0) == "attention"


def test_alias_views_move_nothing():
    """unsafe_view returns an alias on a device: bound 0, so its prediction is its overhead + Python's time."""
    view = OpRecord("m", "unsafe_view", 0, 4 * 10**6, 4 * 10**6, False)
    eff = Efficiencies({"layout": 0.5}, {"layout": 2e-6}, "test", python_s=3e-6)
    p = predict_ops([view], a100(), eff)[0]
    assert p["bound_ms"] == 0 and p["op_class"] == "layout" and p["predicted_ms"] == pytest.approx((2e-6 + 3e-6) * 1e3)


def test_python_time_is_added_per_kernel():
    ops = [OpRecord("a", "relu", 0, 4000, 4000, False)] * 3
    base = Efficiencies({"elementwise": 0.5}, {"elementwise": 2e-6}, "test")
    more = Efficiencies({"elementwise": 0.5}, {"elementwise": 2e-6}, "test", python_s=7e-6)
    t0, t1 = totals(predict_ops(ops, a100(), base)), totals(predict_ops(ops, a100(), more))
    assert t1["predicted_ms"] - t0["predicted_ms"] == pytest.approx(3 * 7e-6 * 1e3)


def test_class_fit_recovers_its_law():
    """Operators timed exactly by max(compute / e, memory / m) + c, with e, m and c on the
    search grids: the fit returns them, with no error."""
    e, m, c = EFFICIENCY_GRID[12], EFFICIENCY_GRID[30], OVERHEAD_US[5] * 1e-6
    sides = [(1e-3, 1e-4), (1e-4, 1e-3), (2e-5, 1e-6), (1e-6, 3e-5), (5e-3, 5e-3), (0.0, 2e-4)]
    got = fit_class([(k, w, max(k / e, w / m) + c) for k, w in sides])
    assert got[:3] == pytest.approx((e, m, c)) and got[3] == pytest.approx(0, abs=1e-9)


def test_a_class_without_flops_keeps_compute_efficiency_1():
    got = fit_class([(0.0, w, w / EFFICIENCY_GRID[20]) for w in (1e-5, 1e-4, 1e-3)])
    assert got[0] == 1.0 and got[1] == pytest.approx(EFFICIENCY_GRID[20])


def test_fit_of_timed_operators_recovers_each_class_and_pythons_time():
    """Operators timed by a known law per class and forwards at batch 1 that take 6 us per
    kernel more than their operators: the fit returns the law and 6 us of Python's time."""
    from archcost.roofline.op_timing import TimedPass

    rates = Rates("cpu", {"float32": 1e11}, 1e10, "float32")
    law = {"conv_kxk": (EFFICIENCY_GRID[8], EFFICIENCY_GRID[24], OVERHEAD_US[3] * 1e-6),
           "elementwise": (1.0, EFFICIENCY_GRID[16], OVERHEAD_US[4] * 1e-6)}
    passes = []
    for scale in (1, 16):
        ops = [OpRecord("c", "conv2d", scale * m, scale * n, scale * n, False)
               for m, n in ((10**6, 10**5), (10**7, 10**5), (10**8, 10**5), (10**5, 10**7))]
        ops += [OpRecord("r", "relu", 0, scale * n, scale * n, False) for n in (10**4, 10**5, 10**6)]
        secs = []
        for o in ops:
            e, m, c = law[op_class(o.op, o.module, {"c": "conv_kxk"}, o.macs)]
            k, w = op_times_s(o, rates)
            secs.append(max(k / e, w / m) + c)
        passes.append(({"c": "conv_kxk"}, TimedPass(ops, secs, sum(secs) + 6e-6 * len(ops), 0), scale))
    eff = fit(passes, rates)
    for cls, (e, m, c) in law.items():
        assert eff.of(cls) == pytest.approx((e, m, c))
    assert eff.python_s == pytest.approx(6e-6)
    assert eff.of("matmul") == eff.of("elementwise")  # no samples: the element-wise fit


def test_table_latency_target_cpu_shows_predicted_beside_measured(monkeypatch, tmp_path):
    """The CLI wiring: with a known calibration and fit (1 s per kernel, efficiency 1), the
    predicted time is the kernels' overhead plus their bounds."""
    import io

    import pandas as pd
    import torch
    from click.testing import CliRunner

    from archcost.cli import main
    from archcost.count.engine import run_pass
    from archcost.roofline import calibrate, latency_calibrate
    from archcost.zoo.registry import get_model

    from test_cpu_calibration import fake

    monkeypatch.setenv("ARCHCOST_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibrate, "calibration", lambda refresh=False, measure_fn=None: fake())
    eff = Efficiencies({c: 1.0 for c in CLASSES}, {c: 1.0 for c in CLASSES}, "test")
    monkeypatch.setattr(latency_calibrate, "cached_efficiencies", lambda: eff)
    r = CliRunner().invoke(main, ["table", "lenet5", "--latency", "--target", "cpu", "--no-memory", "--repeat", "2",
                                  "--warmup", "0", "--format", "csv", "--no-save"])
    assert r.exit_code == 0, r.output
    row = pd.read_csv(io.StringIO(r.stdout)).iloc[0]
    kernels = len(run_pass(get_model("lenet5").to("meta"), (torch.empty(1, 1, 32, 32, device="meta"),),
                           record_ops=True).ops)
    assert 1000 * kernels <= row["predicted_ms"] < 1000 * kernels + 1  # bounds of LeNet-5: well under 1 ms
    assert row["predicted_over_measured"] == pytest.approx(row["predicted_ms"] / row["latency_ms"])


def test_an_output_in_fresh_pages_costs_its_bytes_at_the_fresh_rate_on_a_cpu_only():
    """glibc maps a request of 32 MiB or more anew (calibrate.FRESH_BYTES): such an output
    costs bytes_written / fresh_bandwidth on top of its kernel; an in-place operator, a
    smaller output or a GPU (no fresh-page rate) costs nothing more."""
    from archcost.roofline.calibrate import FRESH_BYTES

    cpu = Rates("cpu", {"float32": 1e11}, 1e10, "float32", fresh_bandwidth=2e9, fresh_bytes=FRESH_BYTES)
    big = 16 * 64 * 112 * 112 * 4  # a batch-16 stem's output, 51 MB
    relu = OpRecord("a", "relu", 0, big, big, False)
    assert op_fresh_s(relu, cpu) == pytest.approx(big / 2e9)
    assert op_fresh_s(OpRecord("a", "relu_", 0, big, big, True), cpu) == 0.0  # in place: no new memory
    small = 32 * 2 ** 20 - 4
    assert op_fresh_s(OpRecord("a", "relu", 0, small, small, False), cpu) == 0.0  # under the threshold: reused heap
    assert op_fresh_s(relu, a100()) == 0.0
    eff = Efficiencies({"elementwise": 0.5}, {"elementwise": 1e-6}, "test", memory_efficiency={"elementwise": 0.5})
    p = predict_ops([relu], cpu, eff)[0]
    assert p["predicted_ms"] == pytest.approx(((2 * big / 1e10) / 0.5 + 1e-6 + big / 2e9) * 1e3)
    assert p["bound_ms"] == pytest.approx(2 * big / 1e10 * 1e3)  # the bound is the roofline's alone


def test_the_fit_takes_fresh_pages_off_before_fitting_a_class():
    """Operators timed as law + fresh pages: the fit returns the law (the fresh cost is the
    calibration's, added back on prediction)."""
    from archcost.roofline.calibrate import FRESH_BYTES
    from archcost.roofline.op_timing import TimedPass

    rates = Rates("cpu", {"float32": 1e11}, 1e10, "float32", fresh_bandwidth=2e9, fresh_bytes=FRESH_BYTES)
    e, m, c = 1.0, EFFICIENCY_GRID[12], OVERHEAD_US[3] * 1e-6
    ops = [OpRecord("r", "relu", 0, n, n, False) for n in (10**4, 10**6, 10**7, 5 * 10**7, 10**8)]
    secs = [max(k / e, w / m) + c + op_fresh_s(o, rates) for o in ops for k, w in [op_times_s(o, rates)]]
    assert sum(op_fresh_s(o, rates) > 0 for o in ops) == 2
    eff = fit([({}, TimedPass(ops, secs, sum(secs), 0), 1)], rates)
    assert eff.of("elementwise") == pytest.approx((e, m, c))


def test_a_class_in_the_cache_tier_gets_its_own_fit():
    """Operators of one class timed by one law when their bytes fit the cache tier and by
    another beyond it: the fit returns both (the cache tier's under ``class + CACHE_TIER``),
    and a prediction uses the law of the tier the operator's bytes fall in."""
    from archcost.roofline.latency import CACHE_TIER
    from archcost.roofline.op_timing import TimedPass

    rates = Rates("cpu", {"float32": 1e11}, 1e10, "float32", cache_bandwidth=5e10, cache_bytes=2 ** 21)
    law = {False: (1.0, EFFICIENCY_GRID[6], OVERHEAD_US[2] * 1e-6), True: (1.0, EFFICIENCY_GRID[30], OVERHEAD_US[9] * 1e-6)}
    ops = [OpRecord("r", "relu", 0, n, n, False) for n in (10**4, 10**5, 4 * 10**5, 4 * 10**6, 10**7, 10**8)]
    secs = []
    for o in ops:
        e, m, c = law[op_in_cache(o, rates)]
        secs.append(max(op_times_s(o, rates)[0] / e, op_times_s(o, rates)[1] / m) + c)
    eff = fit([({}, TimedPass(ops, secs, sum(secs), 0), 1)], rates)
    assert eff.of("elementwise") == pytest.approx(law[False])
    assert eff.of("elementwise", in_cache=True) == pytest.approx(law[True])
    assert "elementwise" + CACHE_TIER in eff.efficiency
    p = predict_ops(ops, rates, eff)
    assert [r["predicted_ms"] for r in p] == pytest.approx([s * 1e3 for s in secs])
    assert eff.of("matmul", in_cache=True) == eff.of("elementwise")  # no samples: the element-wise fit
