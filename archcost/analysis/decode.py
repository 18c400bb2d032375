"""The cost of generated tokens by model name: a decode step at each context length beside
the prefill of that context, bounded on a target (``archcost table --decode N``,
``archcost sweep --decode LIST``). Conditions in, a frame out; the counting is
``archcost.count.decode``'s, the bound ``archcost.roofline.decode``'s."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from archcost.errors import AnalysisError

COUNTS = ("context", "batch_size", "new_tokens", "macs", "attention_macs", "flops", "weight_bytes_read",
          "kv_cache_bytes", "kv_read_bytes", "kv_written_bytes", "bytes_moved", "unfused_bytes_moved")
NO_CACHE = ("decode cost needs a causal language model with a KV cache (hf:gpt2, hf:llama, a Hugging Face "
            "config.json as hf:path/config.json, or a file.py:builder returning a *ForCausalLM or its config)")


def decode_model(ref):
    """What ``count_decode`` takes for a model reference: an ``hf:`` name's transformers
    configuration (the model is built from it, on meta, with its LM head), the model or
    configuration a ``file.py:builder`` returns, or a model or configuration given as is.
    A zoo name (the CNN lineage) is refused: it has no KV cache."""
    if not isinstance(ref, str):
        return ref
    from archcost.zoo.sources import resolve_model

    name, spec, builder, module = resolve_model(ref, {})
    config = getattr(spec, "config", None)  # an hf: source
    if config is not None:
        return config
    if module is not None:
        return module
    if spec is not None:
        raise AnalysisError(f"{name} has no KV cache: {NO_CACHE}")
    return builder()


def decode_frame(models: Iterable, contexts: Iterable[int], roof, batch_size: int = 1, dtype=None,
                 on_context: Optional[Callable[[str, int], None]] = None):
    """One row per model, context N and phase (the prefill of N tokens, then the decode step
    with N cached), in ``archcost.roofline.decode.COLUMNS`` plus ``uncounted_ops`` (operators
    without a MAC rule, with their calls) and ``note``. A context beyond
    a model's positions ends that model's rows with a note row (the rows before it are kept);
    when it is the model's first context, it is the user's error and raised."""
    import pandas as pd
    import torch

    from archcost.count.decode import causal_lm, count_decode
    from archcost.roofline.decode import COLUMNS, bound_cost

    kind = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    contexts = sorted(set(contexts))
    rows = []
    for ref in models:
        name = ref if isinstance(ref, str) else type(ref).__name__
        lm = causal_lm(decode_model(ref), kind)  # built once, on meta
        element = str(next(lm.parameters()).dtype).replace("torch.", "")
        for i, n in enumerate(contexts):
            try:
                costs = count_decode(lm, n, batch_size)
            except AnalysisError as exc:
                if i == 0:
                    raise
                rows.append({"model": name, "context": n, "batch_size": batch_size, "uncounted_ops": "",
                             "note": str(exc)})
                break
            rows += [{"model": name, "dtype": element, **bound_cost(c, roof), "note": "",
                      "uncounted_ops": "; ".join(f"{op} x{k}" for op, k in sorted(c.uncounted.items()))}
                     for c in costs]
            if on_context is not None:
                on_context(name, n)
    frame = pd.DataFrame(rows, columns=COLUMNS + ["uncounted_ops", "note"])
    for column in COUNTS:  # exact integers, empty on a note row (not floats: 1.2e10)
        frame[column] = pd.array([r.get(column) for r in rows], dtype="Int64")
    return frame
