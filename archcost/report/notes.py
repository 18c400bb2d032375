"""The notes printed under a table: conditions of the run, what training measured, why a
row was counted on real tensors, what was not counted. Text only; nothing here counts."""

import os


def condition_title(frame) -> str:
    r = frame.iloc[0]
    return f"{r['device_name']}, {r['dtype']}, batch {r['batch_size']}"

def condition_notes(frame, latency):
    from archcost.report.units import human_bytes

    r = frame.iloc[0]
    if "saved_bytes" not in frame:
        return []
    batch = f"batch {r['batch_size']}" if frame["batch_size"].nunique() == 1 else "batch per row"
    notes = [f"conditions: {r['device_name']}, {r['dtype']}" + (", channels_last" if r["channels_last"] else "")
             + f", {batch}, torch {r['torch_version']}; memory measured on "
             f"{r.get('memory_measured_on', '-')} tensors"
             + (" (the same allocations as CPU tensors, tested)" if r.get("memory_measured_on") == "meta" else "")
             + f"; train = weights + grads + {r.get('optimizer', 'sgd')} state + saved."]
    if latency:
        budget = r.get("time_budget_s")
        timed = (f"latency: timed to {budget:g} s per point ({int(frame['repeats'].min())} to "
                 f"{int(frame['repeats'].max())} forwards, at least 3) after up to {r['warmup']} warm-up"
                 if budget == budget and budget is not None and "repeats" in frame
                 else f"latency: {r['repeats']} forwards after {r['warmup']} warm-up")
        load = frame["load_avg_1min"].dropna() if "load_avg_1min" in frame else frame.iloc[0:0]
        notes.append(f"{timed}, {r['clock']}"
                     + (f", {r['threads']} CPU threads" if r["clock"] == "perf_counter" else "")
                     + (f", load average {load.min():.2f} to {load.max():.2f} ({os.cpu_count()} cores)"
                        if len(load) else "")
                     + (f"; peak = {r['device_peak_tflops']} TFLOP/s {r.get('peak_dtype', '')} dense "
                        f"({r['peak_source']})"
                        if r.get("peak_dtype") else "; no datasheet peak known for this device and dtype"))
    if "peak_bytes_allocator" in frame:
        notes.append("CUDA caching allocator (max_memory_allocated) for comparison: " + ", ".join(
            f"{m} {human_bytes(b)}" for m, b in zip(frame["model"], frame["peak_bytes_allocator"])))
    return notes

def train_notes(frame, freeze=(), checkpoint=()):
    notes = []
    if checkpoint:
        notes.append("activation checkpointing of the outermost modules matching " + ", ".join(repr(p) for p in checkpoint)
                     + ": train peak and bwd MACs (recomputation included; recompute = its MACs) measured with it; "
                     "saved is without it.")
    if freeze:
        notes.append("frozen (requires_grad off): parameters matching " + ", ".join(repr(p) for p in freeze))
    if "train_peak_bytes" in frame:
        r = frame.iloc[0]
        notes.append(f"train peak: one training step (zero_grad(set_to_none), forward, loss, backward, "
                     f"torch.optim {r['optimizer']} step, foreach); input batch excluded.")
        bad = frame[frame["train_note"].astype(bool)] if "train_note" in frame else frame.iloc[:0]
        notes += [f"{m}: {n}" for m, n in zip(bad["model"], bad["train_note"])]
    return notes

def row_notes(frame):
    """Each row's ``notes`` (a count not taken on meta tensors, and why) as a line under the table."""
    if "notes" not in frame:
        return []
    return [f"{m}: {n}" for m, n in zip(frame["model"], frame["notes"]) if isinstance(n, str) and n]

def uncounted_notes(frame):
    ops = sorted({o.split(" x")[0] for s in frame["uncounted_ops"] for o in s.split("; ") if o})
    if not ops:
        return []
    return ["", "not counted as MACs (no fvcore rule; per-model counts in the CSV's uncounted_ops): "
            + ", ".join(ops)]

def roofline_notes(tgt, summary, latency):
    r = tgt.roof
    notes = [f"target: {tgt.note}",
             f"roof: {r.peak_flops / 1e12:.4g} TFLOP/s ({r.dtype}), {r.bandwidth / 1e9:.4g} GB/s, ridge "
             f"{r.ridge:.3g} FLOP/byte" + (f", launch overhead {r.launch_overhead_s * 1e6:g} us per operator"
                                           if r.launch_overhead_s else ""),
             "bytes: each operand of each ATen operator crosses DRAM once (no cache reuse across operators, "
             "no im2col workspace, no fused epilogues); an in-place ReLU reads and writes its storage; "
             "operators without MACs count 0 FLOPs; the model's bound is the sum over layers (run one after "
             "another)."]
    if latency:
        s = summary.iloc[0]
        notes.append(f"measured: median of {s['repeats']} forwards ({s['clock']}, {s['threads']} threads); "
                     f"per-layer clocks add {s['layer_timing_overhead_ms']:+.3f} ms per forward.")
    return notes

def sweep_title(frame) -> str:
    if not len(frame):
        return "Batch-size sweep (no batch fitted)"
    r = frame.iloc[0]
    load = frame["load_avg_1min"].dropna() if "load_avg_1min" in frame else frame.iloc[0:0]
    return (f"Batch-size sweep ({r['device_name']}, {r['dtype']}, batch {frame['batch_size'].min()} to "
            f"{frame['batch_size'].max()}" + (f"; timed at load average {load.min():.1f} to {load.max():.1f}"
                                                if len(load) else "") + ")")
