"""Rows and notes of ``fit --memory GPU``: a GPU fit's ledger as a table row and as a line
of parts, each with how it was obtained; the per-batch parts for the plot."""

from typing import Dict, List

from .units import human_bytes

PART_COLUMNS = {"tensors": "tensors_bytes", "allocator rounding": "rounding_bytes",
                "reserved but free": "reserved_free_bytes", "CUDA context": "context_bytes"}


def gpu_fit_row(r, optimizer: str, dtype: str) -> Dict[str, object]:
    """One row of raw integers: ``r`` is a ``memory.fit_gpu.GpuFit``."""
    L = r.ledger
    parts = L.parts_on_target()
    return {"model": r.model, "mode": r.mode, "optimizer": optimizer if r.mode == "train" else "", "dtype": dtype,
            "gpu": r.target.key, "usable_bytes": r.target.usable_bytes, "context_bytes": r.target.context_bytes,
            "reserve_bytes": r.reserve_bytes, "budget_bytes": r.budget_bytes, "batch": r.batch,
            "tensors_bytes": parts["tensors"], "rounding_bytes": parts["allocator rounding"],
            "workspace_bytes": parts["cuBLAS workspace"] + parts["cuDNN workspace"],
            "cublas_workspace_bytes": parts["cuBLAS workspace"], "cudnn_workspace_bytes": parts["cuDNN workspace"],
            "reserved_free_bytes": parts["reserved but free"],
            "max_memory_allocated_bytes": L.max_memory_allocated_bytes,
            "reserved_on_target_bytes": L.reserved_on_target_bytes if L.fits else L.max_memory_reserved_bytes,
            "max_memory_reserved_unlimited_bytes": L.max_memory_reserved_bytes,
            "driver_used_bytes": (L.reserved_on_target_bytes if L.fits else L.max_memory_reserved_bytes)
            + r.target.context_bytes,
            "headroom_bytes": r.budget_bytes - (L.reserved_on_target_bytes if L.fits else L.max_memory_reserved_bytes),
            "breakers": " ".join(map(str, r.search.breakers)), "checked_batches": len(r.search.checked),
            "usable_kind": r.target.usable_kind}


def ledger_line(r) -> str:
    """'resnet18 at batch 676 on t4: tensors 14.2 GiB (exact) + ... = driver used ...'."""
    L = r.ledger
    parts = L.parts_on_target()
    at = f"batch {r.batch}" if r.batch else "batch 1 (it does not fit)"
    body = " + ".join(f"{p.name} {human_bytes(parts[p.name])} ({p.kind})" for p in L.parts)
    reserved = L.reserved_on_target_bytes if L.fits else L.max_memory_reserved_bytes
    more = (f"; on a card with room the cache would keep {human_bytes(L.max_memory_reserved_bytes)} reserved"
            if L.fits and L.max_memory_reserved_bytes > L.reserved_on_target_bytes else "")
    releases = (f"; short of memory, the allocator would return {L.cache_releases} cached segments to the driver "
                "(cudaFree: each a device synchronization)"
                if L.cache_releases else "")
    return (f"{r.model} at {at} on {r.target.key}: {body} = {human_bytes(reserved + r.target.context_bytes)} used "
            f"of {human_bytes(r.target.usable_bytes)}; predicted max_memory_allocated "
            f"{human_bytes(L.max_memory_allocated_bytes)}, max_memory_reserved {human_bytes(reserved)}{more}{releases}.")


def part_errors(r) -> List[str]:
    """How far off each part could be (once per run)."""
    return [f"  {p.name} ({p.kind}): {p.error}" for p in r.ledger.parts]


def curve_rows(r) -> List[Dict[str, object]]:
    """Per batch of the plot's grid: each part's bytes as on the target."""
    return [{"model": r.model, "batch_size": b, **L.parts_on_target()} for b, L in sorted(r.curve.items())]
