"""Issue #22: sweep times each point to a budget (at least 3 calls, at most --repeat) and
shows an ETA; its PNG marks noisy points; `plot sweep` refuses a CSV of one batch size."""

import time

import pandas as pd
from click.testing import CliRunner

from archcost.cli import main
from archcost.measure.timing import MIN_REPEATS, time_calls


def test_time_budget_stops_early_but_keeps_a_minimum():
    slow = lambda: time.sleep(0.05)  # noqa: E731
    t0 = time.perf_counter()
    samples = time_calls(slow, "cpu", repeats=100, warmup=5, budget_s=0.2)
    took = time.perf_counter() - t0
    assert MIN_REPEATS <= len(samples) < 100
    assert took < 0.2 + 0.2 / 5 + 3 * 0.05 + 0.5  # the budget, the warm-up's fifth, a call over, slack
    # a call longer than the budget is still timed MIN_REPEATS times
    assert len(time_calls(lambda: time.sleep(0.02), "cpu", repeats=50, warmup=0, budget_s=0.001)) == MIN_REPEATS
    # without a budget, exactly --repeat
    assert len(time_calls(lambda: None, "cpu", repeats=7, warmup=1)) == 7


def test_sweep_uses_the_budget_and_prints_an_eta(tmp_path):
    r = CliRunner().invoke(main, ["sweep", "lenet5", "--batch-sizes", "1,2,4", "--time-budget", "0.05",
                                  "--repeat", "1000", "--format", "csv", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    (csv,) = tmp_path.glob("sweep_*.csv")
    df = pd.read_csv(csv)
    assert (df["repeats"] < 1000).all() and (df["repeats"] >= MIN_REPEATS).all()
    assert (df["time_budget_s"] == 0.05).all()
    assert "ETA " in r.stderr


def test_sweep_png_marks_noisy_points(tmp_path, monkeypatch):
    from archcost.report import plots

    seen = {}
    real = plots._save

    def keep(fig, target):
        seen["red"] = sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections
                          if c.get_edgecolor().size and tuple(c.get_edgecolor()[0][:3]) == (1.0, 0.0, 0.0))
        seen["legend"] = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        real(fig, target)

    monkeypatch.setattr(plots, "_save", keep)
    frame = pd.DataFrame({"model": ["m"] * 3, "batch_size": [1, 2, 4], "peak_bytes": [1e6, 2e6, 4e6],
                          "train_bytes": [2e6, 4e6, 8e6], "latency_ms": [1.0, 2.0, 4.0],
                          "latency_p20_ms": [0.9, 1.0, 3.9], "latency_p80_ms": [1.1, 3.0, 4.1],
                          "images_per_s": [1000.0, 1000.0, 1000.0]})
    plots.sweep(frame, tmp_path / "s.png", "t")
    assert seen["red"] == 2  # batch 2 (3.0 / 1.0 > 1.5) on the latency and throughput panels
    assert any("noisy" in t for t in seen["legend"])


def test_plot_sweep_refuses_a_table_csv(tmp_path):
    csv = tmp_path / "table.csv"
    pd.DataFrame({"model": ["a", "b"], "batch_size": [1, 1], "peak_bytes": [1, 2], "train_bytes": [3, 4],
                  "params": [5, 6]}).to_csv(csv, index=False)
    r = CliRunner().invoke(main, ["plot", "sweep", str(csv)])
    assert r.exit_code == 2 and "not a sweep CSV" in r.stderr and "one batch size" in r.stderr


def test_sweep_png_says_what_the_peak_holds(tmp_path, monkeypatch):
    # peak_bytes holds the running kernel's scratch beside the live tensors (peak_scratch_bytes
    # in the CSV): the legend says so, and says "no kernel scratch" for an older CSV without it.
    from archcost.report import plots

    seen = []
    real = plots._save

    def keep(fig, target):
        seen.append([t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()])
        real(fig, target)

    monkeypatch.setattr(plots, "_save", keep)
    frame = pd.DataFrame({"model": ["m"] * 2, "batch_size": [1, 2], "peak_bytes": [1e6, 2e6],
                          "peak_scratch_bytes": [1e5, 2e5], "train_bytes": [2e6, 4e6]})
    plots.sweep(frame, tmp_path / "s.png", "t", latency=False)
    plots.sweep(frame.drop(columns="peak_scratch_bytes"), tmp_path / "o.png", "t", latency=False)
    assert "inference peak (live tensors + kernel scratch)" in seen[0]
    assert "inference peak (live tensors; no kernel scratch)" in seen[1]
    assert not any(t == "inference peak (activations)" for ts in seen for t in ts)


def test_sweep_eta_follows_the_work_left(monkeypatch, capsys):
    # The README's sweep on this machine: each point costs a fixed time (the time budget and
    # the passes) plus time per MAC. The mean time of the points done, times the points left,
    # printed 80 s where 536 s were left (reports/sweep_bench_cpu.md); an ETA from each
    # point's MACs is within a fifth of the truth once every model's first point is done.
    import time as time_module

    from archcost.cli.common import progress

    models = {"alexnet": 0.714e9, "googlenet": 1.5e9, "resnet50": 4.11e9}
    batches = [1, 2, 4, 8, 16]
    cost = {(m, b): 2.4 + 2.5e-9 * macs * b for m, macs in models.items() for b in batches}  # seconds
    jobs = [(m, 1) for m in models] + [(m, b) for m in models for b in batches[1:]]
    clock = [0.0]
    monkeypatch.setattr(time_module, "perf_counter", lambda: clock[0])
    seen = {}

    def work(job):
        return models[job[0]] * job[1] if job[0] in seen else None

    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    with progress(jobs, "sweeping", lambda j: f"{j[0]} batch {j[1]}", work=work) as bar:
        for job in bar:
            clock[0] += cost[job]
            seen[job[0]] = True
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "ETA" in ln]
    for i, line in enumerate(lines, 2):
        if i <= len(models) + 1:
            continue  # a model's MACs are known after its first point
        m, s = line.rsplit("ETA ", 1)[1].split(":")
        printed = int(m) * 60 + int(s)
        truth = sum(cost[j] for j in jobs[i - 1:])
        assert abs(printed - truth) <= 0.2 * truth + 1, (line, truth)


def test_sweep_states_the_load_it_was_timed_at(tmp_path):
    # Timings in reports state the machine's load: each timed row carries the 1-minute load
    # average as its timing ended, and the sweep's title and notes give its range.
    import os

    r = CliRunner().invoke(main, ["sweep", "lenet5", "--batch-sizes", "1,2", "--time-budget", "0.05",
                                  "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    (csv,) = tmp_path.glob("sweep_*.csv")
    df = pd.read_csv(csv)
    assert df["load_avg_1min"].between(0, 100 * os.cpu_count()).all()
    assert "load average" in r.stdout
    from archcost.report.notes import sweep_title

    assert "load average" in sweep_title(df)
