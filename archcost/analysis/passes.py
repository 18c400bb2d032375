"""The memory and latency passes that ``analyze()`` adds to an ``Analysis`` when asked."""

from __future__ import annotations

import os
import pandas as pd
import torch
import torch.nn as nn

from archcost.memory.training import TrainingStep
from archcost.count.build import device_of

def add_memory(analysis, model, inputs, optimizer, device, scratch=True):
    from archcost.memory import forward as mem
    from archcost.memory.scratch import notes_for

    s = analysis.summary
    modules = {}
    s["memory_note"] = ""  # columns in this order: note, saved, peak, optimizer, train, where
    s["saved_bytes"] = pd.NA
    peak, at_peak = mem.peak_detail(model, inputs, modules, scratch)
    s["peak_bytes"] = peak
    # kernel scratch in it, measured on this CPU (memory/scratch.py); empty when not measured
    s["peak_scratch_bytes"] = at_peak if scratch else pd.NA
    s["memory_note"] = notes_for(model) if scratch else (
        "peak_bytes without kernel scratch (what kernels allocate and free inside themselves: not measured)")
    s["optimizer"] = optimizer
    s["train_bytes"] = pd.NA
    s["memory_measured_on"] = used = device_of(model)
    try:
        saved = mem.saved_pass(model, inputs, modules)
    except mem.TRAIN_FORWARD_ERRORS as exc:
        # e.g. BatchNorm refusing a train-mode forward on 1 value per channel (batch 1,
        # a 1x1 map): the model cannot train on this input, so nothing is saved to measure.
        saved = None
        s["saved_bytes"] = s["train_bytes"] = pd.NA
        for rec in modules.values():  # unknown per layer too, not 0
            rec.saved_bytes = rec.self_saved_bytes = pd.NA
        s["memory_note"] = mem.no_train_note("train-mode forward", exc)
    if saved is not None:
        trainable = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values()
                        if p.requires_grad)
        s["saved_bytes"] = saved
        s["train_bytes"] = mem.train_bytes(int(s["param_bytes"].iloc[0]), int(s["buffer_bytes"].iloc[0]),
                                           trainable, saved, optimizer)
        if used == "cuda":
            from archcost.measure.allocator import cuda_allocator

            ev = cuda_allocator(model, inputs)
            tr = cuda_allocator(model, inputs, train=True)
            s["peak_bytes_allocator"] = ev["allocator_peak"]
            s["saved_bytes_allocator"] = tr["live_after"] - ev["live_after"]
    ly = analysis.layers
    keys = ["" if n == "(model)" else n for n in ly["layer"]]
    for col in mem.ModuleMemory.__dataclass_fields__:
        ly[col] = [getattr(modules.get(k, mem.ModuleMemory()), col) for k in keys]

def add_latency(analysis, model, inputs, device, repeats, warmup, amp_dtype, per_layer, budget_s=None):
    from archcost.devices import table as devices
    from archcost.measure import timing as timing

    s = analysis.summary
    batch = int(s["batch_size"].iloc[0])
    if per_layer:
        layers, plain, hooked, overhead = timing.time_layers(model, inputs, device, repeats, warmup, amp_dtype)
        keys = ["" if n == "(model)" else n for n in analysis.layers["layer"]]
        analysis.layers["latency_ms"] = [layers.get(k, float("nan")) for k in keys]
        s["hooked_latency_ms"] = hooked.median_ms
        s["layer_timing_overhead_ms"] = overhead
    else:
        plain = (timing.time_forward(model, inputs, device, repeats, warmup, amp_dtype) if budget_s is None
                 else timing.time_forward(model, inputs, device, repeats, warmup, amp_dtype, budget_s=budget_s))
    for k, v in plain.row(batch).items():
        s[k] = v
    if budget_s is not None:
        s["time_budget_s"] = budget_s
    if hasattr(os, "getloadavg"):  # the machine's load as the timing ended: a busy machine's times are not its own
        s["load_avg_1min"] = os.getloadavg()[0]
    tflops = float(s["flops"].iloc[0]) / (plain.median_ms / 1e3) / 1e12
    s["achieved_tflops"] = tflops
    peak = devices.find_peak(devices.device_name(device)) if device == "cuda" else None
    key = str(amp_dtype or s["dtype"].iloc[0]).replace("torch.", "").split(" ")[0]
    key = devices.peak_key(key, device, torch.backends.cudnn.allow_tf32)
    if peak is not None and key == "tf32" and "tf32" not in peak.tflops:
        key = "float32"  # no TF32 on this GPU (V100, T4): float32 runs at the FP32 rate
    peak_tflops = peak.tflops.get(key) if peak else None
    s["device_peak_tflops"] = peak_tflops or float("nan")
    s["peak_dtype"] = key if peak_tflops else ""
    s["peak_fraction"] = tflops / peak_tflops if peak_tflops else float("nan")
    s["peak_source"] = peak.source if peak else ""


def add_train_latency(analysis, model: nn.Module, inputs, device: str, optimizer: str, repeats: int,
                      warmup: int, autocast=None, checkpoint=()):
    """Time a whole training step (zero_grad, forward, loss, backward, optimizer step) the
    way ``timing.py`` times a forward: CUDA events on a GPU, perf_counter on CPU; each
    step also restores the BatchNorm statistics it updated (a copy of the buffers)."""
    from archcost.measure.timing import summarize, time_calls

    step = TrainingStep(model, optimizer, autocast, checkpoint)
    grads = {id(p): p.grad for p in model.parameters()}
    try:
        samples = time_calls(lambda: step.run(inputs), device, repeats, warmup)
    finally:
        for p in model.parameters():
            p.grad = grads.get(id(p))
    t = summarize(samples, warmup, "cuda events" if device == "cuda" else "perf_counter")
    s = analysis.summary
    batch = int(s["batch_size"].iloc[0])
    s["train_latency_ms"] = t.median_ms
    s["train_latency_p20_ms"] = t.p20_ms
    s["train_latency_p80_ms"] = t.p80_ms
    s["train_images_per_s"] = batch / (t.median_ms / 1e3)
    if "train_macs" in s and not s["train_macs"].isna().iloc[0]:
        s["train_achieved_tflops"] = 2 * float(s["train_macs"].iloc[0]) / (t.median_ms / 1e3) / 1e12
