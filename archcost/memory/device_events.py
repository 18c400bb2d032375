"""The ordered allocation and free events of a forward or a training step, as a CUDA
device would see them, recorded on meta tensors.

The memory passes (``peak_pass``'s ``LiveBytes``, the training step's ``StepLive``) already
see every storage an operator creates and, through a finalizer, the moment it is freed.
Here the same passes also write those moments down, in order: ``("alloc", key, nbytes,
tag)`` and ``("free", key)``, ready to replay through the caching-allocator model
(``cuda_allocator.replay``). What exists before (weights, buffers, optimizer state, the input
batch and its labels) is allocated first, in the order ``model.to('cuda')`` allocates it.

Where a CUDA device runs another kernel than meta does, the recording follows the device
(``DeviceKernels``) and says so in ``notes``:

- ``scaled_dot_product_attention``: on meta, the math decomposition (the full attention
  matrix, softmax, dropout); on CUDA, PyTorch picks a fused kernel (``sdp_utils.cpp``,
  simplified here): flash attention on compute capability 8.0 to 9.x for float16/bfloat16,
  no mask and a head size up to 256 divisible by 8; else memory-efficient attention from
  5.0 (bfloat16 from 8.0), head size divisible by 8 (4 for float32), masks allowed; else
  math. Their meta kernels allocate the outputs and log-sum-exp the CUDA kernels return.
- ``dropout`` in training: CUDA's fused ``native_dropout`` keeps a 1-byte mask, where meta
  and CPU multiply by a float noise tensor.

Kernel boundaries also leave markers the device needs: the first cuBLAS call on a thread
(the forward's thread, then autograd's device thread in backward) allocates that handle's
workspace (``tag='cublas'``, kept); each cuDNN convolution may take a workspace for its
duration (``tag='cudnn'``, given by the caller: it depends on the algorithm cuDNN picks).

Not seen: memory a kernel takes and returns inside itself through other means than the
caching allocator, and kernel scratch of the fused attention backward (float32 accumulators).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from archcost.count.inputs import tensors_in
from archcost.count.storage import StorageTracker
from archcost.memory.forward import LiveBytes, existing_storages, running_as
from archcost.memory.training import StepLive, TrainingStep, _state_tensors

_aten = torch.ops.aten
BLAS_OPS = {_aten.mm.default, _aten.addmm.default, _aten.bmm.default, _aten.baddbmm.default,
            _aten.addbmm.default, _aten._addmm_activation.default, _aten.addmv.default, _aten.mv.default}
CONV_OPS = {_aten.convolution.default, _aten.convolution_backward.default}


@dataclass
class Recording:
    """What a replay needs: the events before the measured pass (``setup``), the pass's own
    (``events``, to repeat for a steady state), and the device-kernel notes."""
    setup: List[tuple] = field(default_factory=list)
    events: List[tuple] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    blas_threads: int = 0  # cuBLAS handles the pass uses (each with its own workspace)


class _Recorder(StorageTracker):
    """A StorageTracker that writes each new storage and each free down, in order. Events
    name a storage by a serial number: its address may be reused by a later storage."""

    def __init__(self, on_free, log: list):
        super().__init__(on_free)
        self.log = log
        self.block: Dict[int, int] = {}  # live storage key -> serial number of its device block
        self.serial = 0
        self.silent = set()  # live storages whose block lives on in another storage: no free

    def add(self, t: torch.Tensor) -> bool:
        if not super().add(t):
            return False
        k = self.key(t)
        self.serial += 1
        self.block[k] = self.serial
        self.log.append(("alloc", self.serial, self.live[k], "tensor"))
        return True

    def share(self, new: int, old: int):
        """Storage ``new`` is made in ``old``'s block (an in-place accumulation on the device)."""
        self.block[new] = self.block[old]
        self.silent.add(old)

    def _free(self, k):
        if k in self.live:
            serial = self.block.pop(k)
            if k in self.silent:
                self.silent.discard(k)
            else:
                self.log.append(("free", serial))
        super()._free(k)


class _Markers:
    """Kernel markers: cuBLAS workspaces on first use per thread, cuDNN workspaces per call."""

    def __init__(self, log: list, cudnn_workspace_bytes: int, blas_workspace_bytes: int):
        self.log, self.cudnn, self.blas = log, cudnn_workspace_bytes, blas_workspace_bytes
        self.threads = set()
        self.n = 0

    def after(self, func, thread: str):
        if func in BLAS_OPS and thread not in self.threads:
            self.threads.add(thread)
            if self.blas:
                self.log.append(("alloc", ("cublas", thread), self.blas, "cublas"))
        elif func in CONV_OPS and self.cudnn:
            self.n += 1
            self.log.append(("alloc", ("cudnn", self.n), self.cudnn, "cudnn"))
            self.log.append(("free", ("cudnn", self.n)))


class ForwardRecorder(LiveBytes):
    def __init__(self, exclude, log, markers: _Markers):
        super().__init__(exclude)
        self.tracker = _Recorder(self._freed, log)
        self.markers = markers

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = super().__torch_dispatch__(func, types, args, kwargs)
        self.markers.after(func, "forward")
        return out


class StepRecorder(StepLive):
    def __init__(self, exclude, log, markers: _Markers):
        super().__init__(exclude)
        self.tracker = _Recorder(self._freed, log)
        self.markers = markers

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        accumulate = self._engine_accumulation(func, args, kwargs)
        old = StorageTracker.key(args[0]) if accumulate else None
        n = len(self.tracker.log)
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if accumulate:
            # On the device autograd adds the second gradient into the first in place (see
            # StepLive._engine_accumulation): the sum takes no new block, it is the old one's.
            new = [e for e in self.tracker.log[n:] if e[0] == "alloc"]
            if len(new) == 1 and old in self.tracker.block:
                self.tracker.log.remove(new[0])
                sum_key = next(k for k, s in self.tracker.block.items() if s == new[0][1])
                self.tracker.share(sum_key, old)
        # the optimizer step runs on the main thread: its cuBLAS handle is the forward's
        self.markers.after(func, "backward" if self.phase == "backward" else "forward")
        return out


# -- the device's kernels ------------------------------------------------------------------------
_HALF = (torch.float16, torch.bfloat16)
_SDPA = torch._C._nn.scaled_dot_product_attention  # F.scaled_dot_product_attention itself


def sdpa_backend(cc: Tuple[int, int], dtype: torch.dtype, head_dim: int, has_mask: bool) -> str:
    """flash | efficient | math: PyTorch's choice for F.scaled_dot_product_attention on a
    CUDA device of compute capability ``cc`` (sdp_utils.cpp, simplified: the order
    flash > memory-efficient > math and each kernel's dtype, head-size, mask and
    architecture conditions)."""
    if (8, 0) <= cc < (10, 0) and dtype in _HALF and head_dim <= 256 and head_dim % 8 == 0 and not has_mask:
        return "flash"
    align = 8 if dtype in _HALF else 4
    if cc >= (5, 0) and dtype in (torch.float32, torch.float16, torch.bfloat16) and head_dim % align == 0 \
            and not (dtype == torch.bfloat16 and cc < (8, 0)):
        return "efficient"
    return "math"


class DeviceKernels(TorchFunctionMode):
    """Runs the kernels a CUDA device of compute capability ``cc`` would, on meta tensors."""

    def __init__(self, cc: Tuple[int, int]):
        super().__init__()
        self.cc = cc
        self.notes: Dict[str, str] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _SDPA:
            return self._sdpa(*args, **kwargs)
        if func is F.dropout:
            return self._dropout(*args, **kwargs)
        if func is F.multi_head_attention_forward:
            return self._multi_head(func, args, kwargs)
        return func(*args, **kwargs)

    def _multi_head(self, func, args, kwargs):
        """nn.MultiheadAttention's Python path calls F's module-level scaled_dot_product_attention;
        while it runs (this mode is off inside it), that name routes to the device's kernel.
        (On a GPU an eval, no-grad call may take the fused fast path,
        ``_native_multi_head_attention``, which runs the same attention kernels.)"""
        F.scaled_dot_product_attention = self._sdpa
        try:
            return func(*args, **kwargs)
        finally:
            F.scaled_dot_product_attention = _SDPA

    def _sdpa(self, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        backend = "math" if enable_gqa or q.dim() != 4 else sdpa_backend(self.cc, q.dtype, q.shape[-1],
                                                                         attn_mask is not None)
        if backend == "flash":
            self.notes["sdpa"] = ("scaled_dot_product_attention: the flash-attention kernel a CUDA device of "
                                  f"compute capability {self.cc[0]}.{self.cc[1]} runs (output and log-sum-exp), "
                                  "not meta's math decomposition")
            return _aten._scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, False, scale=scale)[0]
        if backend == "efficient":
            self.notes["sdpa"] = ("scaled_dot_product_attention: the memory-efficient attention kernel a CUDA "
                                  f"device of compute capability {self.cc[0]}.{self.cc[1]} runs, not meta's math "
                                  "decomposition")
            if attn_mask is not None and attn_mask.dtype == torch.bool:
                attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(
                    attn_mask.logical_not(), float("-inf"))
            grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
            return _aten._scaled_dot_product_efficient_attention(q, k, v, attn_mask, grad, dropout_p, is_causal,
                                                                 scale=scale)[0]
        self.notes["sdpa"] = "scaled_dot_product_attention: the math path, as on the device for these inputs"
        return _SDPA(q, k, v, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)

    def _dropout(self, input, p=0.5, training=True, inplace=False):
        if training and 0 < p < 1 and not inplace and input.numel() > 0:
            self.notes["dropout"] = "dropout: CUDA's fused native_dropout (a 1-byte mask), not meta's float noise"
            return _aten.native_dropout(input, p, True)[0]
        return F.dropout(input, p, training, inplace)


# -- what exists before the pass -----------------------------------------------------------------
def to_device_order(model: nn.Module) -> List[torch.Tensor]:
    """Parameters and buffers in the order ``model.to('cuda')`` allocates them: Module._apply
    visits the children first, then the module's own parameters, then its buffers."""
    out, seen = [], set()

    def visit(m: nn.Module):
        for child in m.children():
            visit(child)
        for t in list(m._parameters.values()) + list(m._buffers.values()):
            if t is not None and StorageTracker.key(t) not in seen:
                seen.add(StorageTracker.key(t))
                out.append(t)

    visit(model)
    return out


def _allocs(tensors, tag="tensor") -> List[tuple]:
    return [("alloc", ("setup", i), t.untyped_storage().nbytes(), tag) for i, t in enumerate(tensors)]


def _labels(inputs) -> int:
    """Cross-entropy's class labels (int64, one per sample), made beside the batch."""
    return 8 * inputs[0].shape[0] if inputs and inputs[0].dim() else 0


# -- recording -----------------------------------------------------------------------------------
def forward_recording(model: nn.Module, inputs: Tuple[torch.Tensor, ...], cc: Tuple[int, int],
                      blas_workspace_bytes: int = 0, cudnn_workspace_bytes: int = 0) -> Recording:
    """The events of an eval, no-grad forward on a device of compute capability ``cc``."""
    rec = Recording()
    rec.setup = _allocs(to_device_order(model) + tensors_in(list(inputs)))  # an encoder-decoder's inputs hold None
    markers = _Markers(rec.events, cudnn_workspace_bytes, blas_workspace_bytes)
    mode = ForwardRecorder(existing_storages(model, inputs), rec.events, markers)
    kernels = DeviceKernels(cc)
    with running_as(model, train=False), torch.no_grad(), kernels, mode:
        out = model(*inputs)
    del out
    rec.notes = sorted(kernels.notes.values())
    rec.blas_threads = len(markers.threads)
    return rec


def step_recording(model: nn.Module, inputs: Tuple[torch.Tensor, ...], cc: Tuple[int, int], optimizer: str = "sgd",
                   blas_workspace_bytes: int = 0, cudnn_workspace_bytes: int = 0,
                   checkpoint: Sequence[str] = ()) -> Recording:
    """The events of one steady-state training step (``training.TrainingStep``) on a device of
    compute capability ``cc``: weights, buffers, optimizer state, batch and labels first."""
    grads = {id(p): p.grad for p in model.parameters()}
    try:
        step = TrainingStep(model, optimizer, checkpoint=checkpoint)
        state = _state_tensors(step.opt, step.device)
        rec = Recording()
        rec.setup = _allocs(to_device_order(model) + state + tensors_in(list(inputs)))
        if _labels(inputs):
            rec.setup.append(("alloc", ("setup", "labels"), _labels(inputs), "tensor"))
        buffers = list(model.buffers())
        markers = _Markers(rec.events, cudnn_workspace_bytes, blas_workspace_bytes)
        mode = StepRecorder((StorageTracker.key(t) for t in [*step.params, *buffers, *state, *tensors_in(list(inputs))]),
                            rec.events, markers)
        kernels = DeviceKernels(cc)
        with kernels:
            got = step.run(inputs, lambda phase: mode.enter(phase) if phase in ("forward", "backward", "step")
                           else None, within=mode)
        del got  # the gradients: freed by the next step's zero_grad(set_to_none=True)
        rec.notes = sorted(kernels.notes.values())
        rec.blas_threads = len(markers.threads)
        return rec
    finally:
        for p in model.parameters():
            p.grad = grads.get(id(p))


def repeat_steady(rec: Recording, times: int) -> List[tuple]:
    """setup + the pass ``times`` times, each pass's keys made distinct (the cuBLAS workspaces
    are allocated once: a handle keeps its workspace)."""
    out = list(rec.setup)
    for i in range(times):
        for e in rec.events:
            k = e[1]
            if isinstance(k, tuple) and k[0] == "cublas":
                if i == 0:
                    out.append(e)
                continue
            out.append((e[0], (i, k)) + tuple(e[2:]))
    return out
