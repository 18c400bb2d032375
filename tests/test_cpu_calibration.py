"""The CPU roof (issue #21): repeated until stable, spread stored, noisy runs not cached, a
cache keyed by machine and torch and validated on read (a corrupt one is measured again)."""

import json

import pytest

from archcost.roofline import calibrate as cc


def fake(stable=True, gflops=100.0):
    m = cc.machine()
    return cc.Calibration(m["machine"], m["threads"], m["torch_version"], {"float32": gflops * 1e9},
                          {"float32": [8]}, 20e9, 15e9, 20e9, 1024, 80e9, 2**21, {"float32": 0.01, "bandwidth": 0.02}, 3, stable,
                          [0.1, 0.1, 0.1], [0.2, 0.1, 0.1], 200e9, "model", "2026-01-01T00:00:00Z", 0.1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHCOST_CACHE_DIR", str(tmp_path))
    return cc.cache_path("cpu")


def counting(stable=True):
    calls = []

    def measure():
        calls.append(1)
        return fake(stable)
    return measure, calls


def test_a_stable_calibration_is_cached_and_read_back(cache):
    measure, calls = counting()
    first = cc.calibration(measure_fn=measure)
    again = cc.calibration(measure_fn=measure)
    assert len(calls) == 1 and again.path == str(cache) and again.flops == first.flops
    assert again.spread == {"float32": 0.01, "bandwidth": 0.02}  # stored and shown
    assert "+-" in again.describe() and "hardware peak 200.0 GFLOP/s" in again.describe()


@pytest.mark.parametrize("content", [
    "[1, 2, 3]",  # a JSON list
    "null", "", "{not json", "\x00\xff",
])
def test_a_corrupt_cache_is_measured_again(cache, content):
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(content)
    measure, calls = counting()
    cal = cc.calibration(measure_fn=measure)
    assert len(calls) == 1 and cal.flops["float32"] == 100e9
    assert json.loads(cache.read_text())["flops"]["float32"] == 100e9  # replaced by the new one


@pytest.mark.parametrize("change", [
    {"flops": {"float32": 0}},  # zeros
    {"flops": {"float32": float("nan")}}, {"flops": {}}, {"flops": [1.0]}, {"bandwidth": 0}, {"bandwidth": "fast"},
    {"torch_version": "0.0.1"},  # another torch
    {"machine": "another CPU"}, {"version": cc.VERSION - 1}, {"stable": False},
    {"fresh_bandwidth": -1.0}, {"fresh_bandwidth": "slow"}, {"fresh_bytes": 0},
])
def test_a_cache_that_does_not_validate_is_measured_again(cache, change):
    measure, calls = counting()
    cc.calibration(measure_fn=measure)
    data = json.loads(cache.read_text())
    data.update(change)
    cache.write_text(json.dumps(data))
    cc.calibration(measure_fn=measure)
    assert len(calls) == 2


def test_a_missing_field_is_measured_again(cache):
    measure, calls = counting()
    cc.calibration(measure_fn=measure)
    data = json.loads(cache.read_text())
    del data["peak_source"]
    cache.write_text(json.dumps(data))
    cc.calibration(measure_fn=measure)
    assert len(calls) == 2


def test_a_noisy_calibration_warns_and_is_not_cached(cache):
    measure, calls = counting(stable=False)
    cal = cc.calibration(measure_fn=measure)
    assert cal.path == "" and not cache.exists()
    assert "did not settle" in cal.warning and "not cached" in cal.warning
    cc.calibration(measure_fn=measure)
    assert len(calls) == 2  # measured again next time


def test_settle_stops_when_the_last_rounds_agree():
    values = iter([50.0, 90.0, 100.0, 98.0, 99.0, 10.0])
    best, spread, rounds, stable = cc.settle(lambda: {"x": next(values)}, window=3, tolerance=0.05, max_rounds=8)
    # rounds 3-5 (100, 98, 99) agree within 5%: stop after 5, keep the best, spread over that window
    assert (rounds, stable, best["x"]) == (5, True, 100.0)
    assert spread["x"] == pytest.approx((100 - 98) / 100)


def test_settle_gives_up_and_says_so():
    values = iter([10.0, 100.0] * 10)
    best, spread, rounds, stable = cc.settle(lambda: {"x": next(values)}, window=3, tolerance=0.05, max_rounds=6)
    assert (rounds, stable, best["x"]) == (6, False, 100.0) and spread["x"] == pytest.approx(0.9)


def test_an_unwritable_cache_folder_is_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ARCHCOST_CACHE_DIR", str(blocker / "sub"))
    measure, _ = counting()
    assert cc.calibration(measure_fn=measure).path == ""


def test_a_real_round_measures_positive_rates():
    r = cc.one_round({"float32": [64]}, 2**20)
    assert all(v > 0 for k, v in r.items() if k != "fresh") and r["bandwidth"] == max(r["copy"], r["read"], r["matvec"])
    assert "cache" in r and r["fresh"] >= 0  # 0 where new memory costs nothing more (another allocator)
