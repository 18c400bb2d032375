"""A zoo in one run: each model in its own worker with a time and a memory limit; a crash,
an out-of-memory or a hang becomes a status row while the rest finish; rows stream to the
CSV; a rerun adds only the missing rows; --shard partitions exactly."""

import csv
import os
import signal
import textwrap
import time

import pytest

from archcost.compare.zoo_run import ZOO_COLUMNS, RowLog, ZooOptions, run_zoo
from archcost.zoo import workers

MiB = 2 ** 20


# --- the worker pool, on plain tasks ---------------------------------------------------------

def _task(item):
    if item == "ok":
        return {"value": 7}
    if item == "raises":
        raise ValueError("this model refuses its input")
    if item == "huge":  # one allocation far past the limit: refused inside the worker
        bytearray(64 * 1024 * MiB)
    if item == "grows":  # touched pages, a little at a time, until the limit stops it
        keep = []
        while True:
            keep.append(bytearray(16 * MiB))
            keep[-1][::4096] = b"x" * len(keep[-1][::4096])
    if item == "own_pages":  # what the worker holds with nothing allocated: its libraries, shared with the server
        return {"own": workers.rss_bytes(os.getpid())}
    if item == "burst":  # touched pages past the limit, freed at once: between two of the parent's reads
        block = bytearray(LIMITS.memory_bytes)
        block[::4096] = b"x" * len(block[::4096])
        del block
        return {"value": 1}
    if item == "hangs":
        time.sleep(600)
    if item == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if item == "exits":
        os._exit(5)
    if item == "two_stages":
        def parts():
            yield {"macs": 11, "pending": "fvcore"}
            time.sleep(600)
        return parts()
    return {"value": item}


# 10 s: a worker on a loaded 2-core machine (nice 19) takes seconds to grow to the memory limit
LIMITS = workers.Limits(timeout_s=10, memory_bytes=512 * MiB, threads=1)


def test_each_failure_becomes_a_status_row_and_the_rest_finish():
    items = ["ok", "raises", "huge", "grows", "hangs", "segfault", "exits", "two_stages", "last"]
    seen = []
    rows = workers.run(items, _task, jobs=3, limits=LIMITS, on_row=seen.append)
    by = {r["model"]: r for r in rows}
    assert sorted(by) == sorted(items) and seen == rows  # one row each, handed over as each finished
    assert by["ok"]["status"] == "ok" and by["ok"]["value"] == 7
    assert by["last"]["status"] == "ok"  # ran after every failure
    assert by["raises"]["status"] == "error" and "refuses its input" in by["raises"]["reason"]
    assert by["huge"]["status"] == "memory"
    assert by["grows"]["status"] == "memory"
    assert by["hangs"]["status"] == "timeout" and "10 s" in by["hangs"]["reason"]
    assert by["hangs"]["seconds"] >= 10
    assert by["segfault"]["status"] == "crashed" and "SIGSEGV" in by["segfault"]["reason"]
    assert by["exits"]["status"] == "crashed" and "code 5" in by["exits"]["reason"]
    # a later stage's failure keeps what the earlier stage sent
    assert by["two_stages"]["status"] == "ok" and by["two_stages"]["macs"] == 11
    assert by["two_stages"]["fvcore_status"] == "timeout"


def test_the_limit_counts_every_resident_page_of_the_worker_and_no_ok_row_passed_it():
    rows = {r["model"]: r for r in workers.run(["own_pages", "burst"], _task, jobs=1, limits=LIMITS)}
    # the peak is the worker's whole resident set (what ps shows), its shared libraries included
    assert rows["own_pages"]["status"] == "ok"
    assert rows["own_pages"]["worker_max_rss_bytes"] >= rows["own_pages"]["own"]
    # a burst past the limit that no poll saw is still not ok: the address-space cap or the
    # worker's own peak (ru_maxrss) catches it
    assert rows["burst"]["status"] == "memory"


def test_memory_limit_is_the_resident_memory_of_the_worker():
    rows = workers.run(["grows"], _task, jobs=1, limits=LIMITS)
    # killed near the limit: what it held never passed the limit by more than one poll's growth
    assert rows[0]["status"] == "memory"
    assert rows[0]["worker_max_rss_bytes"] <= LIMITS.memory_bytes + 256 * MiB


def test_progress_states_done_total_failures_and_eta():
    lines = []
    progress = workers.Progress(3, 1, lines.append)
    workers.run(["ok", "raises", "ok2"], _task, jobs=1, limits=LIMITS, progress=progress)
    assert [line.split("]")[0] for line in lines] == ["archcost: [1/3", "archcost: [2/3", "archcost: [3/3"]
    assert "0 failed" in lines[0] and "1 failed" in lines[1] and "1 failed" in lines[2]
    assert all("ETA" in line for line in lines) and lines[-1].endswith("ETA 0s")


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_partition_the_list_exactly(n):
    items = [f"m{i}" for i in range(23)]
    parts = [workers.shard(items, i, n) for i in range(1, n + 1)]
    assert sorted(sum(parts, [])) == sorted(items)  # every item once
    assert sum(len(p) for p in parts) == len(items)  # disjoint
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert parts == [workers.shard(list(items), i, n) for i in range(1, n + 1)]  # deterministic


@pytest.mark.parametrize("text", ["0/4", "5/4", "a/b", "3", "1/0"])
def test_a_bad_shard_is_one_message(text):
    with pytest.raises(ValueError, match="--shard"):
        workers.parse_shard(text)
    assert workers.parse_shard("2/4") == (2, 4)


# --- a zoo run: rows streamed to the CSV, resumed ----------------------------------------------

BAD_MODELS = textwrap.dedent("""
    import os, signal, time
    import torch
    import torch.nn as nn

    def crashes():
        os.kill(os.getpid(), signal.SIGSEGV)

    def hangs():
        time.sleep(600)

    def eats_memory():
        block = bytearray(4 * 1024 ** 3)
        return nn.Linear(2, 2)

    class SlowOnRealTensors(nn.Linear):
        def forward(self, x):
            if torch.jit.is_tracing():  # fvcore's trace: it hangs there only (the memory passes run real tensors too)
                time.sleep(600)
            return super().forward(x)

    def slow_fvcore():
        return SlowOnRealTensors(4, 3)

    class HugeOnRealTensors(nn.Linear):
        def forward(self, x):
            if torch.jit.is_tracing():  # fvcore's trace: 64 GiB, refused under the worker's address-space cap
                torch.empty(16 * 1024 ** 3).fill_(1)
            return super().forward(x)

    def huge_fvcore():
        return HugeOnRealTensors(4, 3)
""")


@pytest.fixture
def bad_models(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(BAD_MODELS)
    return path


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_zoo_run_keeps_going_past_crashes_memory_and_hangs(tmp_path, bad_models):
    refs = [f"{bad_models}:crashes", "lenet5", f"{bad_models}:hangs", f"{bad_models}:eats_memory", "alexnet"]
    out = tmp_path / "zoo.csv"
    opts = ZooOptions(input_size=(1, 32, 32), fvcore=False, memory_limit_bytes=1024 * MiB, conditions="t")
    lines = []
    run = run_zoo(refs, out, opts, jobs=2, timeout_s=20, write=lines.append)
    rows = {r["model"]: r for r in _rows(out)}
    assert len(run.added) == len(refs) == len(rows)
    assert rows["lenet5"]["status"] == "ok" and int(rows["lenet5"]["params"]) > 0
    assert rows["alexnet"]["status"] in ("ok", "error")  # alexnet refuses 32x32 (its pools): a row either way
    assert rows[f"{bad_models}:crashes"]["status"] == "crashed"
    assert rows[f"{bad_models}:hangs"]["status"] == "timeout"
    assert rows[f"{bad_models}:eats_memory"]["status"] == "memory"
    assert list(_rows(out)[0]) == ZOO_COLUMNS
    assert sum("ETA" in line for line in lines) == len(refs)


def test_fvcore_stage_failing_keeps_the_counts(tmp_path, bad_models):
    out = tmp_path / "zoo.csv"
    # In a fresh process, as the CLI runs it: a worker forked from a process whose OpenMP
    # threads have run (this test process, after other tests) can hang in its first real
    # CPU kernel (libgomp is not fork-safe), which is not what this test is about.
    code = (f"from archcost.compare.zoo_run import ZooOptions, run_zoo\n"
            f"run_zoo([{str(bad_models) + ':slow_fvcore'!r}], {str(out)!r}, ZooOptions(input_size=(4,), "
            f"conditions='in4'), timeout_s=30)\n"  # the counts well inside it; fvcore sleeps 600 s
            f"run_zoo([{str(bad_models) + ':huge_fvcore'!r}], {str(out)!r}, ZooOptions(input_size=(4,), "
            f"conditions='in4'), timeout_s=60)\n"
            f"run_zoo(['lenet5'], {str(out)!r}, ZooOptions(conditions='default'), timeout_s=300)\n")
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=600)
    rows = {r["model"]: r for r in _rows(out)}
    slow = rows[f"{bad_models}:slow_fvcore"]
    assert slow["status"] == "ok" and int(slow["macs"]) == 4 * 3  # Linear(4, 3) on one sample
    assert slow["fvcore_status"] == "timeout"
    huge = rows[f"{bad_models}:huge_fvcore"]  # an allocation refused under the limit is the limit's: memory
    assert huge["status"] == "ok" and huge["fvcore_status"] == "memory", huge["fvcore_reason"]
    lenet = rows["lenet5"]
    assert lenet["fvcore_status"] == "ok"
    assert int(lenet["fvcore_macs"]) + int(lenet["fvcore_difference"]) == int(lenet["macs"])


def test_a_rerun_adds_only_the_missing_rows(tmp_path):
    out = tmp_path / "zoo.csv"
    opts = ZooOptions(fvcore=False, memory=False, conditions="cpu_float32_b1")
    first = run_zoo(["lenet5", "resnet18"], out, opts, jobs=2)
    assert len(first.added) == 2
    second = run_zoo(["lenet5", "resnet18", "mobilenet_v2"], out, opts, jobs=2)
    assert second.skipped == 2 and [r["model"] for r in second.added] == ["mobilenet_v2"]
    assert sorted(r["model"] for r in _rows(out)) == ["lenet5", "mobilenet_v2", "resnet18"]
    # other conditions are other rows
    third = run_zoo(["lenet5"], out, ZooOptions(fvcore=False, memory=False, batch_size=2,
                                                conditions="cpu_float32_b2"), jobs=1)
    assert len(third.added) == 1 and len(_rows(out)) == 4


def test_retry_failed_replaces_only_the_failed_rows(tmp_path, bad_models):
    out = tmp_path / "zoo.csv"
    opts = ZooOptions(fvcore=False, memory=False, conditions="t")
    run_zoo(["lenet5", f"{bad_models}:crashes"], out, opts, jobs=2)
    again = run_zoo(["lenet5", f"{bad_models}:crashes"], out, opts, jobs=2, retry_failed=True)
    assert [r["model"] for r in again.added] == [f"{bad_models}:crashes"]
    assert sorted(r["model"] for r in _rows(out)) == sorted(["lenet5", f"{bad_models}:crashes"])


def test_an_interrupted_csv_is_whole_rows(tmp_path):
    """Rows are appended one whole line at a time: a file cut after any row reads back."""
    out = tmp_path / "zoo.csv"
    log = RowLog(out)
    for i in range(3):
        log.append({"model": f"m{i}", "status": "ok", "params": i, "conditions": "c", "versions": "v"})
    again = RowLog(out)
    assert [r["model"] for r in again.rows] == ["m0", "m1", "m2"]
    assert again.done("m1", "c", "v") and not again.done("m1", "c", "other") and not again.done("m3", "c", "v")


def test_a_csv_with_other_columns_is_refused(tmp_path):
    out = tmp_path / "zoo.csv"
    out.write_text("model,macs\nx,1\n")
    with pytest.raises(ValueError, match="other columns"):
        RowLog(out)


def test_a_zoo_csv_of_another_version_is_one_line_and_exit_2(tmp_path):
    """A zoo CSV left by an older archcost (other columns) is the user's to move: exit 2, not 'a bug'."""
    (tmp_path / "z_zoo_cpu_float32_b1.csv").write_text("model,status,macs\nlenet5,ok,1\n")
    result = _invoke("table", "lenet5", "--jobs", "1", "--out", str(tmp_path), "--name", "z")
    assert result.exit_code == 2, result.output
    assert "other columns" in result.output and "--name" in result.output and "bug" not in result.output


# --- the command: archcost table PATTERN --jobs N [--shard I/N] ----------------------------------


def _timm():
    import sys
    import types

    if "torchvision" not in sys.modules:  # torchvision's CUDA wheel beside a CPU torch (see test_sources.py)
        sys.modules.setdefault("torchvision._meta_registrations",
                               types.ModuleType("torchvision._meta_registrations"))
    return pytest.importorskip("timm")


def _invoke(*args):
    from click.testing import CliRunner

    from archcost.cli import main

    return CliRunner().invoke(main, list(args))


def test_table_jobs_shards_concatenate_to_the_whole_list(tmp_path):
    timm = _timm()
    names = [f"timm:{n}" for n in timm.list_models("test_vit*")]
    for i in (1, 2):
        r = _invoke("table", "timm:test_vit*", "--jobs", "2", "--shard", f"{i}/2", "--out", str(tmp_path),
                    "--no-memory", "--format", "csv")
        assert r.exit_code == 0, r.output
    parts = [_rows(tmp_path / f"timm_test_vit_zoo_cpu_float32_b1_nomem_shard{i}of2.csv") for i in (1, 2)]
    got = [r["model"] for p in parts for r in p]
    assert sorted(got) == sorted(names) and len(got) == len(names)  # disjoint, complete
    assert all(r["status"] == "ok" for p in parts for r in p)
    assert (tmp_path / "timm_test_vit_zoo_cpu_float32_b1_nomem_shard1of2.png").exists()


def test_table_jobs_rerun_adds_nothing_when_done(tmp_path):
    _timm()
    args = ("table", "timm:test_resnet", "timm:test_byobnet", "--jobs", "1", "--out", str(tmp_path), "--no-memory")
    assert _invoke(*args).exit_code == 0
    again = _invoke(*args)
    assert again.exit_code == 0 and "already done" in again.output
    assert len(_rows(tmp_path / "timm_test_resnet-timm_test_byobnet_zoo_cpu_float32_b1_nomem.csv")) == 2


@pytest.mark.parametrize("args, says", [(["--shard", "1/2"], "--shard goes with --jobs"),
                                        (["--jobs", "2", "--latency"], "--latency is not part of a zoo run"),
                                        (["--jobs", "2", "--no-save"], "drop --no-save"),
                                        (["--jobs", "2", "--shard", "3/2"], "--shard")])
def test_zoo_options_misused_are_one_line(args, says):
    r = _invoke("table", "lenet5", *args)
    assert r.exit_code == 2 and says in r.output and len(r.output.strip().splitlines()) == 1


def test_list_takes_library_wildcards():
    timm = _timm()
    r = _invoke("list", "timm:*test_vit*", "--format", "csv")
    assert r.exit_code == 0, r.output
    listed = [line.split(",")[0] for line in r.output.strip().splitlines()[1:]]
    assert listed == [f"timm:{n}" for n in timm.list_models("*test_vit*")]


# --- the worker server: no child forked from a process that ran OpenMP kernels ----------------------

def _where_and_parallel(item):
    import torch

    x = torch.ones(2048, 2048)
    total = float((x @ x).sum())  # a parallel kernel in the child (2 threads): hangs in a libgomp-unsafe fork
    return {"ppid": os.getppid(), "total": total, "stub": "archcost_test_stub" in __import__("sys").modules}


def test_workers_are_not_forked_from_the_caller_and_run_parallel_kernels():
    import sys
    import types

    import torch

    torch.set_num_threads(2)
    x = torch.ones(1024, 1024)
    (x @ x).sum()  # this process has run OpenMP kernels: a child forked from it could hang
    sys.modules["archcost_test_stub"] = types.ModuleType("archcost_test_stub")
    try:
        rows = workers.run(["a", "b"], _where_and_parallel, jobs=2,
                           limits=workers.Limits(timeout_s=120, memory_bytes=1024 * MiB, threads=2))
    finally:
        del sys.modules["archcost_test_stub"]
    for r in rows:
        assert r["status"] == "ok", r
        assert r["ppid"] != os.getpid()  # forked by the worker server, not by this process
        assert r["total"] == 2048.0 ** 3  # every entry of x @ x is 2048; 2048^2 entries
        assert r["stub"] is True  # the caller's stub module is there in the worker too
