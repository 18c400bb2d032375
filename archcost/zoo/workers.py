"""Run one task per model, each in its own worker process with a time and a memory limit.

A zoo is thousands of foreign models: one of them segfaults in a C++ kernel, allocates 40 GB
or never returns. Each model therefore runs in a child process, and the parent turns
whatever happens to it into a row. The children are forked by a server process
(multiprocessing's ``forkserver``) that imported the libraries once (``preload``: torch,
timm, fvcore ...; ``worker_start.py``) and never ran a kernel, with one torch thread: a child
starts in milliseconds with the libraries imported, and its OpenMP runtime is fresh. A child
is never forked from the calling process, which may have run OpenMP kernels already
(libgomp is not fork-safe: a child forked after its thread pool exists can hang in its first
parallel kernel). Empty modules the caller put in ``sys.modules`` in place of real ones (a
stub for a broken optional import) are put there in each child too, so a child imports as
its parent does. As with any multiprocessing start but fork, a child imports the caller's
main script again (as ``__mp_main__``): a script that runs a zoo keeps its work under
``if __name__ == "__main__":``. What the parent turns into a row:

- ``ok``: the task returned;
- ``error``: the task raised (the model's own failure: a shape it refuses, an operator
  that fails), with the exception's first line;
- ``memory``: the child went over ``Limits.memory_bytes`` — its whole resident memory (what
  ``ps`` and ``top`` show as RSS: the pages it shares with the server, the imported
  libraries, included), read from ``/proc`` every ``POLL_S`` seconds; or an allocation
  refused by the address-space limit set in the child (``RLIMIT_AS``: the size it was
  forked with plus what the limit leaves after its starting pages, less ``AS_SLACK``),
  which catches one huge allocation before it lands; or a peak over the limit that the
  child's own accounting (``getrusage``'s ``ru_maxrss``) shows after a quick rise between
  two reads. So no worker whose row is ``ok`` held more than the limit at any moment;
- ``timeout``: still running after ``Limits.timeout_s`` (killed);
- ``crashed``: the child died without answering (a signal, ``os._exit``).

A task may answer in parts (it yields dicts): the parts already sent are kept when a later
part fails, and the failure is recorded under ``<stage>_status`` where the part before it
named the next ``stage`` (the zoo's counts stay when only fvcore's cross-check times out).

Rows are handed to ``on_row`` as each model finishes (the caller appends them to its CSV);
progress lines show done/total, failures and an ETA.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

POLL_S = 0.1  # how often the parent reads each child's resident memory and clock
STATUSES = ("ok", "error", "memory", "timeout", "crashed")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# Pages a child can make resident without growing its address space (library code and data
# mapped at its start but not yet read): kept out of the address-space limit, so a peak
# reached that way stays under the resident limit too.
AS_SLACK = 128 * 2 ** 20


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 600.0  # wall-clock seconds per model
    memory_bytes: int = 3 * 2 ** 30  # resident memory per worker
    threads: int = 1  # torch threads in each worker (jobs x threads <= cores keeps them from competing)


def parse_shard(text: str) -> Tuple[int, int]:
    """'2/4' -> (2, 4): the second of four shards (1-based, as a CI matrix counts)."""
    try:
        i, n = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} must be I/N, e.g. 1/4 (the first of four shards)") from None
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: I must be from 1 to N (N >= 1), e.g. 1/{max(n, 2)}")
    return i, n


def shard(items: List[str], i: int, n: int) -> List[str]:
    """Shard ``i`` of ``n``: every n-th item of the list starting at the (i-1)-th. The shards
    are disjoint and together hold every item once, in the list's order; the list is the
    caller's sorted one, so every machine computes the same split."""
    return list(items)[i - 1::n]


def rss_bytes(pid: int) -> Optional[int]:
    """Resident memory of a process (Linux /proc), None when it is gone or /proc is absent."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return None


def _vm_size() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_REFUSED = ("can't allocate memory", "out of memory", "not enough memory")  # torch's and the OS's words


def says_refused(text: str) -> bool:
    """Whether an error's text says an allocation was refused (a row's reason, ``Type: message``)."""
    text = text.lower()
    return any(words in text for words in _REFUSED)


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    if "memoryerror" in str(exc).lower():  # re-raised by a wrapper (a builder's error names the MemoryError inside)
        return True
    return isinstance(exc, RuntimeError) and says_refused(str(exc))


def stubbed_modules() -> List[str]:
    """Names in ``sys.modules`` that hold an empty module with no file or spec, not made
    by a C extension: stubs the caller put there in place of a module that must not be
    imported (e.g. a torchvision built for another torch: its ``_meta_registrations``),
    which each child gets too."""
    import types
    from importlib.machinery import EXTENSION_SUFFIXES

    plain = set(vars(types.ModuleType("_")))

    def native_child(name):  # a C extension's own submodule (torch._C._jit), made when it loads
        parent = sys.modules.get(name.rpartition(".")[0])
        return str(getattr(parent, "__file__", "") or "").endswith(tuple(EXTENSION_SUFFIXES))

    return sorted(name for name, m in list(sys.modules.items())
                  if isinstance(m, types.ModuleType) and getattr(m, "__spec__", None) is None
                  and getattr(m, "__file__", None) is None and set(vars(m)) <= plain
                  and not native_child(name))


def _child(conn, task: Callable, item: str, limits: Limits, stubs: Tuple[str, ...] = ()) -> None:
    """The worker: limits, the task, each part sent as it is ready, then its peak memory."""
    try:
        base = rss_bytes(os.getpid()) or 0
        conn.send(("base", base))  # what it holds before the task (shared with the server), counted in its memory
        import types

        for name in stubs:
            sys.modules.setdefault(name, types.ModuleType(name))
        import faulthandler

        faulthandler.disable()  # a crash is this worker's status row, not a dump among the progress lines
        if limits.memory_bytes:
            cap = _vm_size() + max(0, limits.memory_bytes - base - AS_SLACK)
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard == resource.RLIM_INFINITY or cap < hard:
                resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        torch = sys.modules.get("torch")
        if torch is not None and limits.threads:
            torch.set_num_threads(limits.threads)
        out = task(item)
        for part in ([out] if isinstance(out, dict) or out is None else out):
            conn.send(("part", dict(part or {})))
        conn.send(("done", None))
    except BaseException as exc:  # everything becomes a row; nothing propagates out of a worker
        try:
            if is_oom(exc):
                conn.send(("memory", f"an allocation was refused under the worker's limit of {limits.memory_bytes} "
                                     f"bytes ({_first_line(exc)})"))
            else:
                conn.send(("error", _first_line(exc)))
        except Exception:
            pass
    finally:
        try:
            use = resource.getrusage(resource.RUSAGE_SELF)
            conn.send(("cpu", use.ru_utime + use.ru_stime))
            # the kernel's high-water mark is updated lazily: the current size may be a page or two above it
            conn.send(("maxrss", max(use.ru_maxrss * 1024, rss_bytes(os.getpid()) or 0)))
            conn.close()
        except Exception:
            pass


@dataclass
class _Running:
    item: str
    proc: object
    conn: object
    start: float
    row: dict
    finished: bool = False
    failure: Optional[Tuple[str, str]] = None
    max_rss: int = 0  # the worker's peak resident memory, all its pages (shared ones included)
    base: Optional[int] = None  # the child's resident memory when it started (pages shared with the server)
    cpu_s: Optional[float] = None  # CPU seconds the child used (user + system), when it said so


class Progress:
    """done/total, failures and an ETA on stderr, one line per finished model."""

    def __init__(self, total: int, jobs: int, write: Callable[[str], None] = None):
        self.total, self.jobs, self.done, self.failed = total, jobs, 0, 0
        self.start = time.monotonic()
        self.write = write or (lambda s: print(s, file=sys.stderr, flush=True))

    def finished(self, row: dict) -> None:
        self.done += 1
        self.failed += row.get("status") != "ok"
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        status = row.get("status", "?") + (f" ({row['reason'][:80]})" if row.get("reason") else "")
        self.write(f"archcost: [{self.done}/{self.total}] {row.get('model')} {status} "
                   f"{row.get('seconds', 0):.1f}s; {self.failed} failed; ETA {_duration(eta)}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def run(items: Iterable[str], task: Callable, *, jobs: int = 1, limits: Limits = Limits(),
        on_row: Optional[Callable[[dict], None]] = None, progress: Optional[Progress] = None,
        preload: Sequence[str] = ()) -> List[dict]:
    """Run ``task(item)`` for each item in its own worker process, ``jobs`` at a time.

    ``task`` returns a dict (or yields dicts, merged in order); every item gives one row,
    ``{"model": item, "status": ..., "reason": ..., "seconds": ..., "cpu_seconds": ..., "worker_max_rss_bytes": ...,
    **what the task returned}``, handed to ``on_row`` when it finishes. Rows come back in
    the order they finish. ``preload``: modules the worker server imports once (the
    task's libraries; the task's own module too), so a child starts with them; ``task``
    must be picklable (a module-level function or an instance of a module-level class)."""
    module = getattr(task, "__module__", None) or type(task).__module__
    ctx = _context(tuple(preload) + ((module,) if module and module != "__main__" else ()))
    stubs = tuple(stubbed_modules())
    queue = list(items)
    running: Dict[int, _Running] = {}
    rows: List[dict] = []
    jobs = max(1, int(jobs))
    try:
        while queue or running:
            while queue and len(running) < jobs:
                item = queue.pop(0)
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(child, task, item, limits, stubs), daemon=True)
                proc.start()
                child.close()
                running[proc.pid] = _Running(item, proc, parent, time.monotonic(), {})
            _poll(running, limits)
            for pid in [p for p, r in running.items() if r.finished]:
                r = running.pop(pid)
                row = _row(r, limits)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                if progress is not None:
                    progress.finished(row)
    finally:
        for r in running.values():  # interrupted: no orphan keeps running
            _kill(r.proc)
    return rows


_SERVER = {"preload": None}  # what the running worker server imported at its start


def _context(preload: Tuple[str, ...]):
    """multiprocessing's forkserver context, its server started with ``preload`` imported
    (restarted when it runs with another list; no worker of ours runs between two runs)."""
    import multiprocessing as mp
    from multiprocessing import forkserver

    ctx = mp.get_context("forkserver")
    server = getattr(forkserver, "_forkserver", None)
    if _SERVER["preload"] is not None and _SERVER["preload"] != preload and hasattr(server, "_stop"):
        server._stop()
    env = {"ARCHCOST_WORKER_IMPORTS": ",".join(preload), "ARCHCOST_WORKER_STUBS": ",".join(stubbed_modules()),
           "ARCHCOST_WORKER_PATH": os.pathsep.join(p for p in sys.path if p)}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the server reads them when it starts (worker_start.py)
    try:
        ctx.set_forkserver_preload(["archcost.zoo.worker_start"])
        forkserver.ensure_running()
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _SERVER["preload"] = preload
    return ctx


def _poll(running: Dict[int, _Running], limits: Limits) -> None:
    from multiprocessing.connection import wait

    waitables = [r.conn for r in running.values()] + [r.proc.sentinel for r in running.values()]
    wait(waitables, timeout=POLL_S)
    now = time.monotonic()
    for r in running.values():
        _drain(r)
        if r.finished:
            continue
        if not r.proc.is_alive():
            _drain(r)
            r.proc.join()
            if r.failure is None and not r.finished:
                code = r.proc.exitcode
                why = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
                       else f"exited with code {code} without a result")
                r.failure = ("crashed", why)
            r.finished = True
            continue
        rss = rss_bytes(r.proc.pid) if r.base is not None else None  # none before the child says its base
        if rss is not None:
            r.max_rss = max(r.max_rss, rss)
        if limits.memory_bytes and rss is not None and rss > limits.memory_bytes:
            _kill(r.proc)
            r.failure = ("memory", f"resident memory {rss} bytes passed the worker's limit of "
                                   f"{limits.memory_bytes} bytes")
            r.finished = True
        elif limits.timeout_s and now - r.start > limits.timeout_s:
            _kill(r.proc)
            r.failure = ("timeout", f"still running after {limits.timeout_s:g} s (the worker's limit)")
            r.finished = True


def _drain(r: _Running) -> None:
    """Read every message the worker has sent so far."""
    try:
        while r.conn.poll():
            kind, value = r.conn.recv()
            if kind == "base":
                r.base = int(value)
            elif kind == "part":
                r.row.update(value)
            elif kind == "done":
                pass
            elif kind == "cpu":
                r.cpu_s = float(value)
            elif kind == "maxrss":
                r.max_rss = max(r.max_rss, int(value))
                r.finished = True
            else:  # "error" or "memory" raised inside the task
                r.failure = (kind, value)
    except (EOFError, OSError):
        pass


def _kill(proc) -> None:
    if proc.is_alive():
        proc.kill()
    proc.join(timeout=5)


def _row(r: _Running, limits: Limits) -> dict:
    if r.failure is None and limits.memory_bytes and r.max_rss > limits.memory_bytes:
        r.failure = ("memory", f"resident memory peaked at {r.max_rss} bytes (the worker's own account, "
                               f"ru_maxrss), over the worker's limit of {limits.memory_bytes} bytes")
    row = {"model": r.item, **r.row}
    pending = row.pop("pending", None)
    if r.failure is None:
        row.update(status="ok", reason="")
    elif pending:  # an earlier part finished: keep it, the failure belongs to the stage that ran next
        row.setdefault("status", "ok")
        row.setdefault("reason", "")
        row[f"{pending}_status"] = r.failure[0]
        row[f"{pending}_reason"] = r.failure[1]
    else:
        row.update(status=r.failure[0], reason=r.failure[1])
    row["seconds"] = round(time.monotonic() - r.start, 3)
    row["cpu_seconds"] = round(r.cpu_s, 3) if r.cpu_s is not None else None  # None: killed before it said
    row["worker_max_rss_bytes"] = r.max_rss
    return row
