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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_ledger_against_the_cuda_allocator(tmp_path):
    gpu_memcheck.main(["--device", "cuda", "--models", "lenet5", "resnet18", "--others", "--batch", "4",
                       "--out", str(tmp_path)])
    frame = next(pd.read_csv(p) for p in tmp_path.glob("gpu_memcheck_*.csv"))
    # tensors are exact and the allocator's rules are modelled: allocated within 5%
    assert frame["allocated_relative_error"].abs().max() < 0.05, frame.to_string()
