"""The device ledger: events recorded on meta, replayed through the caching-allocator model;
expectations from the allocator's rules and the architecture, by hand."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from archcost.memory.training import step_memory
from archcost.devices.memory_facts import CUBLAS_WORKSPACE_DEFAULT_BYTES, CUBLAS_WORKSPACE_HOPPER_BYTES, FACTS
from archcost.memory.cuda_allocator import replay
from archcost.memory.device_events import forward_recording, repeat_steady, sdpa_backend, step_recording
from archcost.memory.ledger import gpu, ledger

MiB = 1 << 20
T4 = (7, 5)
A100 = (8, 0)


def meta(module):
    return module.to("meta")


def test_linear_forward_by_hand():
    # nn.Linear(256, 256) at batch 4, float32, inference, on a T4 (cuBLAS workspace
    # 2 x 4096 KiB + 8 x 16 KiB before Hopper). Before the forward: weight 256*256*4, bias
    # 256*4, input 4*256*4; the forward: addmm's output 4*256*4 and, on the first cuBLAS
    # call, the workspace. All are multiples of 512 bytes: no rounding. The four small ones
    # share one 2 MiB small-pool segment; the workspace (1-10 MiB) takes a 20 MiB segment.
    m = meta(nn.Linear(256, 256))
    x = torch.empty(4, 256, device="meta")
    rec = forward_recording(m, (x,), T4, CUBLAS_WORKSPACE_DEFAULT_BYTES)
    r = replay(repeat_steady(rec, 2))
    assert r.peak_allocated_bytes == 256 * 256 * 4 + 256 * 4 + 4 * 256 * 4 + 4 * 256 * 4 + CUBLAS_WORKSPACE_DEFAULT_BYTES
    assert r.peak_reserved_bytes == 2 * MiB + 20 * MiB
    assert rec.blas_threads == 1


class Residual(nn.Module):
    """conv-bn-relu twice around a skip (the residual block's gradients meet at its input)."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.a = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                               nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.a(x))
        return self.fc(x.mean((2, 3)))


def test_step_requests_equal_train_peak_and_do_not_leak():
    # With no workspaces, the most bytes asked for at once over the replay is the training
    # step's train_peak_bytes (weights, buffers, Adam's state, the step's storages) plus the
    # batch and its int64 labels; a second and third step ask for no more (nothing leaks,
    # the in-place gradient accumulation of the skip included).
    m = meta(Residual())
    x = torch.empty(4, 3, 16, 16, device="meta")
    rec = step_recording(m, (x,), T4, "adam")
    expected = step_memory(m, (x,), "adam", scratch=False).train_peak_bytes + 4 * 3 * 16 * 16 * 4 + 4 * 8  # tensors only
    for passes in (1, 3):
        assert replay(repeat_steady(rec, passes)).peak_requested_bytes == expected


def test_training_holds_two_cublas_workspaces():
    # The backward runs on autograd's device thread, with its own cuBLAS handle: two
    # workspaces, 32 MiB each on Hopper (compute capability 9.0).
    m = meta(Residual())
    rec = step_recording(m, (torch.empty(2, 3, 8, 8, device="meta"),), (9, 0), "sgd", CUBLAS_WORKSPACE_HOPPER_BYTES)
    assert rec.blas_threads == 2
    r = replay(repeat_steady(rec, 2))
    assert r.requested_by_tag_at_allocated_peak["cublas"] == 2 * CUBLAS_WORKSPACE_HOPPER_BYTES


def test_sdpa_backend_rules():
    # sdp_utils: flash needs sm80+ and half precision; memory-efficient takes float32 and
    # masks; bfloat16 needs sm80 for both.
    assert sdpa_backend(A100, torch.float16, 64, False) == "flash"
    assert sdpa_backend(A100, torch.float16, 64, True) == "efficient"
    assert sdpa_backend(A100, torch.float32, 64, False) == "efficient"
    assert sdpa_backend(T4, torch.float16, 64, False) == "efficient"
    assert sdpa_backend(T4, torch.bfloat16, 64, False) == "math"
    # head size alignment: 8 elements for half precision, 4 for float32
    assert sdpa_backend(A100, torch.float32, 60, False) == "efficient"
    assert sdpa_backend(A100, torch.float16, 60, False) == "math"


class Attention(nn.Module):
    def forward(self, q):
        return F.scaled_dot_product_attention(q, q, q)


def test_fused_attention_never_holds_the_attention_matrix():
    # B=2, H=4, L=256, D=64, float16. Meta's math path materializes B*H*L*L scores; the
    # flash kernel (A100) returns the B*H*L*D output and a float32 B*H*L log-sum-exp.
    B, H, L, D = 2, 4, 256, 64
    q = torch.empty(B, H, L, D, device="meta", dtype=torch.float16)
    rec = forward_recording(Attention(), (q,), A100)
    allocs = [e[2] for e in rec.events if e[0] == "alloc"]
    assert B * H * L * D * 2 in allocs and B * H * L * 4 in allocs
    assert max(allocs) < B * H * L * L * 2
    assert any("flash" in n for n in rec.notes)
    rec_t4 = forward_recording(Attention(), (q,), T4)
    assert any("memory-efficient" in n for n in rec_t4.notes)


def test_dropout_keeps_a_one_byte_mask():
    # CUDA's fused dropout keeps a bool mask (1 byte per element); meta and CPU multiply
    # by a float noise tensor. 4 x 64 activations: a 256-byte mask.
    m = meta(nn.Sequential(nn.Linear(64, 64), nn.Dropout(0.5), nn.Linear(64, 10)))
    rec = step_recording(m, (torch.empty(4, 64, device="meta"),), T4, "sgd")
    allocs = [e[2] for e in rec.events if e[0] == "alloc"]
    assert 4 * 64 in allocs
    assert any("dropout" in n for n in rec.notes)


def test_gpu_usable_memory_from_the_driver():
    t4 = gpu("T-4")
    assert t4.usable_bytes == 15_843_721_216  # deviceQuery's total on a T4 (memory_facts' source)
    assert t4.usable_kind == "exact"
    assert gpu("h200").usable_bytes == 150_021_734_400  # deviceQuery's total on an H200
    assert gpu("h100-pcie").usable_kind == "upper bound"  # no reported total is sourced: the nominal size
    assert gpu("nonsense") is None
    assert set(FACTS) >= {"t4", "h200", "a100-40gb"}


def test_ledger_parts_add_up():
    m = meta(Residual())
    x = torch.empty(4, 3, 16, 16, device="meta")
    L = ledger(m, (x,), gpu("t4"), train=True, optimizer="adam", cudnn_workspace_bytes=MiB)
    alloc = sum(L.part(n) for n in ("tensors", "allocator rounding", "cuBLAS workspace", "cuDNN workspace"))
    assert alloc == L.max_memory_allocated_bytes
    assert L.max_memory_reserved_bytes == L.max_memory_allocated_bytes + L.part("reserved but free")
    assert L.driver_used_bytes == L.max_memory_reserved_bytes + L.part("CUDA context")
    assert L.budget_bytes == gpu("t4").usable_bytes - L.part("CUDA context")
    assert L.fits and L.part("cuDNN workspace") == MiB
    # a reserve that leaves less than the step needs: the replay runs out
    tight = ledger(m, (x,), gpu("t4"), train=True, optimizer="adam",
                   reserve_bytes=L.budget_bytes - L.max_memory_allocated_bytes // 2)
    assert not tight.fits and tight.out_of_memory


# --- fit against the ledger (CLI) ------------------------------------------------------------

import pandas as pd  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from archcost.cli import main  # noqa: E402
from archcost.devices.memory_facts import CONTEXT  # noqa: E402


def test_fit_on_a_gpu_budgets_usable_memory_less_the_context(tmp_path):
    res = CliRunner().invoke(main, ["fit", "lenet5", "--memory", "t4", "--train", "--max-batch", "8",
                                    "--out", str(tmp_path), "--format", "csv"])
    assert res.exit_code == 0, res.output
    row = pd.read_csv(tmp_path / "fit_train-sgd_float32_t4.csv").iloc[0]
    assert row.budget_bytes == 15_843_721_216 - CONTEXT.bytes  # the T4's reported total less the context
    assert row.batch == 8  # --max-batch: lenet5 is tiny
    assert row.driver_used_bytes == row.reserved_on_target_bytes + CONTEXT.bytes
    assert row.max_memory_allocated_bytes == row.tensors_bytes + row.rounding_bytes + row.workspace_bytes
    curve = pd.read_csv(tmp_path / "fit_curve_train-sgd_float32_t4.csv")
    assert {"tensors", "reserved but free", "CUDA context"} <= set(curve.columns)
    assert (tmp_path / "fit_train-sgd_float32_t4.png").stat().st_size > 10000


def test_fit_reserve_and_a_size_with_a_gpu_ledger():
    res = CliRunner().invoke(main, ["fit", "lenet5", "--memory", "1GiB", "--gpu", "t4", "--reserve", "10%",
                                    "--max-batch", "4", "--no-save", "--format", "csv"])
    assert res.exit_code == 0, res.output
    row = pd.read_csv(__import__("io").StringIO(res.output)).iloc[0]
    assert row.reserve_bytes == 2**30 // 10 and row.budget_bytes == 2**30 - CONTEXT.bytes - row.reserve_bytes


def test_fit_says_which_ledger_a_size_uses():
    res = CliRunner().invoke(main, ["fit", "lenet5", "--memory", "1GiB", "--max-batch", "4", "--no-save"])
    assert res.exit_code == 0, res.output
    assert "ledger: tensors" in res.output


def test_fit_nothing_fits_exits_1():
    # 256 MiB of a T4's ledger: less than its CUDA context (estimated 450 MiB) leaves nothing
    res = CliRunner().invoke(main, ["fit", "lenet5", "--memory", "256MiB", "--gpu", "t4", "--no-save"])
    assert res.exit_code == 1 and "does not fit at batch 1" in res.output


def test_fit_help_states_exit_1():
    text = " ".join(CliRunner().invoke(main, ["fit", "--help"]).output.split())
    assert "Exit status 1 when some model does not fit even at batch 1" in text


@pytest.mark.parametrize("args", [["--reserve", "t4"], ["--reserve", "120%"], ["--gpu", "nonsense"],
                                  ["--cudnn-workspace", "abc"]])
def test_fit_bad_ledger_options_are_one_line(args):
    res = CliRunner().invoke(main, ["fit", "lenet5", "--memory", "1GiB", "--no-save"] + args)
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0, res.output


def _quoted(source):
    """(MBytes, bytes) of a deviceQuery line quoted in a source: 'NNN MBytes (NNN bytes)'."""
    import re

    m = re.search(r"(\d+) MBytes \((\d+) bytes\)", source)
    return (int(m.group(1)), int(m.group(2))) if m else None


def test_each_driver_total_is_the_figure_its_source_quotes():
    # Every stored driver total carries its source, and the source quotes deviceQuery's line:
    # the stored bytes are the quoted bytes, and deviceQuery's MBytes are those bytes in MiB
    # (cudaDeviceProp.totalGlobalMem / 2^20, printed with "%.0f": rounded). Where NVML's total is known too it is
    # the larger (NVML counts memory the driver keeps for itself).
    sourced = {k: f for k, f in FACTS.items() if f.driver_total_bytes is not None}
    assert {"t4", "a100-40gb", "a100-80gb", "h100-sxm", "h200", "l4", "rtx3090", "rtx-4090", "v100-16gb"} <= set(sourced)
    for key, f in sourced.items():
        quoted = _quoted(f.driver_total_source)
        assert quoted is not None, key
        mbytes, nbytes = quoted
        assert nbytes == f.driver_total_bytes and mbytes == round(nbytes / MiB), key
        if f.nvml_total_bytes is not None:
            assert f.nvml_total_bytes > f.driver_total_bytes, key
    for key, f in FACTS.items():
        if f.driver_total_bytes is None:
            usable, kind, note = f.usable_bytes(80 * 2**30)
            assert kind == "upper bound" and key in note


def test_devices_shows_usable_memory_and_its_source():
    from click.testing import CliRunner

    from archcost.cli import main
    from archcost.devices.table import DEVICES, rows

    by_key = {r["target"]: r for r in rows()}
    for d in DEVICES:
        f = FACTS.get(d.key)
        if f is not None and f.driver_total_bytes is not None:
            assert by_key[d.key]["usable_bytes"] == f.driver_total_bytes and by_key[d.key]["usable_kind"] == "exact"
        elif d.memory_bytes:  # marked as a bound, never shown as exact
            assert by_key[d.key]["usable_kind"] == "upper bound"
    out = CliRunner().invoke(main, ["devices"]).output
    h200 = next(line for line in out.splitlines() if line.startswith("h200 ") or line.split()[:1] == ["h200"])
    assert f"{150_021_734_400 / 2**30:.2f}" in h200 and "*" not in h200.split()[-2]
    pcie = next(line for line in out.splitlines() if line.split()[:1] == ["h100-pcie"])
    assert "80.00*" in pcie  # the nominal 80 GiB, marked as an upper bound
    assert "h200 usable: total reported by the CUDA driver (deviceQuery on NVIDIA H200" in out
