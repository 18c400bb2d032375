"""`archcost check`: the CI regression gate against a committed baseline."""

import os
import pathlib
import sys

import click

from archcost.cli.app import main
from archcost.cli.common import FiniteFloat, batch_option, emit, fail, format_option, guarded, input_size_option, parse_sizes, resolve_models


@main.command()
@click.argument("models", nargs=-1)
@click.option("--baseline", default="reports/baseline.csv", show_default=True,
              type=click.Path(dir_okay=False), help="CSV with model, input_shape, params, macs "
              "(and per-layer rows when made with --layers). file.py:builder paths in it are "
              "relative to its folder.")
@click.option("--update", is_flag=True, help="Rewrite the baseline (atomically, under a lock, merged with "
              "what other processes wrote meanwhile) with the current counts; with MODELS, add or refresh "
              "just those.")
@click.option("--layers", is_flag=True, help="With --update: also store one row per layer, so a drift "
              "names the layers that changed.")
@click.option("--tolerance", type=FiniteFloat(min=0), default=0.0, show_default=True,
              help="Allowed relative MAC drift (params are always exact), e.g. 0.01 for 1%.")
@click.option("--allow-outside", is_flag=True, help="Run baseline rows whose file.py:builder lies outside the "
              "baseline's folder (refused by default: a baseline is data and must not reach other code).")
@click.option("--allow-module-refs", is_flag=True, help="Run baseline rows that name package.module:callable "
              "(imported and called: only for a baseline you trust; refused by default).")
@input_size_option
@batch_option
@format_option
def check(models, baseline, update, layers, tolerance, allow_outside, allow_module_refs, input_size, seq_len,
          batch_size, fmt):
    """Regression check for CI: recompute the baseline's models and fail (exit 1) when a
    parameter count changes, or MACs drift beyond --tolerance. When the baseline holds
    per-layer rows (--update --layers), the layers that changed are named."""
    from archcost.compare.check import Trust, compare, measure_update, merge, read_baseline
    from archcost.report.baseline_file import update_locked
    from archcost.report.diffs import drift_report
    from archcost.report.files import ensure_dir

    shown = baseline
    path = pathlib.Path(os.path.abspath(baseline))  # absolute before any builder runs (os.chdir)
    folder = path.parent
    trust = Trust(allow_outside, allow_module_refs)
    if layers and not update:
        fail("--layers stores per-layer rows and goes with --update; a check uses the rows the baseline has")
    if update:
        existing = guarded(read_baseline, path) if path.exists() else None
        names = [_absolute(m) for m in models if ":" in m] + resolve_models([m for m in models if ":" not in m]) \
            if models else []
        if existing is None and not names:
            fail(f"baseline {shown!r} does not exist: name the models to put in it")
        guarded(ensure_dir, folder, "put the --baseline in a writable folder")
        measured = guarded(measure_update, names, existing, folder, parse_sizes(input_size, seq_len), batch_size,
                           layers, trust)
        frame = guarded(update_locked, path, read_baseline, lambda current: merge(current, measured))
        n = frame["model"].nunique()
        click.echo(f"wrote {shown} ({n} models" + (", with layer rows" if "layer" in frame else "") + ")", err=True)
        return
    base = guarded(read_baseline, path)
    drift = guarded(compare, base, list(models), tolerance, folder, trust)
    checked = (base["layer"] == "").sum() if not models else len(models)
    emit(drift_report(drift, fmt))
    if len(drift):
        totals = drift[drift["layer"] == "(total)"]
        click.echo(f"archcost check: {len(totals)} count(s) drifted in {totals['model'].nunique()} of "
                   f"{checked} model(s); if intended, run `archcost check --update --baseline {shown}`", err=True)
        sys.exit(1)
    click.echo(f"archcost check: {checked} model(s) match {shown} (params exact, MACs "
               + ("exact" if tolerance == 0 else f"within {tolerance:.2%}") + ")",
               err=fmt in ("csv", "json"))


def _absolute(ref: str) -> str:
    """A model file's reference with an absolute path (a builder's os.chdir cannot move it)."""
    from archcost.compare.check import _file_ref

    found = _file_ref(ref)
    return f"{os.path.abspath(found[0])}:{found[1]}" if found else ref
