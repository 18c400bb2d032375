"""`archcost reproduce`: the lineage's design arguments, measured."""

import json

import click

from archcost.cli.app import main
from archcost.cli.common import emit, fail, format_option, name_option, nosave_option, out_dir, out_option, step, wrote


@main.command()
@click.argument("experiments", nargs=-1)
@format_option
@out_option
@nosave_option
@name_option
def reproduce(experiments, fmt, out, no_save, name):
    """The lecture's design arguments, measured: EXPERIMENTS among bottleneck, stacked-3x3,
    gap-vs-fc, resnet-bottleneck, grouped-conv, depthwise-separable, se-overhead,
    dense-connectivity, aux-classifiers, roofline, training-cost, vgg16-head, sqrt-n-checkpointing
    (minutes: whole training steps of networks up to 300 layers), claims (all when none is named;
    a claim of an experiment that did not run is left out). With all of
    them, writes reports/reproductions.csv, claims.csv, one plot per experiment and
    REPRODUCTIONS.md."""
    import pandas as pd

    from archcost import reproduce as rp
    from archcost.report.reproductions import markdown_report
    from archcost.report.files import write_csv, write_text
    from archcost.report.tables import render

    unknown = [e for e in experiments if e not in rp.NAMES]
    if unknown:
        fail(f"unknown experiment {unknown[0]!r}: choose from {', '.join(rp.NAMES)}")
    names = list(dict.fromkeys(experiments)) or rp.NAMES
    folder = out_dir(out, no_save)
    rows, claim_rows = rp.run(names, progress=(lambda e: step(f"reproduce: {e}")) if len(names) > 1 else None)
    frame = pd.DataFrame(rows, columns=rp.ROW_COLUMNS + (rp.EXTRA_COLUMNS if rows else []))
    frame = frame.loc[:, [c for c in frame.columns if c in rp.ROW_COLUMNS or frame[c].notna().any()]]
    frame["train_macs"] = frame["train_macs"].astype("Int64")  # empty where a row has no training step
    claims = pd.DataFrame(claim_rows, columns=rp.CLAIM_COLUMNS)
    parts = []
    if fmt == "json":  # one document: {"experiments": [...], "claims": [...]}
        from archcost.report.clean import records

        parts.append(json.dumps({"experiments": records(frame), "claims": records(claims)}, indent=1,
                                allow_nan=False) + "\n")
    elif len(frame):
        parts.append(render(frame, fmt, ["experiment", "variant", "input_shape", "params", "macs"]
                            + (["train_macs"] if "train_macs" in frame and frame["train_macs"].notna().any() else [])
                            + ["activation_bytes", "ratio_params", "ratio_macs", "note"]))
    if len(claims) and fmt != "json":
        parts.append(render(claims, fmt, rp.CLAIM_COLUMNS))
    emit(("\n" if fmt in ("text", "markdown") else "").join(parts))
    if folder is not None:
        from archcost.report.files import file_set
        from archcost.report.naming import subset
        from archcost.report.plots import experiment_bars

        paths = []
        every = set(names) == set(rp.NAMES)
        what = subset([n for n in names if n != "claims"], None, name) if name or not every else ""
        with file_set(folder):
            if len(frame):
                paths.append(write_csv(folder / f"reproductions{what}.csv", frame))
                for exp, group in frame.groupby("experiment", sort=False):
                    target = folder / f"reproduce_{exp}.png"
                    if exp == "roofline":
                        from archcost.report.plots_roofline import batch_experiment

                        batch_experiment(group.to_dict("records"), target)
                    elif exp == "sqrt-n-checkpointing":
                        from archcost.report.plots_plan import checkpointing_depth

                        checkpointing_depth(group.to_dict("records"), target)
                    elif exp == "training-cost":
                        from archcost.report.plots import ratio_bars

                        ratio_bars(group.to_dict("records"), target,
                                   "training-cost: a training step's MACs (forward + backward) / the forward's",
                                   "train_macs / macs (forward = 1)", 3.0, "\"about three forwards\"")
                    elif exp == "vgg16-head":
                        experiment_bars(group.to_dict("records"), target,
                                        f"{exp}: trainable params and a training step's MACs per variant",
                                        (("params", "trainable parameters"),
                                         ("train_macs", "training-step MACs (forward + backward)")))
                    else:
                        experiment_bars(group.to_dict("records"), target, f"{exp}: params and MACs per variant")
                    paths.append(target)
            if len(claims):
                paths.append(write_csv(folder / "claims.csv", claims))
            if every:
                paths.append(write_text(folder / "REPRODUCTIONS.md", markdown_report(frame, claims)))
        wrote(paths)


# --- roofline (issue #15) -------------------------------------------------------------------
