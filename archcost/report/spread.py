"""A latency whose repetitions spread widely is flagged where it is shown."""

SPREAD_LIMIT = 1.5  # p80 / p20: beyond this the median is not a stable figure (a busy machine)


def add_spread(frame):
    """Add ``latency_spread`` = p80 / p20 to a frame with latency columns; return warning
    notes for the rows beyond SPREAD_LIMIT (empty when none, or without latency)."""
    if "latency_p80_ms" not in frame or "latency_p20_ms" not in frame:
        return []
    frame["latency_spread"] = frame["latency_p80_ms"] / frame["latency_p20_ms"]
    wide = frame[frame["latency_spread"] > SPREAD_LIMIT]
    if not len(wide):
        return []
    which = ", ".join(f"{r['model']}" + (f" batch {r['batch_size']}" if "batch_size" in r else "")
                      + f" ({r['latency_spread']:.2f})" for r in wide.to_dict("records"))
    return [f"warning: latency spread p80/p20 above {SPREAD_LIMIT} for {which}: the timings vary a lot "
            "(a busy machine?); the median is unreliable: rerun on a quiet machine or with more --repeat."]


def spread_cell(v) -> str:
    return f"{v:.2f}" + (" !" if v > SPREAD_LIMIT else "")
