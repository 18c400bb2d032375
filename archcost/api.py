"""The commands a notebook needs too, as functions returning frames (what the CLI prints and
writes, before formatting): ``fit``, ``roofline``, ``diff``, ``check``. Each raises
``AnalysisError`` (one line) for a bad input, as the CLI's exit 2; nothing is written."""

from __future__ import annotations

from typing import Optional, Sequence, Union


def fit(model: str, memory: Union[str, int], train: bool = True, optimizer: str = "adam", dtype: str = "float32",
        input_size=None, freeze: Sequence[str] = (), checkpoint: Sequence[str] = ()):
    """The largest batch of ``model`` (a zoo name or ``file.py:builder``) whose measured
    memory fits ``memory`` (bytes, or a budget as ``archcost fit --memory`` takes it:
    '16GiB', a device name). -> ``FitResult`` (``batch``, ``needed_bytes``, ``row``)."""
    from archcost.devices.budgets import parse_memory
    from archcost.errors import AnalysisError
    from archcost.memory.fit import fit as search

    if isinstance(memory, bool) or not isinstance(memory, (int, str)):
        raise AnalysisError(f"memory must be bytes (an int) or a budget such as '16GiB', got {memory!r}")
    try:
        budget = memory if isinstance(memory, int) else parse_memory(memory)
    except ValueError as exc:
        raise AnalysisError(str(exc)) from None
    if budget <= 0:
        raise AnalysisError(f"memory must be positive, got {memory!r}")
    return search(model, budget, train=train, optimizer=optimizer, dtype=dtype, input_size=input_size,
                  freeze=tuple(freeze), checkpoint=tuple(checkpoint))


def roofline(model, target: str = "cpu", batch_size: int = 1, dtype: str = "float32", input_size=None,
             latency: bool = False, launch_overhead_us: float = 0.0):
    """``model`` on a roofline ``target`` (a device name from ``archcost devices``, or cpu):
    -> (layers frame, summary frame of one row), as ``archcost roofline``'s CSVs."""
    from archcost.analysis.roofline import run
    from archcost.roofline.layers import resolve_target

    return run(model, resolve_target(target, dtype, launch_overhead_us), batch_size=batch_size, dtype=dtype,
               input_size=input_size, latency=latency)


def diff(model_a, model_b, input_size=None, batch_size: int = 1, memory: bool = True):
    """Two models (names, ``file.py:builder``, ``nn.Module``s, or ``baseline.csv:MODEL``)
    layer by layer: the frame of ``archcost diff`` (``status`` changed/added/removed/same,
    A, B and the delta B - A; the ``(total)`` row last)."""
    from archcost.compare.diff import diff as diff_frames
    from archcost.compare.sides import baseline_side, input_of, is_baseline_ref, model_side

    def side(ref, sizes, batch):
        return baseline_side(ref) if isinstance(ref, str) and is_baseline_ref(ref) else \
            model_side(ref, sizes, batch, memory)

    a = side(model_a, input_size, batch_size)
    b_sizes, b_batch = input_of(a) if isinstance(model_a, str) and is_baseline_ref(model_a) and input_size is None \
        else (input_size, batch_size)
    b = side(model_b, b_sizes, b_batch)
    return diff_frames(a.layers, a.summary, b.layers, b.summary)


def check(baseline, models: Optional[Sequence[str]] = None, tolerance: float = 0.0):
    """The drift of ``models`` (default: every model in it) against the ``baseline`` CSV:
    the frame of ``archcost check --format csv`` (empty when every count holds), whose
    ``status`` and ``(total)`` rows say what changed."""
    import math
    import pathlib

    from archcost.compare.check import compare, read_baseline
    from archcost.errors import AnalysisError

    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not (
            math.isfinite(tolerance) and tolerance >= 0):
        raise AnalysisError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    path = pathlib.Path(baseline)
    return compare(read_baseline(path), list(models or []), tolerance, path.resolve().parent)
