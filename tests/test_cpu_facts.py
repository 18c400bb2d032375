"""The CPU's hardware peak from its facts: cores x FMA units x lanes x 2 x clock."""

import pytest

from archcost.devices.cpu_facts import read_facts

SPR = """processor	: 0
vendor_id	: GenuineIntel
cpu family	: 6
model		: 143
model name	: Intel(R) Xeon(R) Platinum 8480+
cpu MHz		: 2000.000
flags		: fpu sse sse2 avx fma avx2 avx512f avx512bw
"""
ZEN4 = """processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model name	: AMD EPYC 9654 96-Core Processor
cpu MHz		: 3500.000
flags		: fpu sse sse2 avx fma avx2 avx512f
"""
HASWELL = """processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz
cpu MHz		: 800.000
flags		: fpu sse sse2 avx fma avx2
"""


def test_intel_avx512_server_peak_by_formula(tmp_path):
    f = read_facts(SPR, cores=2, sys_root=str(tmp_path))
    # two 512-bit FMA units: 2 x 16 float32 lanes x 2 FLOP per cycle per core
    assert f.flops_per_cycle("float32") == 2 * 16 * 2
    assert f.peak_flops("float32") == pytest.approx(2 * 2 * 16 * 2 * 2.0e9)
    assert f.peak_flops("float64") == pytest.approx(2 * 2 * 8 * 2 * 2.0e9)
    assert f.peak_flops("bfloat16") is None


def test_zen4_counts_avx512_as_double_pumped(tmp_path):
    f = read_facts(ZEN4, cores=2, sys_root=str(tmp_path))
    # the figure: 2 cores x 32 FP32 FLOP/cycle x ~3.5 GHz
    assert f.flops_per_cycle("float32") == 32
    assert f.peak_flops("float32") == pytest.approx(2 * 32 * 3.5e9)


def test_clock_from_the_model_name_before_the_current_mhz(tmp_path):
    f = read_facts(HASWELL, cores=4, sys_root=str(tmp_path))
    assert f.clock_hz == 3.4e9 and f.vector_bits == 256 and f.fma_units == 2
    assert f.peak_flops() == pytest.approx(4 * 2 * 8 * 2 * 3.4e9)
    assert "model name" in f.sources["clock"]


def test_cpufreq_maximum_wins(tmp_path):
    d = tmp_path / "devices/system/cpu/cpu0/cpufreq"
    d.mkdir(parents=True)
    (d / "cpuinfo_max_freq").write_text("3800000\n")  # kHz
    assert read_facts(HASWELL, cores=1, sys_root=str(tmp_path)).clock_hz == 3.8e9


def test_this_machine_has_facts():
    f = read_facts()
    assert f.cores >= 1 and f.clock_hz > 0 and f.peak_flops() > 0
    assert "GFLOP/s" in f.describe()
