"""Human units for text output. Files always carry raw integers."""


def si(n, digits=3) -> str:
    """12_443_648 -> '12.4M' (powers of 1000; for counts: params, MACs, FLOPs)."""
    if n is None or n != n:
        return "-"
    n = float(n)
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.{digits}g}{unit}"
    return f"{n:.{digits}g}" if n != int(n) else str(int(n))


def mib(n_bytes, digits=1) -> str:
    """Bytes -> 'x.y MiB' (powers of 1024)."""
    if n_bytes is None or n_bytes != n_bytes:
        return "-"
    return f"{n_bytes / 2**20:.{digits}f} MiB"
