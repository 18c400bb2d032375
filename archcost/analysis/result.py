"""``Analysis``: the frames one run produces (layers, summary, by operator), and how the
counting engine's records become them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pandas as pd
import torch

from archcost.analysis.partition import container_activations
from archcost.count.engine import PassResult
from archcost.count.inputs import dims

LAYER_COLUMNS = ["layer", "type", "depth", "is_leaf", "output_shape", "params", "self_params",
                 "macs", "self_macs", "activations", "activation_bytes", "aliased", "calls"]

MEMORY_LAYER_COLUMNS = ["saved_bytes", "self_saved_bytes", "peak_bytes"]

@dataclass
class Analysis:
    """``layers``: one row per module (execution order); ``summary``: one row for the model;
    ``by_operator``: MACs per operator and the operators that were not counted."""

    layers: pd.DataFrame
    summary: pd.DataFrame
    by_operator: pd.DataFrame
    device_paths: list = field(default_factory=list)  # ops whose kernels differ on meta
    macs_by_aten: dict = field(default_factory=dict)  # MACs by ATen op (crosscheck.py)
    ops: Optional[list] = None  # the engine's per-operator records (roofline bytes); None under fvcore
    conv_kinds: Optional[dict] = None  # module -> convolution class (roofline.latency.conv_kind), with ops

    @property
    def row(self) -> dict:
        return self.summary.iloc[0].to_dict()

    def __repr__(self) -> str:
        """One line (a notebook's or a REPL's echo), not the frames' thousands of cells."""
        s = self.row
        return (f"<Analysis {s['model']}: input {s['input_shape']}, params={int(s['params'])}, "
                f"macs={int(s['macs'])}, {len(self.layers)} layers; .summary .layers .by_operator>")

    def _repr_html_(self) -> str:
        """In a notebook: the summary row as a two-column table (raw values, as in the CSV)
        and the first layers; the frames hold the rest."""
        import html

        keys = [k for k in ("model", "input_shape", "batch_size", "dtype", "params", "macs", "flops",
                            "activation_bytes", "peak_bytes", "train_bytes", "latency_ms", "engine", "notes")
                if k in self.summary]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(self.row[k]))}"
                       "</td></tr>" for k in keys)
        head = self.layers[["layer", "type", "params", "macs", "output_shape"]].head(12)
        more = f"<p>{len(self.layers) - len(head)} more rows in <code>.layers</code></p>" \
            if len(self.layers) > len(head) else ""
        return (f"<b>Analysis of {html.escape(str(self.row['model']))}</b><table>{body}</table>"
                + head.to_html(index=False, escape=True) + more)

    def breakdown(self, depth: Optional[int] = None) -> pd.DataFrame:
        """Rows that partition the model: every leaf (or, with ``depth``, the modules at
        that depth and shallower leaves), plus an ``[own ops]`` row for each enclosing
        module whose own forward code runs counted ops (``F.adaptive_avg_pool2d`` in
        DenseNet's forward) or owns parameters directly. Their params and MACs sum to
        the model's totals."""
        ly = self.layers
        if depth is None:
            cut = ly["is_leaf"]
            above = ~ly["is_leaf"]
        else:
            cut = (ly["depth"] == depth) | (ly["is_leaf"] & (ly["depth"] < depth))
            above = ~ly["is_leaf"] & (ly["depth"] < depth)
        out = []
        for i, rec in enumerate(ly.to_dict("records")):
            own_saved = rec.get("self_saved_bytes", 0) or 0
            own_backward = rec.get("self_backward_macs", 0) or 0
            if above.iloc[i] and (rec["self_macs"] or rec["self_params"] or own_saved or own_backward):
                own = {**rec, "layer": f"{rec['layer']} [own ops]", "type": "functional",
                       "output_shape": "", "params": rec["self_params"], "macs": rec["self_macs"],
                       "activations": 0, "activation_bytes": 0, "is_leaf": False, "aliased": False}
                if "saved_bytes" in rec:
                    own.update(saved_bytes=own_saved, peak_bytes=float("nan"))
                if "backward_macs" in rec:
                    own["backward_macs"] = rec["self_backward_macs"]
                if "latency_ms" in rec:
                    own["latency_ms"] = float("nan")
                out.append(own)
            if cut.iloc[i] and rec["depth"] > 0:
                out.append(rec)
        rows = pd.DataFrame(out, columns=ly.columns)
        return rows if depth is None else container_activations(rows, ly)

def frames(name, spec, model, shapes, dtype, res: PassResult, engine) -> Analysis:
    recs = sorted(res.records.values(), key=lambda r: (r.order < 0, r.order))
    layers = pd.DataFrame([{c: getattr(r, c) for c in LAYER_COLUMNS} for r in recs],
                          columns=LAYER_COLUMNS)
    params = list({id(p): p for p in model.parameters()}.values())
    buffers = list({id(b): b for b in model.buffers()}.values())
    uncounted = "; ".join(f"{op} x{n}" for op, n in sorted(res.uncounted.items()))
    summary = pd.DataFrame([{
        "model": name,
        "family": spec.family if spec else "custom",
        "input_shape": ",".join("x".join(map(str, dims(s))) for s in shapes if dims(s)),
        "batch_size": (dims(shapes[0]) or (1,))[0] if shapes else 1,
        "dtype": str(dtype).replace("torch.", ""),
        "params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "param_bytes": sum(p.numel() * p.element_size() for p in params),
        "buffer_bytes": sum(b.numel() * b.element_size() for b in buffers),
        "macs": res.macs,
        "flops": 2 * res.macs,
        "activations": res.activations,
        "activation_bytes": res.activation_bytes,
        "uncounted_ops": uncounted,
        "engine": engine,
        "torch_version": torch.__version__,
    }])
    by_op = [{"operator": op, "macs": m, "calls_uncounted": 0} for op, m in res.macs_by_op.most_common()]
    by_op += [{"operator": op, "macs": 0, "calls_uncounted": n} for op, n in sorted(res.uncounted.items())]
    return Analysis(layers, summary, pd.DataFrame(by_op, columns=["operator", "macs", "calls_uncounted"]))
