"""Titles, formats and conventions of the device-ledger columns of ``fit --memory GPU``
(merged into tables.COLUMNS)."""

from .units import mib

LEDGER_COLUMNS = {
    "gpu": ("GPU", str, "the device whose ledger is used (archcost devices)"),
    "usable_bytes": ("usable", mib, "the total the GPU's driver reports (or its stated fallback)"),
    "context_bytes": ("context", mib, "CUDA context, outside the allocator (estimated)"),
    "reserve_bytes": ("reserve", mib, "--reserve"),
    "tensors_bytes": ("tensors", mib, "bytes the storages ask for at the allocated peak (exact)"),
    "rounding_bytes": ("rounding", mib, "blocks rounded to 512 B, remainders kept whole (modelled)"),
    "workspace_bytes": ("workspaces", mib, "cuBLAS per handle (modelled) + cuDNN (estimated, --cudnn-workspace)"),
    "reserved_free_bytes": ("reserved free", mib, "cached segments not handed out at the peak, on this GPU "
                            "(the allocator releases its cache when short)"),
    "max_memory_allocated_bytes": ("max allocated", mib, "predicted torch.cuda.max_memory_allocated"),
    "reserved_on_target_bytes": ("max reserved", mib, "predicted torch.cuda.max_memory_reserved on this GPU"),
    "driver_used_bytes": ("driver used", mib, "max reserved + context: what nvidia-smi shows"),
    "breakers": ("also fit", str, "larger batches that fit although a smaller one does not"),
}
