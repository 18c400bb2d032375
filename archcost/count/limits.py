"""Sizes archcost refuses up front, and how it recognises running out of memory.

Shapes are checked before anything is built: an input of more than ``MAX_ELEMENTS``
elements (batch included) is refused in one line. The bound keeps every count a
64-bit integer (VGG19, the zoo's most MACs per input element, about 19.6e9 / (3*224*224)
= 1.3e5, reaches 1.4e17 MACs there, below 2^63 = 9.2e18) and is far above any input a
CNN is run on (2^40 elements = 4 TiB of float32).
Running out of memory (CPU: ``MemoryError`` or the CPU allocator's "can't allocate
memory"; CUDA: ``torch.OutOfMemoryError``) is told apart from a bug so the CLI can say
what would fit instead of printing a traceback. No torch import at module level.
"""

import math
import sys

from archcost.errors import AnalysisError

MAX_ELEMENTS = 2**40

_OOM_TEXT = ("can't allocate memory", "out of memory", "not enough memory", "cannot allocate memory",
             "bad_alloc")


def check_shapes(shapes) -> None:
    """Refuse inputs too large to count (see the module docstring)."""
    for s in shapes:
        n = math.prod(s)
        if n > MAX_ELEMENTS:
            shape = "x".join(map(str, s))
            raise AnalysisError(f"input {shape[:60]}{'...' if len(shape) > 60 else ''} (batch first) has "
                                f"{n:.3g} elements; archcost handles up to 2^40 ({MAX_ELEMENTS:.3g}) per input: "
                                "use a smaller --input-size or --batch-size")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc).lower() for t in _OOM_TEXT)


def out_of_memory_message(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = first.split("DefaultCPUAllocator: ")[-1]  # drop "[enforce fail at alloc_cpu.cpp:127] err == 0."
    return (f"out of memory ({first[:160]}): try a smaller --batch-size or --input-size, or --no-memory / "
            "no --latency (the counts alone run on shape-only meta tensors)")
