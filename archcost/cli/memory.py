"""`archcost memory`: archcost's memory figures against the allocator's own accounting."""

import click

from archcost.cli.app import main
from archcost.cli.common import batch_option, dtype_option, emit, format_option, guarded, input_size_option, one_model, parse_sizes, run_device, step


@main.command()
@click.argument("model")
@input_size_option
@batch_option
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@dtype_option
@format_option
@click.option("--train", is_flag=True, help="Check train_peak_bytes instead: one whole training step on meta "
              "tensors against the CPU allocator's events over the same step on real tensors (float32).")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam", "adamw"]), default="sgd",
              show_default=True, help="With --train: the step's torch.optim optimizer.")
def memory(model, input_size, seq_len, batch_size, device, dtype, fmt, train, optimizer):
    """Check peak_bytes and saved_bytes of MODEL against independent measurements of the
    same forward: the CPU profiler's allocator events, or the CUDA caching allocator."""
    from archcost.analysis import analyze
    from archcost.checks.memcheck import compare
    from archcost.report.tables import render

    name = one_model(model)
    sizes = parse_sizes(input_size, seq_len)
    if train:
        from archcost.checks.traincheck import compare_step

        frame = guarded(compare_step, name, input_size=sizes, batch_size=batch_size, optimizer=optimizer)
        emit(render(frame, fmt, ["quantity", "archcost", "independent", "relative_difference", "by", "why"],
                    notes=[f"model {name}, batch {batch_size}, float32, one training step on cpu "
                           "(input batch excluded on both sides)."]))
        return
    device = run_device(device)
    guarded(analyze, name, input_size=sizes, batch_size=batch_size, memory=False, dtype=dtype)  # input errors
    step(f"memory: measuring {name} on meta and real {device} tensors, then with the "
         + ("CPU profiler" if device == "cpu" else "CUDA caching allocator") + " (takes a few seconds)")
    frame = guarded(compare, name, input_size=sizes, batch_size=batch_size, device=device, dtype=dtype)
    emit(render(frame, fmt, ["quantity", "archcost", "independent", "relative_difference", "by", "why"],
                notes=[f"model {name}, batch {batch_size}, {dtype}, on {device}."]))
