"""`archcost sweep`: memory and latency against batch size."""

import click

from archcost.cli.app import main
from archcost.cli.common import FiniteFloat, conditions, model_call, dtype_option, emit, fail, format_option, input_size_option, name_option, nosave_option, out_dir, out_option, parse_batch_sizes, parse_sizes, progress, resolve_models, run_device, run_options, user_errors, wrote
from archcost.report.notes import condition_notes, sweep_title


@main.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--batch-sizes", default="1,2,4,...,64", show_default=True,
              help="Comma-separated, or 1,2,4,...,N to keep doubling up to N.")
@input_size_option
@dtype_option
@click.option("--no-latency", is_flag=True, help="Memory only (no timing).")
@click.option("--time-budget", "time_budget", type=FiniteFloat(min=0.01, max=3600), default=2.0,
              show_default=True, metavar="SECONDS",
              help="Latency: time each point for about this long (at least 3 forwards, at most --repeat); "
                   "the warm-up stops after a fifth of it.")
@run_options
@format_option
@out_option
@nosave_option
@name_option
@click.option("--decode", default=None, metavar="LIST",
              help="Causal language models (hf:gpt2, hf:llama): the cost of a generated token against the KV "
                   "cache's length, at these contexts (128,256,...,8192 as for --batch-sizes), beside the "
                   "prefill of each; MACs, bytes and the roofline bound per token on --target. Meta tensors.")
@click.option("--target", default=None, metavar="NAME|cpu|auto",
              help="With --decode: the device whose roofline bounds each token (see `archcost devices`; "
                   "default auto: this GPU, else this CPU).")
@click.pass_context
def sweep(ctx, models, batch_sizes, input_size, seq_len, dtype, no_latency, time_budget, device, amp, channels_last,
          optimizer, repeat, warmup, fmt, out, no_save, name, decode, target):
    """Memory and latency of MODELS against batch size (as in Canziani et al. 2016 and
    Bianco et al. 2018). Writes reports/sweep_<conditions>.csv and .png unless --no-save.
    A batch that does not fit in memory (or is refused as too large) is recorded as such,
    with the rows measured before it, and ends that model's sweep.

    With --decode LIST: the context length is swept instead (at one batch: --batch-sizes B,
    default 1); writes reports/decode_<target>_<dtype>_b<batch>_n<first>-<last>_<models>.csv
    and .png. A context beyond a model's positions ends that model's rows with a note."""
    import pandas as pd

    from archcost.analysis import analyze
    from archcost.analysis.analyze import OutOfDeviceMemory
    from archcost.count.limits import is_out_of_memory
    from archcost.report.files import write_csv
    from archcost.report.tables import render

    if decode is not None:
        return _decode(ctx, models, decode, batch_sizes, target, dtype, fmt, out, no_save, name, input_size=input_size,
                       amp=amp, channels_last=channels_last)
    if target is not None:
        fail("--target applies to --decode (for a batch sweep's bound use `archcost roofline --target`)")
    names = resolve_models(models)
    sizes = parse_sizes(input_size, seq_len)
    batches = parse_batch_sizes(batch_sizes)
    folder = out_dir(out, no_save)
    device = run_device(device)
    rows = []
    # Each model's smallest batch first: its MACs then size the ETA of every later point
    # (a fixed cost, the time budget, plus a cost per MAC), then each model's larger batches.
    jobs = [(n, batches[0]) for n in names] + [(n, b) for n in names for b in batches[1:]]
    macs_per_sample = {}
    stopped, measured = set(), set()

    def work(job):
        return macs_per_sample[job[0]] * job[1] if job[0] in macs_per_sample else None

    with progress(jobs, "sweeping", lambda j: f"{j[0]} batch {j[1]}", work=work) as bar:
        for n, b in bar:
            if n in stopped:
                continue
            try:
                a = model_call(analyze, n, input_size=sizes, batch_size=b, dtype=dtype, device=device, amp=amp,
                               channels_last=channels_last, optimizer=optimizer, latency=not no_latency,
                               repeats=repeat, warmup=warmup, time_budget_s=time_budget)
            except (OutOfDeviceMemory, MemoryError, RuntimeError) as exc:
                if not isinstance(exc, OutOfDeviceMemory) and not is_out_of_memory(exc):
                    raise
                stopped.add(n)  # the rows measured so far are kept
                rows.append(pd.DataFrame([{"model": n, "batch_size": b, "note": "out of memory"}]))
                continue
            except user_errors() as exc:
                if n not in measured:  # the input itself is wrong: one line
                    fail(str(exc))
                stopped.add(n)  # a larger batch refused (e.g. beyond 2^40 elements): keep the rows so far
                rows.append(pd.DataFrame([{"model": n, "batch_size": b, "note": str(exc)}]))
                continue
            measured.add(n)
            macs_per_sample[n] = float(a.summary["macs"].iloc[0]) / b
            rows.append(a.summary.assign(note=""))
    frame = pd.concat(rows, ignore_index=True)
    order = {n: i for i, n in enumerate(names)}
    frame = frame.sort_values(["model", "batch_size"], key=lambda c: c.map(order) if c.name == "model" else c,
                              kind="stable", ignore_index=True)
    if "params" not in frame or frame["params"].isna().all():
        fail(f"no batch size of {batch_sizes} fits in {device} memory for {', '.join(names)}: "
             "try smaller --batch-sizes or --input-size")
    from archcost.report.spread import add_spread

    cols = ["model", "batch_size", "saved_bytes", "peak_bytes", "train_bytes"] + (
        [] if no_latency else ["latency_ms", "latency_spread", "images_per_s", "achieved_tflops"])
    spread = add_spread(frame)
    emit(render(frame, fmt, cols, notes=condition_notes(frame.dropna(subset=["params"]), not no_latency) + spread))
    if folder is not None:
        from archcost.report.files import file_set
        from archcost.report.naming import subset
        from archcost.report.plots import sweep as plot

        tag = conditions(device, dtype, amp, channels_last, f"{batches[0]}-{batches[-1]}", input_size=sizes,
                         optimizer=optimizer, extra=["nolatency" if no_latency else ""]) + subset(names, None, name)
        with file_set(folder):
            paths = [write_csv(folder / f"sweep_{tag}.csv", frame), folder / f"sweep_{tag}.png"]
            plot(frame, paths[1], sweep_title(frame.dropna(subset=["params"])), latency=not no_latency)
        wrote(paths)


def _decode(ctx, models, decode, batch_sizes, target, dtype, fmt, out, no_save, name, **others):
    from click.core import ParameterSource

    from archcost.cli.decoding import refuse_others, run_decode

    refuse_others(**others)
    batches = [1]
    if ctx.get_parameter_source("batch_sizes") is not ParameterSource.DEFAULT:
        batches = parse_batch_sizes(batch_sizes)
        if len(batches) != 1:
            fail(f"--decode sweeps the context at one batch: give one --batch-sizes value, not {batch_sizes!r}")
    contexts = parse_batch_sizes(decode, "--decode", "contexts")
    run_decode(resolve_models(models), contexts, target, dtype, batches[0], fmt, out_dir(out, no_save), name, "decode")
