"""`archcost devices`: the one device table."""

import click

from archcost.cli.app import main
from archcost.cli.common import FORMATS, emit


def _cpu_peak() -> str:
    from archcost.devices.cpu_facts import read_facts

    return read_facts().describe("float32")


@main.command("devices")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
def devices_cmd(fmt):
    """The device table: dense datasheet peaks per dtype, memory bandwidth and memory, with
    sources. Every command (roofline --target, fit --memory, table --target) takes these
    names and the short aliases listed under the table."""
    import pandas as pd

    from archcost.devices import table as devices
    from archcost.report.clean import strict_json
    from archcost.roofline import calibrate
    from archcost.report.tables import render

    frame = pd.DataFrame(devices.rows())
    if fmt in ("csv", "json"):
        emit(frame.to_csv(index=False) if fmt == "csv" else strict_json(frame.to_dict("records")))
        return
    show = frame.assign(**{c: frame[c].map(lambda v: "-" if v is None or v != v else f"{v:g}")
                           for c in frame.columns if c.endswith("_tflops") or c == "bandwidth_gbs"},
                        **{c: frame[c].map(lambda v: "-" if v is None or v != v else f"{v:.0f}")
                           for c in ("ridge_float32_conv", "ridge_float32_matmul")},
                        memory_gib=frame["memory_bytes"].map(lambda v: "-" if v is None or v != v else f"{v / 2**30:g}"),
                        usable_gib=[("-" if v is None or v != v else f"{v / 2**30:.2f}" + ("" if k == "exact" else "*"))
                                    for v, k in zip(frame["usable_bytes"], frame["usable_kind"])])
    cols = ["target", "name", "float32_tflops", "tf32_tflops", "float16_tflops", "bfloat16_tflops", "bandwidth_gbs",
            "ridge_float32_conv", "ridge_float32_matmul", "memory_gib", "usable_gib", "compute_capability"]
    text = render(show, fmt, cols).split("\n\ncolumns:")[0].split("\n\n- ")[0]
    cached = calibrate.cached()
    notes = ["", "TFLOP/s dense (no sparsity), FLOPs = 2 x MACs; float16/bfloat16 tensor cores with FP32 "
             "accumulate; bandwidth in GB/s (10^9 bytes/s); ridge_float32_conv / _matmul: FLOP/byte "
             "where a float32 convolution / matrix product turns compute-bound at torch's defaults (convolutions "
             "as TF32 where the GPU has it, cudnn.allow_tf32; products at FP32, cuda.matmul.allow_tf32 off; "
             "--tf32 on puts products at TF32 too).",
             "cpu: this machine, measured (--target cpu): "
             + (cached.describe() if cached else "not calibrated yet (or the last run was too noisy to keep); "
                "`archcost roofline MODEL --target cpu` measures it"),
             "cpu hardware peak (modelled from its facts): " + _cpu_peak(),
             "memory_gib: nominal capacity (GiB); '-' peaks: no sourced datasheet figure is stored, so fit takes "
             "the device and roofline does not.",
             "usable_gib: the total the CUDA driver reports (what the context and the allocator share; fit --memory "
             "NAME budgets it less the context); *: not sourced for this card, an upper bound (nvidia-smi's total, "
             "or the nominal size), see usable_source in --format csv.",
             "short names: " + ", ".join(f"{a} = {k}" for a, k in devices.ALIASES.items()),
             "", "sources:"] + [f"  {d.key}: " + "; ".join(x for x in (d.source, d.bandwidth_source and "bandwidth: "
                                + d.bandwidth_source, "memory: " + d.memory_source) if x) for d in devices.DEVICES]
    notes += [f"  {r['target']} usable: {r['usable_source']}" for r in devices.rows() if r["usable_kind"] == "exact"]
    emit(text.rstrip("\n") + "\n" + "\n".join(notes) + "\n")
