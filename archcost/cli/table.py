"""`archcost table`: one row per model."""

import click

from archcost.cli.app import main
from archcost.cli.common import LINEUP, analysis_options, conditions, emit, fail, guarded, out_dir, parse_sizes, progress, resolve_models, resolve_roofline_target, run_device, run_options, target_tag, tf32_option, train_options, wrote
from archcost.report.notes import condition_notes, condition_title, row_notes, train_notes, uncounted_notes
from archcost.report.columns import LATENCY_COLUMNS, TABLE_COLUMNS, TRAIN_COLUMNS
from archcost.cli.table_zoo import check_zoo_options, zoo_options, zoo_table
from archcost.cli.common import stack_options


@main.command()
@click.argument("models", nargs=-1)
@analysis_options
@click.option("--latency", is_flag=True, help="Also time the forward: median, p20, p80 ms, images/s, TFLOP/s.")
@click.option("--no-memory", is_flag=True, help="Skip the saved/peak/train memory passes (counts only; faster).")
@run_options
@click.option("--target", default=None, metavar="NAME|cpu|auto",
              help="Add the roofline time bound (time_bound_ms) and the share of it in memory-bound layers "
                   "(bound_share_memory) for this device (see `archcost devices` and `archcost roofline`), and the "
                   "predicted time (predicted_ms; with --latency on the target itself, beside the measured one).")
@tf32_option
@train_options
@stack_options(*zoo_options)
@click.option("--decode", type=click.IntRange(min=1), default=None, metavar="N",
              help="Causal language models (hf:gpt2, hf:llama): the cost of generating one token with N tokens in "
                   "the KV cache, beside the prefill of N tokens: MACs, bytes read (weights + KV cache), the KV "
                   "cache, and the roofline bound on --target (default auto). Counted on meta tensors.")
def table(models, input_size, seq_len, batch_size, fmt, out, no_save, name, engine, dtype, latency, no_memory, device,
          amp, channels_last, optimizer, repeat, warmup, target, tf32, train, freeze, checkpoint, jobs, shard, timeout_s,
          memory_limit, retry_failed, fvcore, decode):
    """One row per model: params, MACs, FLOPs, activation memory, the memory a training
    step keeps (saved), the inference peak, the training total, and with --latency, time.

    With --train, also a whole training step: backward and train MACs, trainable
    parameters and the step's memory peak (train_peak_bytes) and its phase; --freeze and
    --checkpoint change what trains and what is kept.

    MODELS are names, wildcards ('resnet*'), families (vgg), library models and their
    wildcards ('timm:*convnext*', tv:resnet50, hf:gpt2, hf:path/config.json) or
    path/file.py:builder. With none, the lecture line-up. Writes
    reports/table_<conditions>.csv and reports/memory_vs_compute_<conditions>.png unless
    --no-save.

    With --jobs N, a zoo run ('timm:*' --jobs 2): each model in its own worker; writes
    reports/<what>_zoo_<conditions>.csv (resumable) and .png.

    With --decode N: one row per model for the prefill of N tokens and one for the next
    token's decode step; writes reports/decode_<target>_<dtype>_b<batch>_n<N>_<models>.csv.
    """
    import pandas as pd

    from archcost.analysis import analyze
    from archcost.report.files import write_csv
    from archcost.report.spread import add_spread
    from archcost.report.tables import render

    if decode is not None:
        from archcost.cli.decoding import refuse_others, run_decode

        refuse_others(latency=latency, train=train, freeze=freeze, checkpoint=checkpoint, amp=amp,
                      channels_last=channels_last, input_size=input_size)
        if not models:
            fail("--decode needs causal language models: name them (hf:gpt2, hf:llama, ...)")
        return run_decode(resolve_models(models), [decode], target, dtype, batch_size, fmt, out_dir(out, no_save),
                          name, "decode")
    check_zoo_options(jobs, shard, retry_failed, fvcore, dict(
        latency=latency, train=train, target=target, freeze=freeze, checkpoint=checkpoint, amp=amp,
        channels_last=channels_last, device=device, no_save=no_save))
    names = resolve_models(models, LINEUP)
    sizes = parse_sizes(input_size, seq_len)
    if jobs is not None:
        zoo_table(models or LINEUP, names, sizes, batch_size, dtype, fmt, out, name, no_memory, jobs, shard,
                  timeout_s, memory_limit, retry_failed, fvcore)
        return
    folder = out_dir(out, no_save)
    device = run_device(device)
    tgt = resolve_roofline_target(target, dtype, tf32=tf32) if target else None
    rows = []
    with progress(names, "measuring") as bar:
        for n in bar:
            a = guarded(analyze, n, input_size=sizes, batch_size=batch_size, engine=engine, dtype=dtype,
                        device=device, amp=amp, channels_last=channels_last, optimizer=optimizer,
                        latency=latency, repeats=repeat, warmup=warmup, memory=not no_memory,
                        record_ops=tgt is not None, train=train or bool(checkpoint), freeze=freeze,
                        checkpoint=checkpoint)
            if tgt is not None:
                from archcost.roofline.layers import add_model_bound

                guarded(add_model_bound, a, tgt, device if latency else None)
            rows.append(a.summary)
    frame = pd.concat(rows, ignore_index=True)
    notes = (uncounted_notes(frame) + row_notes(frame) + condition_notes(frame, latency) + add_spread(frame)
             + train_notes(frame, freeze, checkpoint))
    columns = (TABLE_COLUMNS + (TRAIN_COLUMNS if train or freeze or checkpoint else [])
               + (["recompute_macs"] if checkpoint else [])
               + (["train_latency_ms", "train_images_per_s"] if latency and (train or checkpoint) else [])
               + (LATENCY_COLUMNS if latency else []))
    if tgt is not None:
        columns += ["time_bound_ms", "bound_share_memory"] + [c for c in ("measured_over_bound", "predicted_ms",
                                                                          "predicted_over_measured") if c in frame]
        notes.append(f"roofline target: {tgt.note}")
    emit(render(frame, fmt, columns, notes=notes))
    if folder is not None:
        from archcost.report.files import file_set
        from archcost.report.naming import subset
        from archcost.report.plots import memory_vs_compute

        tag = conditions(device, dtype, amp, channels_last, batch_size, input_size=sizes,
                         optimizer=None if no_memory else optimizer,
                         extra=["latency" if latency else "", "nomem" if no_memory else "",
                                "train" if train or checkpoint else "", "freeze" if freeze else "",
                                "ckpt" if checkpoint else "", target_tag(target)]) + subset(names, LINEUP, name)
        with file_set(folder):
            paths = [write_csv(folder / f"table_{tag}.csv", frame), folder / f"memory_vs_compute_{tag}.png"]
            memory_vs_compute(frame, paths[1], title=f"Memory vs compute ({condition_title(frame)})")
        wrote(paths)
