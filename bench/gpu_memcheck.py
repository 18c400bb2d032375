"""The device ledger against a real GPU (issue #20): predicted max_memory_allocated,
max_memory_reserved and driver-used memory next to torch.cuda's figures, for zoo models and
ten networks of other families, inference and one training step.

    python bench/gpu_memcheck.py [--device cuda|cpu] [--dry-run] [--gpu t4] [--batch 8] [--out reports]

On ``cuda`` the prediction is for the GPU in the machine (its compute capability, and the
total the driver reports as its usable memory); each model runs in a fresh allocator state
(``empty_cache``, cuBLAS workspaces cleared, peak statistics reset), two passes (two
inference forwards, or two training steps after the optimizer's state exists), and the
figures are read after the second: ``max_memory_allocated``, ``max_memory_reserved`` and
``mem_get_info``'s total - free.

``--dry-run`` (or ``--device cpu``) runs everything but the CUDA calls: the prediction for
``--gpu``, and the measuring path itself (the model built on the CPU, the same two passes)
with no CUDA statistics to read, so the measured columns stay empty. It is what a session
without a GPU runs to know the GPU run cannot fail on a trivial mistake
(``tests/test_gpu_memcheck.py``). A model that fails (out of memory, a missing library) is
a row with its error in ``notes``; the others still run. The CSV is rewritten after every
row, atomically: ``reports/gpu_memcheck_<device>.csv`` (device: the GPU's name, or ``cpu``).
"""

import argparse
import sys
import types

ZOO = ["alexnet", "vgg16", "resnet50", "googlenet", "densenet121", "mobilenet_v2", "se_resnet50", "xception",
       "resnext50_32x4d"]
# Ten networks of other families (torchvision builders, no weights).
OTHERS = ["convnext_tiny", "efficientnet_b0", "vit_b_16", "swin_t", "mobilenet_v3_small", "regnet_y_400mf",
          "shufflenet_v2_x1_0", "squeezenet1_1", "mnasnet1_0", "maxvit_t"]
COLUMNS = ["model", "family", "mode", "batch_size", "dtype", "optimizer", "device", "compute_capability", "torch",
           "predicted_tensors_bytes", "predicted_max_memory_allocated", "measured_max_memory_allocated",
           "predicted_max_memory_reserved", "measured_max_memory_reserved", "predicted_driver_used_bytes",
           "measured_driver_used_bytes", "allocated_relative_error", "reserved_relative_error",
           "driver_used_relative_error", "notes"]


def _torchvision():
    # torchvision's wheel is a CUDA build: its meta registrations fail to import on a CPU torch.
    import torch

    if not torch.cuda.is_available():
        sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision.models as tvm

    return tvm


def _builder(name):
    """(family, builder, input shape without batch)."""
    from archcost.zoo.sources import resolve_model

    if name in OTHERS:
        tvm = _torchvision()
        return "torchvision", lambda: getattr(tvm, name)(), (3, 224, 224)
    _, spec, builder, _ = resolve_model(name, {})
    return "zoo", builder, tuple(spec.input_size)


def _target(device, gpu_name):
    import torch

    from archcost.memory.ledger import Gpu, gpu

    if device != "cuda":
        g = gpu(gpu_name)
        if g is None:
            raise SystemExit(f"--gpu {gpu_name!r} is not a GPU with memory facts (archcost/devices/memory_facts.py)")
        return g
    free, total = torch.cuda.mem_get_info()
    return Gpu(torch.cuda.get_device_name(), torch.cuda.get_device_capability(), total, total, "exact",
               "the total this GPU's driver reports (torch.cuda.mem_get_info)")


def _fresh():
    import gc

    import torch

    gc.collect()  # a training step's references (optimizer, hooks) may sit in cycles
    torch.cuda.synchronize()
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear:
        clear()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def _measure(builder, shape, batch, train, optimizer, device="cuda"):
    """Two passes on ``device``; on CUDA (max_memory_allocated, max_memory_reserved, total - free),
    elsewhere (a dry run) the same passes and (None, None, None)."""
    import torch

    from archcost.count.build import build
    from archcost.memory.training import TrainingStep

    cuda = device == "cuda"
    if cuda:
        _fresh()
    model = build(builder, device, torch.float32)
    x = (torch.randn(batch, *shape, device=device),)
    if train:
        step = TrainingStep(model, optimizer)
        for _ in range(2):
            step.run(x)
        del step
    else:
        model.eval()
        with torch.no_grad():
            for _ in range(2):
                model(*x)
    del model, x
    if not cuda:
        return None, None, None
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    got = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved(), total - free
    _fresh()
    return got


def _row(name, mode, args, target, device):
    """One row: the ledger's prediction, and the measurement on ``device``."""
    import torch

    from archcost.count.build import build
    from archcost.memory.ledger import ledger

    train = mode == "train"
    family, builder, shape = _builder(name)
    meta = build(builder, "meta", torch.float32)
    x = (torch.empty(args.batch, *shape, device="meta"),)
    L = ledger(meta, x, target, train=train, optimizer=args.optimizer)
    measured = _measure(builder, shape, args.batch, train, args.optimizer, device)
    pred = (L.max_memory_allocated_bytes, L.max_memory_reserved_bytes, L.driver_used_bytes)
    dry = ["dry run: no GPU, predicted only (the measuring passes ran on the CPU)"] if device != "cuda" else []
    return {"family": family, "compute_capability": "%d.%d" % tuple(target.compute_capability),
            "predicted_tensors_bytes": L.part("tensors"),
            "predicted_max_memory_allocated": pred[0], "measured_max_memory_allocated": measured[0],
            "predicted_max_memory_reserved": pred[1], "measured_max_memory_reserved": measured[1],
            "predicted_driver_used_bytes": pred[2], "measured_driver_used_bytes": measured[2],
            "allocated_relative_error": _rel(pred[0], measured[0]),
            "reserved_relative_error": _rel(pred[1], measured[1]),
            "driver_used_relative_error": _rel(pred[2], measured[2]), "notes": "; ".join(dry + L.notes)}


def _rel(pred, meas):
    return (pred - meas) / meas if meas else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run (as --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="everything but the CUDA calls, on the CPU")
    p.add_argument("--gpu", default="t4", help="the GPU predicted for in a dry run")
    p.add_argument("--models", nargs="*", default=ZOO)
    p.add_argument("--others", nargs="*", default=OTHERS)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--modes", nargs="+", default=["inference", "train"], choices=["inference", "train"])
    p.add_argument("--out", default="reports")
    args = p.parse_args(argv)
    device = "cpu" if args.dry_run else args.device

    import pandas as pd
    import torch

    from archcost.devices import slug
    from archcost.report.files import ensure_dir, write_csv

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run with --dry-run (everything but the CUDA calls, on the CPU)")
    target = _target(device, args.gpu)
    ensure_dir(args.out)
    out = f"{args.out}/gpu_memcheck_{slug(device)}.csv"
    rows, failed = [], 0
    for name in [*args.models, *args.others]:
        for mode in args.modes:
            row = {"model": name, "family": "", "mode": mode, "batch_size": args.batch, "dtype": "float32",
                   "optimizer": args.optimizer if mode == "train" else "", "device": target.key,
                   "torch": torch.__version__}
            try:
                row.update(_row(name, mode, args, target, device))
            except Exception as exc:  # noqa: BLE001 - one model's failure is a row, the run goes on
                failed += 1
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                row["notes"] = f"failed: {type(exc).__name__}: {msg[:300]}"
            if device == "cuda":
                _fresh()  # after the except block: its traceback no longer holds the failed model
            rows.append(row)
            write_csv(out, pd.DataFrame(rows, columns=COLUMNS))
            pa, pr, ma = (row.get(k) for k in ("predicted_max_memory_allocated", "predicted_max_memory_reserved",
                                                "measured_max_memory_allocated"))
            print(f"{name:20s} {mode:9s} " + (row["notes"] if pa is None else
                  f"predicted allocated {pa / 2**20:9.1f} MiB reserved {pr / 2**20:9.1f} MiB"
                  + (f"  measured {ma / 2**20:9.1f} / {row['measured_max_memory_reserved'] / 2**20:9.1f} MiB"
                     if ma else "")), flush=True)
    print(f"wrote {out}" + (f" ({failed} of {len(rows)} rows failed: see notes)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
