"""Kernel scratch, one operator call at a time: the calls' signatures, their figures
cached in the process and on disk, and the measurement under the CPU allocator's events.

A call's scratch is the highest running sum of the allocator's events inside the call
minus the sum when it returns (``scratch_from_events``): what it returns the memory
passes count already, so scratch is what is alive on top of the live tensors at the
moment of that call. ``in_situ`` measures every call of a pass on real CPU tensors, each
in its own ``record_function`` range; ``measure_calls`` one call alone, on zeros of its
shapes, strides and dtypes. See ``scratch.py`` for how a pass uses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pathlib
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_map

SCHEMA = 1  # bump when what a cached figure means changes
_MARK = "archcost.scratch."

_MEMORY: Dict[str, Dict[str, object]] = {"calls": {}, "traces": {}}  # this process's cache


# ---------------------------------------------------------------- signatures


def _describe(x):
    if isinstance(x, torch.Tensor):
        return ("T", tuple(x.shape), tuple(x.stride()), str(x.dtype).replace("torch.", ""))
    if isinstance(x, torch.device):
        return ("D", "cpu" if x.type == "meta" else x.type)
    if isinstance(x, (torch.dtype, torch.memory_format, torch.layout)):
        return str(x)
    if isinstance(x, float):
        return "f"  # a scalar's value (Adam's bias correction changes every step) picks no kernel
    if x is None or isinstance(x, (bool, int, str, complex)):
        return x
    return ("O", type(x).__name__)  # a ScriptObject, a Generator: its type, not its address


def signature(func, args, kwargs) -> str:
    """A key for one operator call: the ATen op, each tensor's shape, strides and dtype,
    each other argument (a meta device reads as cpu: the call is measured there)."""
    flat, spec = tree_flatten((args, kwargs or {}))
    return repr((str(func), tuple(_describe(x) for x in flat), str(spec)))


def no_scratch_by_rule(func, args, kwargs) -> bool:
    """Calls that allocate nothing beyond what they return: views and aliases (no
    allocation at all), and calls without a tensor operand (factories such as ``empty``,
    ``zeros``, ``arange``, whose one allocation is their output)."""
    if getattr(func, "is_view", False):
        return True
    return not any(isinstance(x, torch.Tensor) for x in tree_flatten((args, kwargs or {}))[0])


@dataclass(frozen=True)
class _TensorRecipe:
    shape: Tuple[int, ...]
    stride: Tuple[int, ...]
    dtype: torch.dtype

    def make(self) -> torch.Tensor:
        # Zeros: a valid index for every index operand (max-pool indices, embedding ids,
        # class labels); a dense kernel's scratch does not depend on its operands' values.
        return torch.empty_strided(self.shape, self.stride, dtype=self.dtype).zero_()


def _recipe(args, kwargs):
    """The call with every tensor replaced by what is needed to make a real CPU one."""
    def one(x):
        if isinstance(x, torch.Tensor):
            return _TensorRecipe(tuple(x.shape), tuple(x.stride()), x.dtype)
        if isinstance(x, torch.device) and x.type == "meta":
            return torch.device("cpu")
        return x
    return tree_map(one, (tuple(args), dict(kwargs or {})))


def _materialize(recipe):
    return tree_map(lambda x: x.make() if isinstance(x, _TensorRecipe) else x, recipe)


# ---------------------------------------------------------------- the caches


def cache_file() -> pathlib.Path:
    from archcost.devices.table import device_name
    from archcost.roofline.calibrate import cache_dir

    text = f"{device_name('cpu')}|{torch.get_num_threads()}|{torch.__version__}|scratch{SCHEMA}"
    return cache_dir() / f"scratch-{hashlib.sha1(text.encode()).hexdigest()[:12]}.json"


def _load_disk() -> Dict[str, dict]:
    try:
        data = json.loads(cache_file().read_text())
        return {k: dict(data.get(k, {})) for k in ("calls", "traces")}
    except (OSError, ValueError, TypeError, AttributeError):
        return {"calls": {}, "traces": {}}  # missing, unreadable or malformed: measure again


def _remember(kind: str, figures: dict):
    """Keep figures in the process and on disk (merged with what another process may have
    added meanwhile); a cache folder that cannot be written only means not keeping them."""
    from archcost.files import atomic_path

    _MEMORY[kind].update(figures)
    path = cache_file()
    try:
        data = _load_disk()
        data[kind].update(figures)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pathlib.Path(tmp).write_text(json.dumps(data, sort_keys=True))
    except OSError:
        pass


_DISK_READ = [False]


def _cached(kind: str, key: str):
    if not _DISK_READ[0]:
        _DISK_READ[0] = True
        for k, table in _load_disk().items():
            for key_, v in table.items():
                _MEMORY[k].setdefault(key_, v)
    return _MEMORY[kind].get(key)


def forget():
    """Forget what this process measured (the file on disk stays)."""
    for table in _MEMORY.values():
        table.clear()
    _DISK_READ[0] = False


# ---------------------------------------------------------------- measuring


@contextlib.contextmanager
def quiet_stderr():
    """The profiler's C++ side prints start/stop lines on fd 2; keep them off the terminal."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _profiled():
    """A CPU profiler session with allocator events, quietly. Yields the profiler."""
    from torch.profiler import ProfilerActivity, profile

    if torch.autograd.profiler._is_profiler_enabled:
        raise RuntimeError("kernel scratch is measured under torch.profiler, which is already running")
    with quiet_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            yield prof


def scratch_from_events(events) -> Dict[int, int]:
    """Per marked call (``archcost.scratch.<k>`` ranges of ``record_function``): the highest
    running sum of the CPU allocator's events inside the range minus the sum at its end
    (0 when the call freed more than it kept: the tracker counts no outputs then). A marked range nested in another (an op a marked op calls) is skipped: its allocations
    belong to the outer call."""
    cpu = torch.autograd.DeviceType.CPU
    mem = sorted((e.start_ns(), e.nbytes()) for e in events
                 if e.name() == "[memory]" and e.device_type() == cpu)
    marks = sorted(((e.start_ns(), e.end_ns(), int(e.name()[len(_MARK):])) for e in events
                    if e.name().startswith(_MARK)), key=lambda m: (m[0], -m[1]))
    out, i, reach = {}, 0, -1
    for start, end, k in marks:
        if start < reach:
            continue
        reach = end
        while i < len(mem) and mem[i][0] < start:
            i += 1
        running = high = 0
        while i < len(mem) and mem[i][0] <= end:
            running += mem[i][1]
            high = max(high, running)
            i += 1
        out[k] = high - max(running, 0)
    return out


class _Marker(TorchDispatchMode):
    """Runs each ATen call inside a numbered ``record_function`` range."""

    def __init__(self):
        super().__init__()
        self.ops: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.profiler import record_function

        k = len(self.ops)
        self.ops.append(str(func))
        with record_function(f"{_MARK}{k}"):
            return func(*args, **(kwargs or {}))


def in_situ(run_real: Callable[[TorchDispatchMode], None]) -> List[Tuple[str, int]]:
    """(op, scratch bytes) of each ATen call of ``run_real(mode)``, a pass on real CPU
    tensors that enters ``mode`` where the tracked pass enters its tracker."""
    mode = _Marker()
    with _profiled() as prof:
        run_real(mode)
    per_call = scratch_from_events(list(prof.profiler.kineto_results.events()))
    return [(op, per_call.get(k, 0)) for k, op in enumerate(mode.ops)]


FAILED: set = set()  # signatures whose call raised on zero operands, or too large to run (scratch taken as 0)
TOO_LARGE: set = set()  # of them, those too large to run on this machine
# A call run alone holds its operands, its outputs (about as large) and its scratch (up to a
# reorder of each operand: about as large again, the very thing being measured), so it runs
# only where four times its operands fit in half the free memory: AlexNet's first
# convolution's backward at batch 4000 holds 5.5 GB of operands and peaked near 14 GB.
CALL_HEADROOM = 4


def free_memory_bytes() -> int:
    """Memory this machine can still give (``MemAvailable``), or 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def affordable(nbytes: int) -> bool:
    """A real run of ``nbytes`` takes at most half of the free memory (a model analysed on
    meta because it does not fit is never built for real)."""
    free = free_memory_bytes()
    return free == 0 or nbytes <= free // 2


def _recipe_bytes(recipe) -> int:
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in tree_flatten(recipe)[0]
               if isinstance(x, _TensorRecipe))


def measure_calls(calls: List[Tuple[str, object, object]]) -> Dict[str, int]:
    """Run each (signature, func, recipe) once on zeros on the CPU under one profiler
    session; returns signature -> scratch bytes, also cached. A call that raises on zeros
    is taken as 0 and its signature kept in ``FAILED``."""
    if not calls:
        return {}
    failed = set()
    with _disable_current_modes(), torch.no_grad(), _profiled() as prof:
        from torch.profiler import record_function

        for k, (_, func, recipe) in enumerate(calls):
            if not affordable(CALL_HEADROOM * _recipe_bytes(recipe)):
                failed.add(k)
                TOO_LARGE.add(calls[k][0])
                continue
            args, kwargs = _materialize(recipe)
            try:
                with record_function(f"{_MARK}{k}"):
                    out = func(*args, **kwargs)
                del out  # freed after the range closes: what a call returns is not its scratch
            except Exception:  # noqa: BLE001 -- any kernel error: this call is unmeasured
                failed.add(k)
            del args, kwargs
    per_call = scratch_from_events(list(prof.profiler.kineto_results.events()))
    result = {key: (0 if k in failed else per_call.get(k, 0)) for k, (key, _, _) in enumerate(calls)}
    # a call too large for the memory free now is 0 in this process only: another run, with
    # more memory free, measures it
    _remember("calls", {key: n for key, n in result.items() if key not in TOO_LARGE})
    _MEMORY["calls"].update(result)
    FAILED.update(calls[k][0] for k in failed)
    return result
