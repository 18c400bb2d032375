"""The memory of one whole training step, measured: forward, backward, optimizer step.

``step_memory(model, inputs, optimizer)`` runs the step a training loop runs after
``optimizer.zero_grad(set_to_none=True)`` (PyTorch's default): a train-mode forward, a loss
(cross-entropy against class 0 for a 2-d output, the sum otherwise), ``loss.backward()`` and
a real ``torch.optim`` step (``sgd``: SGD; ``momentum``: SGD with momentum 0.9; ``adam``;
``adamw``), in its ``foreach`` implementation, PyTorch's default on a GPU, whose step
allocates one temporary per parameter list at a time (Adam's ``sqrt(v)``).

Before the measured step, one step with zero gradients creates the optimizer's state, as
in every step but the first of a real run; then the gradients are set to None.

A TorchDispatchMode sees every storage an operator returns, forward and backward alike
(the autograd engine runs the backward's operators under the same mode), and a finalizer
on each storage sees it freed (the ``peak`` pass of ``memory.py``, run through a step).
``train_peak_bytes`` = weights + buffers + optimizer state + the highest live total of the
storages the step creates (activations, what autograd saves, gradients, temporaries),
input batch and targets excluded. The live storages at that moment are split by where
they were made, so the breakdown sums to the peak exactly. On meta tensors (float32,
float16, bfloat16 casts) the allocations are those of CPU tensors (tests compare with the
CPU allocator); ``amp`` needs autocast, which meta tensors do not support, so its step
runs on real CPU tensors.
"""

from __future__ import annotations

import contextlib
import fnmatch
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import _disable_current_modes

from archcost.count.engine import _tensors
from archcost.errors import AnalysisError
from archcost.memory.forward import (TRAIN_FORWARD_ERRORS, MetaShortcuts, allocating_call, no_train_note,
                                     running_as)
from archcost.count.storage import StorageTracker

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
PHASES = ("forward", "backward", "step")


def make_optimizer(name: str, params: List[nn.Parameter]) -> torch.optim.Optimizer:
    """The torch.optim optimizer a name stands for (hyper-parameters do not change memory)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01, foreach=True)
    if name == "momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, foreach=True)
    raise AnalysisError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")


def unique_params(model: nn.Module) -> List[nn.Parameter]:
    return list({id(p): p for p in model.parameters()}.values())


def freeze(model: nn.Module, patterns: Sequence[str]) -> List[Tuple[nn.Parameter, bool]]:
    """Set ``requires_grad=False`` on the parameters whose name matches one of the fnmatch
    ``patterns`` (``'features.*'``). Returns (parameter, previous flag) pairs to restore.
    A pattern that matches no parameter is an error that shows what names look like."""
    named = list(model.named_parameters())
    changed = []
    for pat in patterns:
        hits = [p for n, p in named if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            examples = ", ".join(n for n, _ in named[:3]) or "(the model has no parameters)"
            raise AnalysisError(f"--freeze {pat!r} matches no parameter name; names look like {examples} "
                                "(fnmatch patterns, e.g. 'features.*')")
        for p in hits:
            changed.append((p, p.requires_grad))
            p.requires_grad_(False)
    return changed


@contextlib.contextmanager
def frozen(model: nn.Module, patterns: Sequence[str]):
    """``freeze`` for the duration of a block; the user's flags are restored afterwards."""
    changed = freeze(model, patterns) if patterns else []
    try:
        yield model
    finally:
        for p, flag in reversed(changed):
            p.requires_grad_(flag)


def loss_of(out, targets: Dict[Tuple, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy against class 0 for each 2-d floating output (N x classes), the sum of
    any other floating output; auxiliary outputs add to the loss, as in training."""
    losses = []
    for t in _tensors(out):
        if not t.is_floating_point() or not t.requires_grad:
            continue
        if t.dim() == 2:
            key = (t.shape[0], t.device)
            if key not in targets:  # input, like the batch: made outside any counting mode
                with _disable_current_modes():
                    targets[key] = torch.zeros(t.shape[0], dtype=torch.long, device=t.device)
            losses.append(F.cross_entropy(t, targets[key]))
        else:
            losses.append(t.sum())
    if not losses:
        raise AnalysisError("the model's output needs no gradient: every parameter is frozen "
                            "(or no output is a floating-point tensor), so there is nothing to train")
    return losses[0] if len(losses) == 1 else sum(losses[1:], losses[0])


class StepLive(MetaShortcuts):
    """Live bytes of the storages created under it, with the phase each was created in;
    at each new peak, which storages were alive (so the peak can be broken down)."""

    def __init__(self, exclude: Iterable[int] = (), scratch=None):
        super().__init__()
        self.exclude = set(exclude)
        self.scratch = scratch  # a scratch provider (memory/scratch.py), or None: kernels' scratch left out
        self.scratch_at_peak = 0
        self.tracker = StorageTracker(on_free=self._freed)
        self.phase = "forward"
        self.made: Dict[int, Tuple[str, int]] = {}  # storage key -> (phase, sequence number)
        self.seq = 0
        self.current = 0
        self.peak = 0
        self.peak_phase = "forward"
        self.at_peak: Dict[Tuple[str, int], int] = {}  # (phase, sequence) -> bytes, alive at the peak
        self.phase_peak = {p: 0 for p in PHASES}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out, outs, scratch = allocating_call(self, func, args, kwargs)
        grew = False
        for t in outs:
            k = StorageTracker.key(t)
            if k not in self.exclude and self.tracker.add(t):
                self.seq += 1
                self.made[k] = (self.phase, self.seq)
                self.current += self.tracker.live[k]
                grew = True
        if grew and self._engine_accumulation(func, args, kwargs):
            return out  # the engine would add in place: no new peak (see _engine_accumulation)
        if grew or scratch:
            # inside the call its scratch was alive on top of everything it returned
            high = self.current + scratch
            self.phase_peak[self.phase] = max(self.phase_peak[self.phase], high)
            if high > self.peak:
                self.peak = high
                self.peak_phase = self.phase
                self.at_peak = {self.made[k]: n for k, n in self.tracker.live.items()}
                self.scratch_at_peak = scratch
        return out

    def _freed(self, nbytes):
        self.current -= nbytes

    def _engine_accumulation(self, func, args, kwargs) -> bool:
        """Where two gradients of one tensor meet (a residual block's input), autograd's
        InputBuffer::accumulate adds the second into the first in place when it holds the
        only reference; but never while any TorchDispatchMode is active (ATen's
        isTensorSubclassLike is then true for every tensor), so under this mode it runs
        ``old + new`` and ``old`` is freed right after. Counting that sum's moment as a
        peak would overstate a real step by one gradient (the CPU allocator, without the
        mode, shows it): a backward ``add`` of two same-shaped, contiguous gradients made
        in backward does not raise the peak; the next operator's does, old one freed."""
        if self.phase != "backward" or func is not torch.ops.aten.add.Tensor or kwargs:
            return False
        if len(args) != 2 or not all(isinstance(a, torch.Tensor) for a in args):
            return False
        old, new = args
        if old.shape != new.shape or old.dtype != new.dtype or not old.is_contiguous():
            return False
        made = self.made.get(StorageTracker.key(old))
        return made is not None and made[0] == "backward" and StorageTracker.key(old) in self.tracker.live

    def enter(self, phase: str):
        self.phase = phase
        self.phase_peak[phase] = max(self.phase_peak[phase], self.current)

    def identity(self, t: torch.Tensor) -> Tuple[str, int]:
        """(phase, sequence number) of a live tensor's storage, as ``at_peak`` keys it."""
        return self.made.get(StorageTracker.key(t), ("", -1))


@dataclass
class StepMemory:
    """Bytes of one training step. ``train_peak_bytes`` = weight_bytes + buffer_bytes +
    optimizer_state_bytes + the four ``*_at_peak`` parts + ``scratch_at_peak``."""

    train_peak_bytes: int
    peak_phase: str  # forward | backward | step
    weight_bytes: int  # parameters (each once)
    buffer_bytes: int  # BatchNorm statistics and other buffers
    optimizer_state_bytes: int  # momentum / Adam moments on the parameters' device
    gradient_bytes: int  # the parameters' .grad after backward
    forward_bytes: int  # alive when the forward (and loss) returned: saved for backward + output
    activations_at_peak: int  # made by the forward, alive at the peak
    gradients_at_peak: int  # parameter gradients alive at the peak
    backward_at_peak: int  # other storages made by backward (activation gradients), alive at the peak
    step_at_peak: int  # the optimizer step's temporaries alive at the peak
    trainable_params: int
    phase_peak_bytes: Dict[str, int] = field(default_factory=dict)  # per phase, same baseline
    scratch_at_peak: int = 0  # what the kernel running at the peak allocated for itself (memory/scratch.py)
    scratch_note: str = ""  # how the scratch was measured, when not in situ at this batch
    backward_macs: Optional[int] = None  # the backward's MACs, when the mode counted them (plan_profile)


def _state_tensors(opt: torch.optim.Optimizer, device: torch.device) -> List[torch.Tensor]:
    return [v for st in opt.state.values() for v in st.values()
            if isinstance(v, torch.Tensor) and v.device == device]


def _nbytes_unique(tensors: Iterable[torch.Tensor]) -> int:
    seen = {}
    for t in tensors:
        seen.setdefault(StorageTracker.key(t), t.untyped_storage().nbytes())
    return sum(seen.values())


class TrainingStep:
    """A model and its optimizer, ready to have one step measured at any input."""

    def __init__(self, model: nn.Module, optimizer: str = "sgd",
                 autocast: Optional[Callable[[], contextlib.AbstractContextManager]] = None,
                 checkpoint: Sequence[str] = ()):
        from archcost.memory.checkpointing import segments

        self.model = model
        self.checkpoint = tuple(checkpoint)
        segments(model, self.checkpoint)  # a pattern that matches nothing: the user's error, now
        self.params = unique_params(model)
        self.trainable = [p for p in self.params if p.requires_grad]
        if not self.trainable:
            raise AnalysisError("every parameter is frozen: nothing to train (drop a --freeze pattern)")
        self.optimizer_name = optimizer
        self.opt = make_optimizer(optimizer, self.trainable)
        self.autocast = autocast or contextlib.nullcontext
        self.device = self.trainable[0].device
        # One step with zero gradients creates the state (exp_avg, momentum buffers ...).
        with MetaShortcuts():
            for p in self.trainable:
                p.grad = torch.zeros_like(p)
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def run(self, inputs: Tuple[torch.Tensor, ...], on_phase: Callable[[str], None] = lambda phase: None,
            within=None):
        """One step: zero_grad(set_to_none), forward and loss (under autocast with amp),
        backward, optimizer step. ``on_phase(name)`` is called as each phase begins;
        ``within``: a context (a measuring mode, the profiler) entered once the model is in
        train mode, so that the copy of its buffers (restored afterwards) is not measured.
        Returns the parameters' gradients as backward left them."""
        model, opt = self.model, self.opt
        targets: Dict[Tuple, torch.Tensor] = {}
        opt.zero_grad(set_to_none=True)
        from archcost.memory.checkpointing import checkpointed

        try:
            with running_as(model, train=True), torch.enable_grad(), checkpointed(model, self.checkpoint), \
                    within or contextlib.nullcontext():
                on_phase("forward")
                with self.autocast():
                    out = model(*inputs)
                    loss = loss_of(out, targets)
                # As in a training loop, the output and the loss stay referenced through
                # backward and step (until the next iteration replaces them).
                on_phase("backward")
                loss.backward()
                grads = [p.grad for p in self.trainable if p.grad is not None]
                on_phase("step")
                opt.step()
                on_phase("end")
                del out, loss
            return grads
        finally:
            opt.zero_grad(set_to_none=True)

    def measure(self, inputs: Tuple[torch.Tensor, ...], scratch: bool = True, live=None) -> StepMemory:
        """The step's memory at ``inputs``; ``scratch``: with what kernels allocate and free
        inside themselves, measured on this CPU (``memory/scratch.py``; not on a GPU);
        ``live``: the measuring mode's class (``StepLive`` or a subclass)."""
        from archcost.memory import scratch as ks

        if not scratch or not ks.measurable(self.model, inputs):
            return self._measure(inputs, None, live)
        twin = []

        def run_real(batch, mode):
            if not twin:
                real = ks.cpu_twin(self.model)
                twin.append(self if real is self.model else
                            TrainingStep(real, self.optimizer_name, self.autocast, self.checkpoint))
            twin[0].run(ks.inputs_at(inputs, batch, "cpu"), within=mode)

        batch = ks.batch_of(inputs)
        source = ks.source_for(self, inputs, lambda: ks.ScratchSource(
            lambda b, provider: self._measure(ks.inputs_at(inputs, b, inputs[0].device), provider, live),
            lambda b, mode: run_real(b, mode), need=lambda r: r.train_peak_bytes))
        source.run_real = run_real  # this call's inputs and CPU twin, dropped when it returns
        try:
            result = source.at(batch)[0]
        finally:
            twin.clear()
        result.scratch_note = "; ".join(dict.fromkeys(source.all_notes()))
        return result

    def _measure(self, inputs: Tuple[torch.Tensor, ...], scratch, live=None) -> StepMemory:
        buffers = list({id(b): b for b in self.model.buffers()}.values())
        state = _state_tensors(self.opt, self.device)
        exclude = (StorageTracker.key(t) for t in [*self.params, *buffers, *state, *_tensors(list(inputs))])
        mode = (live or StepLive)(exclude, scratch)
        seen = {}

        def on_phase(phase):
            if phase == "backward":
                seen["forward_bytes"] = mode.current
            if phase in PHASES:
                mode.enter(phase)

        grads = self.run(inputs, on_phase, within=mode)
        return self.result(mode, grads, seen["forward_bytes"])

    def result(self, mode: StepLive, grads: List[torch.Tensor], forward_bytes: int) -> StepMemory:
        """The ``StepMemory`` of a step that ``mode`` measured (``grads``: what it returned;
        ``forward_bytes``: ``mode.current`` as the backward began)."""
        buffers = list({id(b): b for b in self.model.buffers()}.values())
        state = _state_tensors(self.opt, self.device)
        grad_ids = {mode.identity(g) for g in grads}
        gradient_bytes = _nbytes_unique(grads)
        parts = {"forward": 0, "grad": 0, "backward": 0, "step": 0}
        for ident, n in mode.at_peak.items():
            parts["grad" if ident in grad_ids else ident[0]] += n
        weight_bytes = _nbytes_unique(self.params)
        buffer_bytes = _nbytes_unique(buffers)
        state_bytes = _nbytes_unique(state)
        base = weight_bytes + buffer_bytes + state_bytes
        return StepMemory(
            train_peak_bytes=base + mode.peak, peak_phase=mode.peak_phase,
            weight_bytes=weight_bytes, buffer_bytes=buffer_bytes, optimizer_state_bytes=state_bytes,
            gradient_bytes=gradient_bytes, forward_bytes=forward_bytes,
            activations_at_peak=parts["forward"], gradients_at_peak=parts["grad"],
            backward_at_peak=parts["backward"], step_at_peak=parts["step"],
            trainable_params=sum(p.numel() for p in self.trainable),
            phase_peak_bytes={p: base + v for p, v in mode.phase_peak.items()},
            scratch_at_peak=mode.scratch_at_peak, backward_macs=getattr(mode, "backward_macs", None))


def step_memory(model: nn.Module, inputs: Tuple[torch.Tensor, ...], optimizer: str = "sgd",
                autocast=None, checkpoint: Sequence[str] = (), scratch: bool = True) -> StepMemory:
    """Measure one training step of ``model`` on ``inputs``; the model's parameters, their
    ``grad`` and its train/eval mode and buffers are left as they were."""
    grads = {id(p): p.grad for p in model.parameters()}
    try:
        return TrainingStep(model, optimizer, autocast, checkpoint).measure(inputs, scratch)
    finally:
        for p in model.parameters():
            p.grad = grads.get(id(p))


def frozen_builder(builder, patterns: Sequence[str]):
    """A builder whose models come with ``patterns`` frozen."""
    def build():
        model = builder()
        freeze(model, patterns)
        return model

    return build


TRAIN_COLUMNS = ["train_peak_bytes", "train_peak_phase", "gradient_bytes", "optimizer_state_bytes",
                 "step_forward_bytes", "activations_at_peak", "gradients_at_peak", "backward_at_peak",
                 "step_at_peak", "scratch_at_peak"]


def add_training(analysis, model: nn.Module, inputs, optimizer: str, autocast=None, checkpoint=()):
    """The training-step columns of ``analysis.summary`` (see ``StepMemory``)."""
    import pandas as pd

    s = analysis.summary
    s["optimizer"] = optimizer
    try:
        r = step_memory(model, inputs, optimizer, autocast, checkpoint)
    except TRAIN_FORWARD_ERRORS as exc:
        if isinstance(exc, AnalysisError):
            raise
        for c in TRAIN_COLUMNS:
            s[c] = pd.NA
        s["train_note"] = no_train_note("training step", exc)
        return
    s["train_peak_bytes"] = r.train_peak_bytes
    s["train_peak_phase"] = r.peak_phase
    s["gradient_bytes"] = r.gradient_bytes
    s["optimizer_state_bytes"] = r.optimizer_state_bytes
    s["step_forward_bytes"] = r.forward_bytes
    s["activations_at_peak"] = r.activations_at_peak
    s["gradients_at_peak"] = r.gradients_at_peak
    s["backward_at_peak"] = r.backward_at_peak
    s["step_at_peak"] = r.step_at_peak
    s["scratch_at_peak"] = r.scratch_at_peak
    s["train_note"] = r.scratch_note
    if checkpoint:
        from archcost.memory.checkpointing import segments

        s["checkpoint_segments"] = len(segments(model, checkpoint))

