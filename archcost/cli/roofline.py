"""`archcost roofline`: per-layer bounds on a target device."""

import click

from archcost.cli.app import main
from archcost.cli.common import batch_option, emit, file_stem, format_option, guarded, input_size_option, nosave_option, out_dir, out_option, overhead_option, parse_sizes, tf32_option, progress, resolve_models, resolve_roofline_target, target_option, wrote
from archcost.report.notes import roofline_notes
from archcost.report.columns import ROOFLINE_LAYER_COLUMNS, ROOFLINE_SUMMARY_COLUMNS


@main.command("roofline")
@click.argument("models", nargs=-1, required=True)
@target_option
@input_size_option
@batch_option
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32",
              show_default=True, help="Element type of the model and input (bytes per element, and the peak's column).")
@overhead_option
@click.option("--latency", is_flag=True, help="Also measure each leaf layer and the whole forward on the target "
              "(this machine's CPU or GPU) and give measured / bound.")
@click.option("--repeat", type=click.IntRange(min=1), default=20, show_default=True, help="Timed forwards (--latency).")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed forwards first.")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Text/markdown: only the N layers with the "
              "largest time bound (files keep every layer).")
@tf32_option
@click.option("--recalibrate", is_flag=True, help="--target cpu: measure this CPU again instead of using the cache.")
@format_option
@out_option
@nosave_option
def roofline_cmd(models, target, input_size, seq_len, batch_size, dtype, launch_overhead_us, latency, repeat, warmup,
                 top, tf32, recalibrate, fmt, out, no_save):
    """Per layer: bytes read and written, arithmetic intensity (FLOPs / byte), the time the
    target's compute and memory bandwidth allow, which of them bounds the layer, and the
    batch from which it is compute-bound; per model: the time bound per image, the share
    of it in memory-bound layers, and the batch where the heaviest layers cross the ridge.
    Writes reports/roofline_<model>_<target>_<dtype>_b<batch>.csv and .png and
    roofline_<target>_<dtype>_b<batch>_<models>.csv (one row per model) unless --no-save
    (with --input-size, ``_in<size>`` after the batch: README 'Report names')."""
    import pandas as pd

    from archcost.report.clean import strict_json

    from archcost.analysis.roofline import run
    from archcost.report.files import write_csv
    from archcost.report.tables import render

    names = resolve_models(models)
    sizes = parse_sizes(input_size, seq_len)
    folder = out_dir(out, no_save)
    tgt = resolve_roofline_target(target, dtype, launch_overhead_us, recalibrate, tf32)
    layer_frames, summaries = [], []
    with progress(names, "bounding") as bar:
        for n in bar:
            layers, summary = guarded(run, n, tgt, batch_size=batch_size, dtype=dtype, input_size=sizes,
                                      latency=latency, repeats=repeat, warmup=warmup)
            layer_frames.append(layers)
            summaries.append(summary)
    summary = pd.concat(summaries, ignore_index=True)
    lcols = ROOFLINE_LAYER_COLUMNS[:]
    scols = ROOFLINE_SUMMARY_COLUMNS[:]
    if launch_overhead_us:
        lcols.insert(lcols.index("time_bound_ms"), "time_overhead_ms")
        scols.insert(scols.index("ridge_batch_heaviest"), "bound_share_overhead")
    if "predicted_ms" in summary:
        lcols.insert(lcols.index("bound") + 1, "predicted_ms")
        scols.insert(scols.index("time_bound_per_image_ms"), "predicted_ms")
    if latency:
        lcols += ["latency_ms", "measured_over_bound"]
        scols += ["latency_ms", "measured_over_bound"] + (["predicted_over_measured"]
                                                          if "predicted_over_measured" in summary else [])
    notes = roofline_notes(tgt, summary, latency)
    if fmt == "csv":
        emit(pd.concat(layer_frames, ignore_index=True).to_csv(index=False))
    elif fmt == "json":
        emit(strict_json({"target": tgt.note, "summary": summary.to_dict("records"),
                           "layers": pd.concat(layer_frames, ignore_index=True).to_dict("records")}))
    else:
        parts = []
        for layers in layer_frames:
            shown = layers.nlargest(top, "time_bound_ms").sort_index() if top else layers
            title = f"{layers['model'].iloc[0]}, batch {batch_size}, {dtype}" + (
                f" (the {top} layers with the largest bound)" if top else "")
            parts.append(render(shown, fmt, lcols, title=title).split("\n\ncolumns:")[0]
                         .split("\n\n- ")[0].rstrip("\n"))
        parts.append(render(summary, fmt, scols, title="per model", notes=notes))
        emit("\n\n".join(parts))
    if folder is not None:
        from archcost.devices.table import slug
        from archcost.report.plots_roofline import roofline as plot

        tslug = "cpu" if tgt.local == "cpu" and target.lower() in ("cpu", "auto") else \
            slug("cuda") if tgt.local == "cuda" and target.lower() == "auto" else target.lower()
        from archcost.report.files import file_set
        from archcost.report.naming import size_token, subset

        size = size_token(sizes)
        tag = f"{tslug}_{dtype}_b{batch_size}" + (f"_in{size}" if size else "") + (
            f"_overhead{launch_overhead_us:g}us" if launch_overhead_us else "") + ("_latency" if latency else "")
        paths = []
        with file_set(folder):
            for layers, row in zip(layer_frames, summary.to_dict("records")):
                stem = f"roofline_{file_stem(row['model'])}_{tag}"
                paths.append(write_csv(folder / f"{stem}.csv", layers))
                plot(layers, row, folder / f"{stem}.png", tgt.roof.device + f", {tgt.roof.dtype} peak",
                     f"Roofline: {row['model']}, batch {batch_size}, {dtype}")
                paths.append(folder / f"{stem}.png")
            paths.append(write_csv(folder / f"roofline_{tag}{subset(names)}.csv",
                                   summary.assign(target_note=tgt.note)))
        wrote(paths)
