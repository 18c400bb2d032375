"""The lineage's published accuracy next to its measured cost, one row per zoo model.

Accuracy is never measured here: it is the figure stored in each model's spec
(``Accuracy``: top-1, top-5, dataset, source). Its protocol is the source's kind (the
torchvision weights' recipe or the paper's own table) and the dataset named there;
rows with different protocols are not comparable point for point, so the plot marks
them apart."""

from __future__ import annotations

import pandas as pd

from archcost.analysis.analyze import analyze

COLUMNS = ["model", "family", "input_shape", "params", "macs", "peak_bytes", "train_bytes", "top1", "top5",
           "accuracy_dataset", "accuracy_source", "protocol"]


def protocol(dataset: str, source: str) -> str:
    kind = "torchvision weights" if source.lower().startswith("torchvision") else "paper"
    return f"{kind}, {dataset}"


def lineage_frame(names, batch_size: int = 1) -> pd.DataFrame:
    from archcost.zoo.registry import get_spec

    rows = []
    for n in names:
        spec = get_spec(n)
        s = analyze(n, batch_size=batch_size).row
        acc = spec.accuracy
        rows.append({"model": n, "family": spec.family, "input_shape": s["input_shape"],
                     "params": int(s["params"]), "macs": int(s["macs"]), "peak_bytes": int(s["peak_bytes"]),
                     "train_bytes": int(s["train_bytes"]), "top1": acc.top1, "top5": acc.top5,
                     "accuracy_dataset": acc.dataset, "accuracy_source": acc.source,
                     "protocol": protocol(acc.dataset, acc.source)})
    return pd.DataFrame(rows, columns=COLUMNS)
