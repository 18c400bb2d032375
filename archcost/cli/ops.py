"""`archcost ops`: MACs by operator, cross-checked against torch's FLOP counter."""

import click

from archcost.cli.app import main
from archcost.cli.common import batch_option, dtype_option, emit, engine_option, format_option, guarded, input_size_option, one_model, parse_sizes


@main.command()
@click.argument("model")
@input_size_option
@batch_option
@format_option
@engine_option
@dtype_option
@click.option("--train", is_flag=True, help="Check the backward instead: archcost's backward MACs per ATen "
              "operator against FlopCounterMode over a real CPU backward (float32).")
@click.option("--freeze", multiple=True, metavar="PATTERN", help="With --train: freeze matching parameters.")
def ops(model, input_size, seq_len, batch_size, fmt, engine, dtype, train, freeze):
    """MACs by operator, cross-checked against torch.utils.flop_counter, with why they differ."""
    from archcost.checks.crosscheck import cross_check
    from archcost.report.tables import render

    name = one_model(model)
    if train:
        from archcost.checks.traincheck import backward_cross_check

        frame = guarded(backward_cross_check, name, input_size=parse_sizes(input_size, seq_len), batch_size=batch_size,
                        freeze=freeze)
        emit(render(frame, fmt, ["operator", "macs", "torch_macs", "difference", "why"],
                    notes=["backward of one training step (train mode, cross-entropy loss; the loss's own "
                           "backward left out); torch_macs: FlopCounterMode's FLOPs / 2 over a real CPU backward."]))
        return
    frame = guarded(cross_check, name, input_size=parse_sizes(input_size, seq_len), batch_size=batch_size,
                    dtype=dtype, engine=engine)
    missed = frame.attrs.get("torch_missed") or []
    emit(render(frame, fmt, ["operator", "macs", "torch_macs", "difference", "why"],
                notes=[f"torch_macs: torch.utils.flop_counter.FlopCounterMode's FLOPs / 2, on "
                       f"{frame.attrs.get('torch_ran_on', 'real tensors of the same input')}"
                       + (f"; fused kernels it has no formula for (counted 0): {', '.join(missed)}" if missed else "")
                       + "."]))
