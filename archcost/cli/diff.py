"""`archcost diff`: two models (or a model and a baseline row) layer by layer."""

import click

from archcost.cli.app import main
from archcost.cli.common import batch_option, emit, fail, file_stem, format_option, guarded, input_size_option, nosave_option, out_dir, out_option, parse_sizes, resolve_models, wrote


def _diff_side(ref, sizes, batch_size, memory):
    from archcost.compare.sides import baseline_side, is_baseline_ref, model_side

    if is_baseline_ref(ref):
        return guarded(baseline_side, ref)
    if ":" not in ref:
        found = resolve_models([ref])
        if len(found) > 1:
            fail(f"{ref!r} matches {len(found)} models ({', '.join(found[:5])}{' ...' if len(found) > 5 else ''}); "
                 "diff compares two models: name one each side")
        ref = found[0]
    return guarded(model_side, ref, sizes, batch_size, memory)

@main.command()
@click.argument("model_a", metavar="A")
@click.argument("model_b", metavar="B")
@input_size_option
@batch_option
@format_option
@click.option("--all", "show_all", is_flag=True, help="Show the layers that are the same too.")
@click.option("--no-memory", is_flag=True, help="Skip the activation-memory and saved-bytes columns' "
              "memory pass (counts only; faster).")
@out_option
@nosave_option
def diff(model_a, model_b, input_size, seq_len, batch_size, fmt, show_all, no_memory, out, no_save):
    """Two models layer by layer: params, MACs and memory of A and B and the delta (B - A).

    A and B are names, wildcards matching one model, path/file.py:builder, or a baseline
    row as path/baseline.csv:MODEL (its layer rows when it stores them, see `check
    --update --layers`). Rows are aligned by module name, then by execution order;
    added (+), removed (-) and changed (~) rows are marked; totals at the bottom. Writes
    reports/diff_<A>_vs_<B>.csv and a plot of the per-layer deltas unless --no-save.
    """
    from archcost.compare.diff import diff as diff_frames
    from archcost.compare.sides import input_of, is_baseline_ref
    from archcost.report.diffs import diff_report

    sizes = parse_sizes(input_size, seq_len)
    folder = out_dir(out, no_save)
    a = _diff_side(model_a, sizes, batch_size, not no_memory)
    b_sizes, b_batch = sizes, batch_size
    if is_baseline_ref(model_a) and sizes is None:
        b_sizes, b_batch = input_of(a)  # B measured at the baseline row's recorded input
    b = _diff_side(model_b, b_sizes, b_batch, not no_memory)
    frame = diff_frames(a.layers, a.summary, b.layers, b.summary)
    notes = [n for n in (a.note, b.note) if n]
    if a.summary.get("input_shape") != b.summary.get("input_shape"):
        notes.append(f"inputs differ: A {a.summary.get('input_shape')}, B {b.summary.get('input_shape')}")
    emit(diff_report(frame, fmt, a.label, b.label, show_all, notes))
    if folder is not None:
        from archcost.report.files import file_set, write_csv
        from archcost.report.naming import size_token
        from archcost.report.plots import diff_deltas

        size = size_token(sizes)
        stem = (f"diff_{file_stem(a.label)}_vs_{file_stem(b.label)}" + (f"_b{batch_size}" if batch_size != 1 else "")
                + (f"_in{size}" if size else ""))
        with file_set(folder):
            paths = [write_csv(folder / f"{stem}.csv", frame), folder / f"{stem}.png"]
            diff_deltas(frame, paths[1], a.label, b.label)
        wrote(paths)
