"""A zoo in one run: every model in its own worker (``zoo/workers.py``), one CSV row each,
streamed to the file as it finishes, resumable, shardable.

A row is the model's ``archcost table`` row (params, MACs, attention MACs, activations,
saved and peak bytes) with its status, and, where fvcore runs, fvcore's count and the
difference named by operator (``checks/fvcore_diff.py``).

A zoo row is made for speed (a whole registry in minutes), all of it on meta tensors when
the model allows: built without weights or initialisation, counted, and its memory passes
run with ``memory_on="meta"``: ``peak_bytes`` leaves out kernel scratch (what kernels
allocate and free inside themselves, which ``archcost table`` measures on this CPU), and
attention and recurrent layers hold what meta's math decomposition holds, not CPU's fused
kernels (the row's ``notes`` say so). ``memory_measured_on`` says where they ran.

fvcore's trace (``torch.jit.trace``) cannot run on meta tensors (it makes sizes traced
values, which PyTorch's Python meta kernels cannot compare), so fvcore runs on real CPU
tensors: the model built on meta and given zeroed CPU storage, no initialisation
(``fvcore_reason`` says so; fvcore's rules read shapes only), or, where archcost counted
on real tensors because the forward reads values, the builder's own initialisation, seed
0, as archcost did. It is skipped, saying so, when the weights and the inference peak would
take more than half the worker's memory limit. fvcore runs as a second
stage, so a model whose trace times out or crashes keeps its counts.

Resuming: the CSV is read first; a model with a row under the same ``conditions`` (the
report's condition tag, the input and token length) and ``versions`` (torch and the
model's library) is done and skipped; ``retry_failed`` runs again those whose status is
not ``ok`` (their old rows are dropped first). Rows are whole lines written and flushed
one at a time, so an interrupted run leaves a valid CSV of the models it finished.
"""

from __future__ import annotations

import csv
import os
import pathlib
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from archcost.errors import AnalysisError

ZOO_COLUMNS = ["model", "library", "family", "status", "reason", "input_shape", "params", "macs",
               "attention_macs", "activations", "activation_bytes", "param_bytes", "saved_bytes", "peak_bytes",
               "memory_measured_on", "fvcore_macs", "fvcore_difference", "fvcore_difference_by_operator",
               "fvcore_status", "fvcore_reason", "seconds", "cpu_seconds", "fvcore_seconds", "worker_max_rss_bytes",
               "uncounted_ops", "notes", "conditions", "versions"]
SPREAD = 8  # the run order's stride (see run_zoo)
FVCORE_MEMORY_SHARE = 0.5  # fvcore runs when weights + inference peak < this share of the worker's limit


@dataclass(frozen=True)
class ZooOptions:
    input_size: object = None  # the rule's input size, or a SeqLen (--seq-len)
    batch_size: int = 1
    dtype: str = "float32"
    memory: bool = True
    fvcore: bool = True
    memory_limit_bytes: int = 3 * 2 ** 30
    conditions: str = ""  # the report's condition tag, written in each row


def library_of(ref: str) -> str:
    from archcost.zoo.sources import is_source, split

    if is_source(ref):
        return split(ref)[0]
    return "file" if ":" in str(ref) else "archcost"


def versions(ref: str) -> str:
    """'torch 2.13.0+cpu, timm 1.0.31': the versions a row's counts depend on."""
    import torch

    from archcost.zoo.sources import PACKAGES, _dist_version

    lib = library_of(ref)
    text = f"torch {torch.__version__}"
    if lib in PACKAGES:
        text += f", {PACKAGES[lib]} {_dist_version(PACKAGES[lib])}"
    return text


def zoo_task(ref: str, options: ZooOptions):
    """The worker's task for one model: its counts, then (a second stage) fvcore's."""
    from archcost.analysis.analyze import analyze

    start = time.monotonic()
    a = analyze(ref, input_size=options.input_size, batch_size=options.batch_size, dtype=options.dtype,
                memory=options.memory, memory_on="meta")
    s = a.row
    row = {k: s.get(k) for k in ZOO_COLUMNS if k in s}
    notes = [n for n in (s.get("notes"), s.get("memory_note") if options.memory else "") if _text(n)]
    row.update(model=ref, library=library_of(ref), family=_family(ref, s), notes="; ".join(notes),
               attention_macs=sum(int(m) for op, m in a.macs_by_aten.items() if "attention" in op),
               conditions=options.conditions, versions=versions(ref))
    row["seconds_counts"] = time.monotonic() - start
    if not options.fvcore:
        yield row
        return
    need = int(s.get("param_bytes") or 0) + int(_number(s.get("peak_bytes")) or s.get("activation_bytes") or 0)
    yield {**row, "pending": "fvcore"}
    yield {"pending": None, **fvcore_columns(ref, a.macs_by_aten, s["macs"], options, need,
                                             values=s.get("engine") != "meta")}


def _text(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _number(v):
    return v if isinstance(v, (int, float)) and v == v else None


def _family(ref, summary) -> str:
    from archcost.zoo.sources import family, is_source

    return family(ref) if is_source(ref) else summary.get("family", "")


def fvcore_columns(ref, ours_by_aten, ours_macs, options: ZooOptions, real_bytes: int = 0,
                   values: bool = False) -> dict:
    """fvcore's count, traced on real CPU tensors (fvcore's trace cannot run on meta:
    ``checks/fvcore_diff.py``), skipped when ``real_bytes`` (weights + inference peak) would
    take over ``FVCORE_MEMORY_SHARE`` of the worker's limit. The weights are not initialised
    (built on meta, storage allocated, zeroed: fvcore's rules read shapes only), unless
    ``values`` (archcost counted on real tensors because the forward reads values): then
    the builder's own initialisation, seed 0, as archcost's count."""
    from archcost.checks.fvcore_diff import describe, difference_by_operator, fvcore_count

    start = time.monotonic()
    if real_bytes > FVCORE_MEMORY_SHARE * options.memory_limit_bytes:
        return {"fvcore_status": "skipped", "fvcore_seconds": 0.0, "fvcore_reason": (
            f"weights + inference peak take {real_bytes} bytes on real tensors, over {FVCORE_MEMORY_SHARE:g} of "
            f"the worker's limit ({options.memory_limit_bytes} bytes)")}
    try:
        total, by_op, missed = fvcore_count(*model_and_inputs(ref, options, initialised=values))
    except Exception as exc:
        from archcost.zoo.workers import is_oom

        first = (str(exc).strip().splitlines() or [""])[0][:200]
        # an allocation refused under the worker's limit (its address-space cap) is the limit's doing: memory
        return {"fvcore_status": "memory" if is_oom(exc) else "error", "fvcore_reason": f"{type(exc).__name__}: {first}",
                "fvcore_seconds": round(time.monotonic() - start, 3)}
    return {"fvcore_macs": total, "fvcore_difference": int(ours_macs) - total,
            "fvcore_difference_by_operator": describe(difference_by_operator(ours_by_aten, by_op), missed),
            "fvcore_status": "ok", "fvcore_reason": "" if values else "weights not initialised (zeros)",
            "fvcore_seconds": round(time.monotonic() - start, 3)}


def model_and_inputs(ref, options: ZooOptions, initialised: bool = True):
    """The model on CPU in eval mode and its example inputs (token ids for a text model), as
    the input-size rule gives them. ``initialised``: the builder's own initialisation, seed
    0; else built on meta (no initialisation) and given zeroed CPU storage (buffers: 1.0,
    integer ones 0, as ``runner_model`` does)."""
    import torch

    from archcost.conditions import DTYPES
    from archcost.count.build import build, runner_model
    from archcost.count.inputs import input_shapes, make_inputs
    from archcost.zoo.sources import resolve_model

    dtype = DTYPES[options.dtype]
    name, spec, builder, _ = resolve_model(ref, {})
    if initialised:
        model = build(builder, "cpu", dtype)
    else:
        model = runner_model(builder, None, None, "cpu", dtype, False)
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    shapes = input_shapes(options.input_size, spec.input_size if spec else None, options.batch_size, name=name,
                          model=model)
    return model, make_inputs(shapes, "cpu", dtype)


# --- the streamed CSV ------------------------------------------------------------------------


class RowLog:
    """A CSV that grows a row at a time and knows which models it already holds."""

    def __init__(self, path, columns: Sequence[str] = ZOO_COLUMNS):
        self.path = pathlib.Path(path)
        self.columns = list(columns)
        self.rows: List[dict] = []
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames and reader.fieldnames != self.columns:
                    raise AnalysisError(f"{str(self.path)!r} has other columns than this version's zoo run writes "
                                        "(another archcost's, or another command's file): name another file (--name) "
                                        "or remove it to start afresh")
                self.rows = [r for r in reader if r.get("model")]

    def done(self, model: str, conditions: str, versions: str) -> bool:
        return any(r["model"] == model and r.get("conditions", "") == conditions and r.get("versions", "") == versions
                   for r in self.rows)

    def drop_failed(self) -> int:
        """Remove the rows whose status is not ok (rewritten atomically); how many."""
        keep = [r for r in self.rows if r.get("status") == "ok"]
        dropped = len(self.rows) - len(keep)
        if dropped:
            tmp = self.path.with_name(f".tmp-{os.getpid()}-{self.path.name}")
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, self.columns, extrasaction="ignore")
                w.writeheader()
                w.writerows(keep)
            os.replace(tmp, self.path)
            self.rows = keep
        return dropped

    def append(self, row: dict) -> None:
        new = not self.path.exists() or not self.path.stat().st_size
        clean = {k: ("" if v is None or (isinstance(v, float) and v != v) else v) for k, v in row.items()}
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(clean)
            f.flush()
        self.rows.append({k: str(clean.get(k, "")) for k in self.columns})


@dataclass
class ZooRun:
    """What a run did: rows it added, models it skipped as done, the time it took."""

    added: List[dict] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0


def run_zoo(refs: Sequence[str], path, options: ZooOptions, *, jobs: int = 1, timeout_s: float = 600.0,
            retry_failed: bool = False, write: Optional[Callable[[str], None]] = None) -> ZooRun:
    """Every model of ``refs`` not already in the CSV at ``path``, ``jobs`` workers at a time."""
    from archcost.zoo import workers

    log = RowLog(path)
    if retry_failed:
        log.drop_failed()
    todo = [r for r in refs if not log.done(r, options.conditions, versions(r))]
    # Run in a spread order (every SPREAD-th model, then the next offset...): a run stopped
    # early has sampled the whole list, every family, not its first letters. Rows are the same.
    todo = [r for i in range(1, SPREAD + 1) for r in workers.shard(todo, i, SPREAD)]
    out = ZooRun(skipped=len(refs) - len(todo))
    if write and out.skipped:
        write(f"archcost: {out.skipped} of {len(refs)} models already in {path} under these conditions: skipped")
    cores = os.cpu_count() or 1
    limits = workers.Limits(timeout_s=timeout_s, memory_bytes=options.memory_limit_bytes,
                            threads=max(1, cores // max(1, jobs)))
    progress = workers.Progress(len(todo), jobs, write) if todo else None
    start = time.monotonic()

    def finished(row):
        row.pop("seconds_counts", None)
        row.setdefault("conditions", options.conditions)
        row.setdefault("versions", versions(row["model"]))
        row.setdefault("library", library_of(row["model"]))
        if not row.get("family"):
            try:
                row["family"] = _family(row["model"], {})
            except Exception:
                row["family"] = ""
        log.append(row)
        out.added.append(row)

    workers.run(todo, _Task(options), jobs=jobs, limits=limits, on_row=finished, progress=progress,
                preload=_preload(refs, options))
    out.seconds = time.monotonic() - start
    return out


def _preload(refs, options: ZooOptions) -> list:
    """What the worker server imports once, so that no worker imports it again: each
    model's library, the analysis and its passes, fvcore, and torch's Python meta kernels
    and decompositions (their first use imports sympy: about a second per process)."""
    from archcost.zoo.sources import PACKAGES

    mods = ["torch", "torch._meta_registrations", "torch._decomp", "torch._refs", "sympy",
            "archcost.analysis.analyze", "archcost.memory.forward", "archcost.memory.training",
            "archcost.compare.zoo_run", "archcost.zoo.sources"]
    mods += [PACKAGES[lib] for lib in sorted({library_of(r) for r in refs} & set(PACKAGES))]
    if options.fvcore:
        mods += ["fvcore.nn", "archcost.checks.fvcore_diff"]
    return mods


class _Task:
    """``zoo_task`` with the run's options (a callable the worker calls; pickled to it)."""

    def __init__(self, options: ZooOptions):
        self.options = options

    def __call__(self, ref):
        return zoo_task(ref, self.options)
