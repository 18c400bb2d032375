"""bench/gpu_memcheck.py: its logic as a CPU dry run; on a GPU, the ledger against torch.cuda."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import gpu_memcheck  # noqa: E402


def test_dry_run_writes_predictions(tmp_path):
    gpu_memcheck.main(["--device", "cpu", "--gpu", "t4", "--models", "lenet5", "--others", "--batch", "2",
                       "--out", str(tmp_path)])
    frame = pd.read_csv(tmp_path / "gpu_memcheck_cpu.csv")
    assert list(frame["mode"]) == ["inference", "train"]
    assert (frame["predicted_max_memory_reserved"] >= frame["predicted_max_memory_allocated"]).all()
    assert (frame["predicted_max_memory_allocated"] > frame["predicted_tensors_bytes"]).all()
    assert frame["measured_max_memory_allocated"].isna().all()
    assert frame["notes"].str.contains("dry run").all()


def test_dry_run_runs_the_measuring_passes_without_cuda(tmp_path, monkeypatch):
    # Everything but the CUDA calls: the model built, two training steps (the second after the
    # optimizer's state exists) and two inference forwards, on the CPU; no torch.cuda call.
    from archcost.memory.training import TrainingStep

    steps = []
    real_run = TrainingStep.run
    monkeypatch.setattr(TrainingStep, "run",
                        lambda self, *a, **k: (steps.append(self.device.type), real_run(self, *a, **k))[1])
    for fn in ("synchronize", "mem_get_info", "max_memory_allocated", "max_memory_reserved", "empty_cache",
               "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, fn, lambda *a, **k: pytest.fail("a CUDA call in a dry run"))
    code = gpu_memcheck.main(["--dry-run", "--gpu", "a100-80gb", "--models", "lenet5", "--others", "--batch", "2",
                              "--modes", "train", "--out", str(tmp_path)])
    assert code == 0 and steps.count("cpu") == 2  # (the ledger's own recording runs on meta)
    frame = pd.read_csv(tmp_path / "gpu_memcheck_cpu.csv")
    assert list(frame["device"]) == ["a100-80gb"] and frame["compute_capability"].iloc[0] == 8.0


def test_a_failing_model_is_a_row_and_the_rest_still_runs(tmp_path):
    code = gpu_memcheck.main(["--dry-run", "--models", "no_such_model", "lenet5", "--others", "--batch", "2",
                              "--modes", "inference", "--out", str(tmp_path)])
    frame = pd.read_csv(tmp_path / "gpu_memcheck_cpu.csv")
    assert code == 1 and list(frame["model"]) == ["no_such_model", "lenet5"]
    assert frame["notes"].iloc[0].startswith("failed: ") and frame["predicted_max_memory_allocated"].iloc[1] > 0


def test_dry_run_takes_the_other_families(tmp_path):
    pytest.importorskip("torchvision", reason="torchvision not installed (or not importable with this torch)")
    # the ten networks of other families are torchvision builders: one of them, both modes
    code = gpu_memcheck.main(["--dry-run", "--models", "--others", "squeezenet1_1", "--batch", "2",
                              "--out", str(tmp_path)])
    frame = pd.read_csv(tmp_path / "gpu_memcheck_cpu.csv")
    assert code == 0 and list(frame["family"]) == ["torchvision", "torchvision"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_ledger_against_the_cuda_allocator(tmp_path):
    gpu_memcheck.main(["--device", "cuda", "--models", "lenet5", "resnet18", "--others", "--batch", "4",
                       "--out", str(tmp_path)])
    frame = next(pd.read_csv(p) for p in tmp_path.glob("gpu_memcheck_*.csv"))
    # tensors are exact and the allocator's rules are modelled: allocated within 5%
    assert frame["allocated_relative_error"].abs().max() < 0.05, frame.to_string()
