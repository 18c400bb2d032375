"""`archcost list`: the zoo's models, grouped by family."""

import textwrap

import click

from archcost.cli.app import main
from archcost.cli.common import FORMATS, emit, fail


@main.command("list")
@click.argument("pattern", required=False, default="*")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
def list_cmd(pattern, fmt):
    """List zoo models (PATTERN: a name, wildcard or family), grouped by family; or a
    library's models ('timm:*convnext*', 'tv:swin*', 'hf:gpt*') with their default input."""
    import pandas as pd

    from archcost.zoo.sources import is_source

    if is_source(pattern):
        _list_sources(pattern, fmt)
        return

    from archcost.report.tables import render
    from archcost.report.tables import terminal_width
    from archcost.report.units import si
    from archcost.zoo.registry import get_spec, list_models, unknown_model_message

    width = terminal_width()

    names = list_models(pattern)
    if not names:
        fail(unknown_model_message(pattern) if not any(ch in pattern for ch in "*?[")
             else f"no model matches {pattern!r}: try `archcost list` for all")
    rows = []
    for n in names:
        spec = get_spec(n)
        params = sum(p.numel() for p in _meta_build(spec).parameters())
        rows.append({**spec.as_row(), "params": params})
    frame = pd.DataFrame(rows).sort_values(["family"], kind="stable")
    if fmt != "text":
        emit(render(frame, fmt, ["name", "family", "input_size", "params", "depth", "year", "paper"]))
        return
    for fam, group in frame.groupby("family", sort=True):
        click.echo(f"{fam}")
        for r in group.itertuples():
            acc = f"top-1 {r.top1}%" if r.top1 == r.top1 and r.top1 is not None else (
                f"top-5 {r.top5}%" if r.top5 == r.top5 and r.top5 is not None else "")
            click.echo(textwrap.fill(f"  {r.name:<16} {r.input_size:<10} {si(r.params):>6} params  depth "
                                     f"{r.depth:<4} {r.paper} ({r.year})" + (f"  [{acc}, {r.accuracy_dataset}]"
                                                                             if acc else ""),
                                     width, subsequent_indent=" " * 56, break_on_hyphens=False))
    click.echo("\n" + textwrap.fill("params: parameters, trainable and not (buffers such as BN statistics excluded), "
                                    "each shared tensor once, as in `archcost table`; depth: weight layers as the "
                                    "paper counts them; accuracies are published figures (see --format csv for "
                                    "sources and notes).", width))

def _meta_build(spec):
    import torch

    with torch.device("meta"):
        return spec.builder()


def _list_sources(pattern, fmt):
    """A library's models matching PATTERN: name, family and the default input it takes."""
    import pandas as pd

    from archcost.cli.common import guarded
    from archcost.report.tables import render
    from archcost.zoo.sources import SourceError, list_sources, resolve

    names = guarded(list_sources, pattern)
    if not names:
        fail(f"no model matches {pattern!r}: try `archcost list '{pattern.split(':')[0]}:*'` for all")
    rows = []
    for n in names:
        try:
            s = resolve(n)
        except SourceError as exc:  # listed by its library, but archcost cannot feed it
            rows.append({"name": n, "family": "", "input_size": "", "input_note": str(exc)})
            continue
        size = "x".join(map(str, s.input_size)) if isinstance(s.input_size, tuple) else (
            "tokens" if s.tokens else "")
        rows.append({"name": n, "family": s.family, "input_size": size, "input_note": s.input_note})
    frame = pd.DataFrame(rows)
    if fmt != "text":
        emit(render(frame, fmt, ["name", "family", "input_size", "input_note"]))
        return
    for fam, group in frame.groupby("family", sort=True):
        click.echo(fam or "(cannot be fed by archcost)")
        for r in group.itertuples():
            click.echo(f"  {r.name:<48} {r.input_size or r.input_note}")
    click.echo(f"\n{len(frame)} models; input: the library's default (timm's pretrained_cfg input_size, "
               "torchvision's documented size, token ids for text models: --seq-len).")
