"""The committed ``reports/train_memcheck.csv``: ``train_peak_bytes`` against the CPU
allocator's own events over the same training step, for the README's six models at batch 2
with SGD and with Adam. It runs, for each model and optimizer,

    archcost memory MODEL --train --batch-size 2 --optimizer OPT --format csv

(``checks.traincheck.compare_step``) in this process and writes the rows, with ``model`` and
``optimizer`` columns in front, to ``<out>/train_memcheck.csv`` in one atomic write. Real CPU
tensors: minutes on this project's 2-core machine (VGG16 with Adam is the longest).

    python bench/train_memcheck.py [--out reports] [--models lenet5 alexnet ...]
"""

import argparse
import os
import pathlib
import sys
import time

MODELS = ["lenet5", "alexnet", "vgg16", "googlenet", "resnet18", "resnet50"]
OPTIMIZERS = ["sgd", "adam"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args()
    import pandas as pd

    from archcost.checks.traincheck import compare_step
    from archcost.report.files import write_csv

    frames = []
    start = time.perf_counter()
    load = os.getloadavg()[0]
    for model in args.models:
        for optimizer in OPTIMIZERS:
            t = time.perf_counter()
            f = compare_step(model, batch_size=args.batch_size, optimizer=optimizer)
            f.insert(0, "optimizer", optimizer)
            f.insert(0, "model", model)
            frames.append(f)
            print(f"{model} {optimizer}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    path = write_csv(pathlib.Path(args.out) / "train_memcheck.csv", pd.concat(frames, ignore_index=True))
    print(f"wrote {path}: {time.perf_counter() - start:.0f} s wall on {os.cpu_count()} cores, load average "
          f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end", file=sys.stderr)


if __name__ == "__main__":
    main()
