"""Memory budgets: '16GiB', '16GB', '80G', or a known accelerator's memory by name."""

from __future__ import annotations

import re
from archcost.devices.table import DEVICES, by_key

GIB = 2**30


# Budgets by device name come from the one device table (``table.py``): nominal
# capacity. What a program can allocate is less (ECC, the CUDA context, the caching
# allocator's rounding): see ``archcost devices`` for usable memory where it is known.
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,  # bare K/M/G/T: binary, as Slurm's --mem
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "b": 1}
MAX_BUDGET = 2**64  # bytes: more than any machine addresses
_AMOUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$", re.I)


def parse_memory(text: str) -> int:
    """'16GiB' -> 16 * 2**30; '16GB' -> 16 * 10**9; '80G' -> 80 * 2**30 (a bare K/M/G/T is
    binary, as in Slurm and coreutils); 'rtx4090' -> its nominal memory. Raises ValueError
    with what would work."""
    key = text.strip().lower()
    device = by_key(key) if key else None  # rtx-4090 = rtx4090; no device is named like a size
    if device is not None:
        return device.memory_bytes
    m = _AMOUNT.match(key)
    hint = ("give a size (16GiB, 16GB, 80G, 512MiB; a bare number is bytes) or a device name: "
            + ", ".join(d.key for d in DEVICES))
    if text.strip().startswith("-"):
        raise ValueError(f"memory budget {text!r} is negative; {hint}")
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"memory budget {text!r} is not understood; {hint}")
    from decimal import Decimal

    amount = Decimal(m.group(1))  # exact: a float would turn 400 nines into infinity
    if amount > MAX_BUDGET:
        raise ValueError(f"memory budget {text[:40]!r}{'...' if len(text) > 40 else ''} is more than 2^64 bytes; {hint}")
    value = int(amount * _UNITS[m.group(2).lower()])
    if value > MAX_BUDGET:
        raise ValueError(f"memory budget {text[:40]!r}{'...' if len(text) > 40 else ''} is more than 2^64 bytes; {hint}")
    if value <= 0:
        raise ValueError(f"memory budget {text!r} is zero; {hint}")
    return value


def describe(text: str) -> str:
    """Where a budget came from, for the notes: the device and its datasheet, or the amount."""
    d = by_key(text.strip()) if text.strip() else None
    return f"{d.name}: {d.memory_gib:g} GiB nominal ({d.memory_source})" if d else text.strip()
