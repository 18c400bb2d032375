"""`archcost layer-breakdown`: one row per layer of one model."""

import click

from archcost.cli.app import main
from archcost.cli.common import analysis_options, conditions, emit, file_stem, guarded, one_model, out_dir, parse_sizes, resolve_roofline_target, run_device, run_options, target_tag, train_options, wrote
from archcost.report.notes import condition_notes, row_notes, train_notes, uncounted_notes
from archcost.report.columns import LAYER_COLUMNS


@main.command("layer-breakdown")
@click.argument("model")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Show modules at this depth (and shallower leaves) instead of every leaf; a "
                   "container's activations are then the sum of its leaf layers', so rows add up to the total.")
@analysis_options
@click.option("--latency", is_flag=True, help="Also time each leaf layer (hooks; their overhead is stated).")
@run_options
@click.option("--target", default=None, metavar="NAME|cpu|auto",
              help="Add each layer's roofline time bound on this device (with --latency on it: measured / bound).")
@train_options
def layer_breakdown(model, depth, input_size, seq_len, batch_size, fmt, out, no_save, name, engine, dtype, latency, device,
                    amp, channels_last, optimizer, repeat, warmup, target, train, freeze, checkpoint):
    """Per-layer params, MACs, activation memory, memory saved for backward and the live
    peak while the layer runs, with a total row equal to its `archcost table` row; with
    --train, each layer's backward MACs (the gradients autograd computes for it).
    Writes reports/<model>_layers_<conditions>.csv and .png unless --no-save."""
    import pandas as pd

    from archcost.analysis import analyze
    from archcost.report.files import write_csv
    from archcost.report.tables import render

    report_name = name
    name = one_model(model)
    sizes = parse_sizes(input_size, seq_len)
    folder = out_dir(out, no_save)
    device = run_device(device)
    a = guarded(analyze, name, input_size=sizes, batch_size=batch_size, engine=engine, dtype=dtype,
                device=device, amp=amp, channels_last=channels_last, optimizer=optimizer,
                layer_latency=latency, repeats=repeat, warmup=warmup, record_ops=bool(target),
                train=train or bool(checkpoint), freeze=freeze, checkpoint=checkpoint)
    train = train or bool(checkpoint)
    rows = a.breakdown(depth)
    s = a.row
    root = a.layers[a.layers["depth"] == 0].iloc[0]
    # the total row: marked in its own column (``is_total``), typed like the others (``type``
    # is the model's class, ``self_*`` the model's own), so that pandas reads every column
    # with its dtype and ``frame[~frame.is_total]`` sums to it
    total = {"layer": "(total)", "type": root["type"], "depth": 0, "is_leaf": False,
             "output_shape": "", "params": s["params"], "self_params": root["self_params"],
             "macs": s["macs"], "self_macs": root["self_macs"],
             "activations": s["activations"], "activation_bytes": s["activation_bytes"],
             "saved_bytes": s["saved_bytes"], "peak_bytes": s["peak_bytes"],
             "aliased": False, "calls": 1}
    if latency:
        total["latency_ms"] = s["latency_ms"]
    if train:
        total["backward_macs"] = s["backward_macs"]
    frame = pd.concat([rows.assign(is_total=False), pd.DataFrame([{**total, "is_total": True}])],
                      ignore_index=True)
    extra = []
    if target:
        tgt = resolve_roofline_target(target, dtype)
        from archcost.roofline.layers import add_layer_bounds

        frame, extra = guarded(add_layer_bounds, frame, a, tgt, latency and device == tgt.local)
        notes_target = [f"roofline target: {tgt.note}"]
    frame.insert(0, "model", s["model"])
    notes = [f"model {s['model']}, input {s['input_shape']}; the total row comes from the whole model "
             "(activations count each storage once: in-place rows add nothing; saved is attributed to the "
             "layer that saved it first; peak is the model's live total while the layer ran)."]
    notes += (uncounted_notes(a.summary) + row_notes(a.summary) + condition_notes(a.summary, False)
              + train_notes(a.summary, freeze, checkpoint))
    if latency:
        notes.append(f"latency: median of {s['repeats']} forwards after {s['warmup']} warm-up with a "
                     f"{'CUDA event pair' if device == 'cuda' else 'perf_counter pair'} around each leaf; the "
                     f"whole forward takes {s['latency_ms']:.3f} ms plain and {s['hooked_latency_ms']:.3f} ms "
                     f"with the per-layer clocks (overhead {s['layer_timing_overhead_ms']:+.3f} ms per forward).")
        from archcost.report.spread import add_spread

        notes += add_spread(a.summary)
    shared = "shared_params" in frame and frame["shared_params"].fillna(0).gt(0).any()
    if depth:
        notes.append(f"at --depth {depth} a container row's activations are the sum of its leaf layers' outputs "
                     "(each storage once), so the rows add up to the total.")
    if target:
        notes += notes_target
    emit(render(frame, fmt, LAYER_COLUMNS + (["backward_macs"] if train else []) + (["shared_params"] if shared else []) + (["latency_ms"] if latency else [])
                + extra, notes=notes))
    if folder is not None:
        from archcost.report.files import file_set
        from archcost.report.naming import subset
        from archcost.report.plots import layer_breakdown as plot

        stem = file_stem(name) + "_layers_" + conditions(
            device, dtype, amp, channels_last, batch_size, input_size=sizes, optimizer=optimizer,
            extra=["latency" if latency else "", f"d{depth}" if depth else "", "train" if train else "",
                   "freeze" if freeze else "", "ckpt" if checkpoint else "", target_tag(target)]) \
            + subset([], None, report_name)
        with file_set(folder):
            paths = [write_csv(folder / f"{stem}.csv", frame), folder / f"{stem}.png"]
            plot(rows, s["model"], paths[1], depth)
        wrote(paths)
