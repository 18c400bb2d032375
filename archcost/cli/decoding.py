"""`--decode` of `archcost table` and `archcost sweep`: what a generated token costs with N
tokens cached, beside the prefill of N tokens (parse -> archcost.analysis.decode -> render)."""

from archcost.cli.common import emit, fail, guarded, progress, resolve_roofline_target, wrote

# Options that measure real runs or a training step: a decode count is on meta tensors.
NOT_WITH_DECODE = {"latency": "--latency", "train": "--train", "freeze": "--freeze", "checkpoint": "--checkpoint",
                   "amp": "--amp", "channels_last": "--channels-last", "input_size": "--input-size"}


def refuse_others(**given):
    """One line for an option that does not apply to --decode."""
    for key, value in given.items():
        if value:
            fail(f"--decode counts on meta tensors (tokens, no images, no timing, no training step): "
                 f"{NOT_WITH_DECODE[key]} does not apply to it")


def run_decode(names, contexts, target, dtype, batch_size, fmt, folder, name, kind):
    """Count, bound, render and (unless ``folder`` is None) write ``<kind>`` =
    'decode' reports: reports/decode_<target>_<dtype>_b<batch>_n<contexts>[_models].csv, and
    a plot for a sweep of several contexts."""
    from archcost.analysis.decode import decode_frame
    from archcost.report.decode import VIEW, decode_notes, decode_title
    from archcost.report.notes import uncounted_notes
    from archcost.report.tables import render

    tgt = resolve_roofline_target(target or "auto", dtype)
    frames = []
    jobs = list(names)
    with progress(jobs, "counting decode of") as bar:
        for n in bar:
            frames.append(guarded(decode_frame, [n], contexts, tgt.roof, batch_size, dtype))
    import pandas as pd

    frame = pd.concat(frames, ignore_index=True)
    emit(render(frame, fmt, VIEW, notes=uncounted_notes(frame) + decode_notes(tgt, frame)))
    if folder is None:
        return
    from archcost.devices.table import slug
    from archcost.report.files import file_set, write_csv
    from archcost.report.naming import conditions, subset

    t = (target or "auto").lower()
    tslug = t if t not in ("auto", "cpu") else ("cpu" if tgt.local == "cpu" else slug("cuda"))
    span = f"n{contexts[0]}" + (f"-{contexts[-1]}" if len(contexts) > 1 else "")
    tag = conditions(tslug, dtype, batch=batch_size, extra=[span]) + subset(names, None, name)
    with file_set(folder):
        paths = [write_csv(folder / f"{kind}_{tag}.csv", frame)]
        if len(contexts) > 1:
            from archcost.report.plots_decode import decode_sweep

            paths.append(folder / f"{kind}_{tag}.png")
            decode_sweep(frame[frame["phase"].notna()], paths[-1], decode_title(frame))
    wrote(paths)
