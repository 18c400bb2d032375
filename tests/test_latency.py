"""predicted_ms (issue #21): bound per operator at its precision's rate, / efficiency + overhead."""

import pytest
import torch.nn as nn

from archcost.devices import by_key
from archcost.count.engine import OpRecord
from archcost.roofline.latency import (CLASSES, GPU_DEFAULTS, REFERENCE_S, Efficiencies, Rates, by_layer, conv_kind,
                                       op_class, predict_ops, totals)
from archcost.roofline.latency_calibrate import fit_power

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


def test_prediction_is_bound_over_efficiency_plus_overhead_never_below_the_bound():
    ops = [OpRecord("a", "relu", 0, 4000, 4000, False), OpRecord("b", "linear", 10**6, 10**4, 10**3, False)]
    eff = Efficiencies({"elementwise": 0.5, "matmul": 0.25}, {"elementwise": 2e-6, "matmul": 1e-6}, "test")
    p = predict_ops(ops, a100(), eff)
    for row, e, c in zip(p, (0.5, 0.25), (2e-6, 1e-6)):
        assert row["predicted_ms"] == pytest.approx(row["bound_ms"] / e + c * 1e3)
        assert row["predicted_ms"] >= row["bound_ms"]
    t = totals(p)
    assert t["predicted_ms"] == pytest.approx(sum(r["predicted_ms"] for r in p)) and t["kernels"] == 2
    layers = by_layer(p)
    assert set(layers) == {"a", "b"} and layers["b"]["rate"] == "float32"
    # an efficiency above 1 never makes a prediction beat its bound
    over = Efficiencies({"elementwise": 3.0}, {"elementwise": 0.0}, "bad")
    assert predict_ops(ops[:1], a100(), over)[0]["predicted_ms"] == pytest.approx(p[0]["bound_ms"])


def test_gpu_defaults_cover_every_class_and_cite_sources():
    assert set(GPU_DEFAULTS.efficiency) == set(CLASSES) and all(0 < e <= 1 for e in GPU_DEFAULTS.efficiency.values())
    assert "NVIDIA" in GPU_DEFAULTS.source and "not measured" in GPU_DEFAULTS.source


@pytest.mark.parametrize("layer, kind", [
    (nn.Conv2d(3, 64, 7), "conv_stem"), (nn.Conv2d(64, 64, 1), "conv_1x1"), (nn.Conv2d(64, 64, 3), "conv_kxk"),
    (nn.Conv2d(64, 64, 3, groups=32), "conv_grouped"), (nn.Conv2d(64, 64, 3, groups=64), "conv_depthwise"),
])
def test_conv_kinds(layer, kind):
    assert conv_kind(layer) == kind


def test_operator_classes():
    assert [op_class(o) for o in ("linear", "bmm", "scaled_dot_product_attention", "batch_norm", "layer_norm",
                                  "max_pool2d", "adaptive_avg_pool2d", "relu", "add")] == \
        ["matmul", "matmul", "attention", "norm_batch", "norm_layer", "pool_max", "pool_avg", "elementwise",
         "elementwise"]


def test_fit_recovers_a_power_law():
    # t = 3 us + 1 ms x (b / 1 ms) ** 0.8 / 0.5, exactly
    samples = [(b, 1, 3e-6 + REFERENCE_S * (b / REFERENCE_S) ** 0.8 / 0.5) for b in (1e-4, 5e-4, 2e-3, 1e-2)]
    e, x, rms = fit_power(samples, 3e-6)
    assert e == pytest.approx(0.5) and x == pytest.approx(0.8) and rms == pytest.approx(0, abs=1e-9)


def test_size_dependent_efficiency_by_formula_and_never_below_the_bound():
    eff = Efficiencies({"matmul": 0.5}, {"matmul": 2e-6}, "test", exponent={"matmul": 0.8})
    for b in (1e-5, 1e-3, 1.0):
        want = max(b, REFERENCE_S * (b / REFERENCE_S) ** 0.8 / 0.5) + 2e-6
        assert eff.seconds("matmul", b) == pytest.approx(want) and eff.seconds("matmul", b) >= b
    assert eff.seconds("matmul", 1.0) == pytest.approx(1.0 + 2e-6)  # a huge operator: at its bound, not below
    assert eff.seconds("matmul", 0.0) == 2e-6


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
