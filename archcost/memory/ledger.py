"""The CUDA device ledger: what a forward or a training step takes on a GPU, part by part,
predicted without one.

The run's allocation and free events (``device_events``, recorded on meta tensors, following
the device's kernels) are replayed through the caching-allocator model (``cuda_allocator``),
twice, so that the second pass starts from the first one's cache, as every step of a
training loop but the first does. The parts:

| part | kind | what |
| --- | --- | --- |
| tensors | exact | the bytes the storages ask for at the moment ``memory_allocated`` peaks |
| allocator rounding | modelled | blocks rounded to 512 bytes, remainders too small to split kept whole |
| cuBLAS workspace | modelled | one per cuBLAS handle (forward thread; autograd's backward thread), size per GPU generation |
| cuDNN workspace | estimated | per convolution call, for its duration: 0 unless the caller gives a figure |
| reserved but free | modelled | cached segments not handed out at the peak (``max_memory_reserved - max_memory_allocated``) |
| CUDA context | estimated | the driver's memory outside the allocator (``memory_facts.CONTEXT``) |

tensors + rounding + workspaces = predicted ``max_memory_allocated``; + reserved but free =
``max_memory_reserved``; + context = what the driver shows used (``nvidia-smi``,
``mem_get_info``). A batch fits when the replay, limited to the usable memory less the
context and the caller's reserve, never runs out: the allocator, short of memory, releases
its cached segments and retries, as the real one does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn as nn

from archcost.devices.memory_facts import CONTEXT, CUBLAS_WORKSPACE_SOURCE, FACTS, cublas_workspace_bytes
from archcost.devices.table import by_key

from .cuda_allocator import CachingAllocator, Replay, replay
from .device_events import Recording, forward_recording, repeat_steady, step_recording

STEADY_PASSES = 2  # the first pass fills the cache; the second reuses it, as a training loop does


@dataclass(frozen=True)
class Gpu:
    key: str
    compute_capability: Tuple[int, int]
    nominal_bytes: int
    usable_bytes: int  # what the driver reports as total (or its stated fallback)
    usable_kind: str  # exact | upper bound
    usable_note: str
    context_bytes: int = CONTEXT.bytes


def gpu(name: str) -> Optional[Gpu]:
    """The GPU a --memory name stands for (the device table's resolver), with its usable
    memory; None if the name is not a GPU of the table."""
    d = by_key(name) if name.strip() else None
    if d is None or d.key not in FACTS or not d.memory_bytes:
        return None
    f = FACTS[d.key]
    usable, kind, note = f.usable_bytes(d.memory_bytes)
    return Gpu(d.key, f.compute_capability, d.memory_bytes, usable, kind, note)


@dataclass
class Part:
    name: str
    bytes: int
    kind: str  # exact | modelled | estimated
    error: str  # how far off it could be, and why


@dataclass
class Ledger:
    gpu: Gpu
    mode: str  # train | inference
    parts: List[Part]
    max_memory_allocated_bytes: int
    max_memory_reserved_bytes: int
    driver_used_bytes: int
    budget_bytes: int  # usable - context - reserve: what the allocator may reserve
    fits: bool
    out_of_memory: str = ""  # the replay's message when it does not fit
    reserved_on_target_bytes: int = 0  # the peak reserved when limited to the budget (cache released when short)
    cache_releases: int = 0  # cudaFree calls the limited replay needed (each one a device synchronization)
    notes: List[str] = field(default_factory=list)

    def part(self, name: str) -> int:
        return next(p.bytes for p in self.parts if p.name == name)

    def parts_on_target(self) -> Dict[str, int]:
        """The parts as on the target itself: when short of memory the allocator releases its
        cached segments, so less stays reserved but free than on a larger card."""
        out = {p.name: p.bytes for p in self.parts}
        if self.fits:
            out["reserved but free"] = max(0, self.reserved_on_target_bytes - self.max_memory_allocated_bytes)
        return out


def _parts(r: Replay, cudnn_given: bool) -> List[Part]:
    tags: Dict[str, int] = r.requested_by_tag_at_allocated_peak
    return [
        Part("tensors", tags.get("tensor", 0), "exact",
             "0 for operators that allocate on CUDA what they allocate on meta (the tracker's tests); memory a "
             "kernel takes inside itself is not in it"),
        Part("allocator rounding", r.peak_allocated_bytes - r.requested_at_allocated_peak, "modelled",
             "0 given the same sequence of requests (512-byte rounding and unsplit remainders are the "
             "allocator's rules); differs where the device's sequence does"),
        Part("cuBLAS workspace", tags.get("cublas", 0), "modelled",
             f"0 for PyTorch 2.x defaults ({CUBLAS_WORKSPACE_SOURCE}); CUBLAS_WORKSPACE_CONFIG changes it, and "
             "PyTorch versions that leave the workspace to cuBLAS move it outside the allocator (same bytes)"),
        Part("cuDNN workspace", tags.get("cudnn", 0), "estimated",
             "the given figure per convolution" if cudnn_given else
             "0 assumed: cuDNN picks algorithms at run time and their workspace is not known without the device "
             "(up to hundreds of MiB with cudnn.benchmark); give a figure to include it"),
        Part("reserved but free", r.peak_reserved_bytes - r.peak_allocated_bytes, "modelled",
             "depends on the order and sizes of requests; blocks of equal size are taken by address, and "
             "addresses differ on a device: a few segments (2-20 MiB each) either way, not yet measured"),
    ]


def _replays(rec: Recording, budget: int) -> Tuple[Replay, Replay]:
    events = repeat_steady(rec, STEADY_PASSES)
    return replay(events), replay(events, CachingAllocator(capacity=budget))


def record(model: nn.Module, inputs: tuple, target: Gpu, train: bool = True, optimizer: str = "adam",
           cudnn_workspace_bytes: int = 0, checkpoint: Sequence[str] = ()) -> Recording:
    """The run's events as ``target`` would see them (its kernels, its cuBLAS workspace size)."""
    blas = cublas_workspace_bytes(target.compute_capability)
    if train:
        return step_recording(model, inputs, target.compute_capability, optimizer, blas, cudnn_workspace_bytes,
                              checkpoint)
    return forward_recording(model, inputs, target.compute_capability, blas, cudnn_workspace_bytes)


def budget_of(target: Gpu, reserve_bytes: int = 0) -> int:
    """What the caching allocator may reserve: usable memory less the context and the reserve."""
    return target.usable_bytes - target.context_bytes - reserve_bytes


def fits(rec: Recording, budget: int) -> bool:
    """The steady-state replay, limited to ``budget``, never runs out."""
    return not replay(repeat_steady(rec, STEADY_PASSES), CachingAllocator(capacity=budget)).out_of_memory


def requested_peak(rec: Recording) -> int:
    """The most bytes asked for at once: no allocator can do with less."""
    return replay(repeat_steady(rec, 1)).peak_requested_bytes


def ledger_of(rec: Recording, target: Gpu, train: bool, cudnn_given: bool = False, reserve_bytes: int = 0) -> Ledger:
    budget = budget_of(target, reserve_bytes)
    free, bounded = _replays(rec, budget)
    parts = _parts(free, cudnn_given)
    parts.append(Part("CUDA context", target.context_bytes, "estimated", CONTEXT.how))
    notes = list(rec.notes)
    if target.usable_kind != "exact":
        notes.append(target.usable_note)
    return Ledger(target, "train" if train else "inference", parts,
                  max_memory_allocated_bytes=free.peak_allocated_bytes,
                  max_memory_reserved_bytes=free.peak_reserved_bytes,
                  driver_used_bytes=free.peak_reserved_bytes + target.context_bytes, budget_bytes=budget,
                  fits=not bounded.out_of_memory, out_of_memory=bounded.out_of_memory,
                  reserved_on_target_bytes=bounded.peak_reserved_bytes, cache_releases=bounded.cuda_frees,
                  notes=notes)


def ledger(model: nn.Module, inputs: tuple, target: Gpu, train: bool = True, optimizer: str = "adam",
           cudnn_workspace_bytes: int = 0, reserve_bytes: int = 0, checkpoint: Sequence[str] = ()) -> Ledger:
    """The device ledger of ``model`` (on meta) at ``inputs`` on GPU ``target``."""
    rec = record(model, inputs, target, train, optimizer, cudnn_workspace_bytes, checkpoint)
    return ledger_of(rec, target, train, cudnn_workspace_bytes > 0, reserve_bytes)
