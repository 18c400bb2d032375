"""Human units for text output, chosen per value. Files always carry raw integers."""

_SI = (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3))
_BINARY = (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def si(n, digits=3) -> str:
    """12_443_648 -> '12.4M' (powers of 1000, K to E; for counts: params, MACs, FLOPs)."""
    if _missing(n):
        return "-"
    n = float(n)
    for unit, scale in _SI:
        if abs(n) >= scale:
            v = n / scale
            return (f"{v:.{digits}g}" if abs(v) < 10**digits else f"{v:,.0f}") + unit
    return f"{n:.{digits}g}" if n != int(n) else str(int(n))


def human_bytes(n_bytes, digits=1) -> str:
    """Bytes in the largest binary unit that keeps the value >= 1: '512 B', '96.0 KiB',
    '57.6 MiB', '1.10 GiB' (powers of 1024)."""
    if _missing(n_bytes):
        return "-"
    n = float(n_bytes)
    for unit, scale in _BINARY:
        if abs(n) >= scale:  # GiB and up: one more decimal (1.10 vs 1.14 GiB, VGG16 vs VGG19 training)
            return f"{n / scale:,.{digits + (scale >= 2**30)}f} {unit}"
    return f"{int(n)} B"


def _missing(v) -> bool:
    try:
        return v is None or bool(v != v)
    except TypeError:  # pandas' NA: "boolean value of NA is ambiguous"
        return True


mib = human_bytes  # the name older callers use; the unit is now chosen per value
