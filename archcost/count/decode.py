"""What one generated token costs: a causal language model's decode step with N tokens in
its KV cache, beside the prefill of those N tokens.

Both are counted by the counting engine (``run_pass``) on ``meta`` tensors, so any context
length takes seconds and no memory: the prefill is the model's forward over N tokens, which
fills a Hugging Face ``DynamicCache`` with meta keys and values; the decode step is the
forward of one new token with that cache. Nothing here is a formula of the architecture:
MACs are the engine's (attention grows with the cache because the attention operator sees
keys and values of N + 1 tokens), cache bytes are the sizes of the tensors the cache holds.

How the Hugging Face cache was made to work on meta tensors (transformers 5.x): the cache is
not built by hand but by the prefill forward itself, so its layers, head counts (grouped
KV heads), head size and sliding windows are whatever the model's own attention stores.
``DynamicLayer.update`` concatenates on meta like on any device; the causal mask is built
from shapes (``cache_position`` is an ``arange``), so no value is ever read. The forward's
cache argument is ``cache`` in transformers 5.x and ``past_key_values`` before; the one the
forward declares is used. The prefill computes logits for its last token only
(``logits_to_keep=1``), as ``generate`` does.

The bytes model of one step (stated once): every weight is read once per step, the KV
cache is read once, and the new keys and values are written once; activations between
operators are taken to stay on chip (a fused decoder kernel). So ``bytes_read`` =
``weight_bytes_read`` + ``kv_read_bytes``, ``bytes_written`` = ``kv_written_bytes``: a floor for the step's
memory traffic, and at batch 1 a close one (the activations of one token are vectors).
Rules of ``weight_bytes_read``: parameters only, each storage once (a tied output layer and
embedding are one read); an embedding table that only a lookup uses is read at its looked-up
rows (batch x new tokens), since a lookup reads nothing else; buffers (causal-mask tables,
rotary frequencies) are left out, being computed or ignored by fused kernels.
The engine's per-operator records (``ops``) are kept too: they are the unfused eager run
(the cache rewritten by ``torch.cat`` every step, attention in its math decomposition,
embedding tables read whole), which the roofline code bounds as for any model.
"""

from __future__ import annotations

import inspect
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import List

import torch
import torch.nn as nn

from archcost.count.engine import OpRecord, run_pass
from archcost.errors import AnalysisError

ATTENTION = "scaled_dot_product_attention"


@dataclass
class TokenCost:
    """One forward of a causal LM: ``phase`` 'prefill' (``new_tokens`` = N, empty cache) or
    'decode' (one new token, N cached), per batch of ``batch_size`` sequences."""

    phase: str
    context: int  # N: tokens in the cache after a prefill, before a decode step
    batch_size: int
    new_tokens: int  # tokens per sequence this forward processes
    macs: int
    attention_macs: int  # the attention products (Q K^T, attention x V)
    weight_bytes_read: int  # weights read by this forward (rules in the module docstring)
    kv_cache_bytes: int  # the cache holding N tokens (what a decode step reads, a prefill writes)
    kv_read_bytes: int  # cache read: the N tokens' keys and values for a decode step, 0 for a prefill
    kv_written_bytes: int  # keys and values stored: N tokens' for a prefill, the new token's for a step
    uncounted: Counter = field(default_factory=Counter)
    ops: List[OpRecord] = field(default_factory=list, repr=False)  # the engine's, unfused

    @property
    def bytes_read(self) -> int:
        return self.weight_bytes_read + self.kv_read_bytes

    @property
    def bytes_written(self) -> int:
        return self.kv_written_bytes


def cache_argument(model: nn.Module) -> str:
    """The name under which ``model.forward`` takes a KV cache ('cache' in transformers 5.x,
    'past_key_values' before); an error for a model without one."""
    params = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    raise AnalysisError(f"{type(model).__name__} takes no KV cache: decode cost needs a causal language model "
                        "with one (hf:gpt2, hf:llama, or a Hugging Face *ForCausalLM)")


def causal_lm(model, dtype: torch.dtype = None) -> nn.Module:
    """A fresh causal LM on meta, built from ``model``'s configuration (or from ``model`` when
    it is a transformers configuration, as ``hf:`` names give), with its language-model head:
    a base model (``AutoModel``: GPT2Model, LlamaModel) becomes its ``AutoModelForCausalLM``,
    since the head's matrix product is part of every generated token's cost. Weights in
    ``dtype`` (default: the model's; float32 for a configuration). ``model`` itself is left
    as it is (a real model keeps its values)."""
    if isinstance(model, nn.Module):
        config = getattr(model, "config", None)
        if config is None or not hasattr(model, "get_output_embeddings"):
            raise AnalysisError(f"{type(model).__name__} is not a Hugging Face model: decode cost needs a causal "
                                "language model with a KV cache (hf:gpt2, hf:llama, ...)")
        cls = type(model) if model.get_output_embeddings() is not None else None
        dtype = dtype or next(model.parameters()).dtype
    elif hasattr(model, "model_type") and hasattr(model, "to_dict"):
        config, cls = model, None
    else:
        raise AnalysisError(f"{type(model).__name__} is neither a Hugging Face model nor its configuration: decode "
                            "cost needs a causal language model with a KV cache (hf:gpt2, hf:llama, ...)")
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        lm = _build(cls, config)
    return lm.to(dtype=dtype or torch.float32).eval()


def _ready(model, dtype) -> bool:
    """Whether ``model`` is already what ``causal_lm`` makes (so that a sweep builds it once):
    on meta, in eval mode, with its head, attention through SDPA, weights in ``dtype``."""
    if not isinstance(model, nn.Module) or model.training or getattr(model, "config", None) is None:
        return False
    first = next(model.parameters(), None)
    return (first is not None and first.device.type == "meta" and (dtype is None or first.dtype == dtype)
            and getattr(model.config, "_attn_implementation", None) == "sdpa"
            and model.get_output_embeddings() is not None)


def _build(cls, config) -> nn.Module:
    """``cls`` (or ``AutoModelForCausalLM``) from ``config``, with attention through
    F.scaled_dot_product_attention where the model offers it, so that the engine names its
    MACs (the "eager" implementation's matrix products count the same, as matmul)."""
    if cls is None:
        try:
            from transformers import AutoModelForCausalLM
        except ImportError as exc:
            raise AnalysisError(f"decode cost needs transformers ({exc}): pip install 'archcost[hf]'") from None
        make = AutoModelForCausalLM.from_config
    else:
        make = cls._from_config
    for attention in ({"attn_implementation": "sdpa"}, {}):
        try:
            return make(config, **attention)
        except ValueError as exc:  # no SDPA for this model, or no causal LM for this configuration
            reason = exc
    raise AnalysisError(f"no causal language model for {type(config).__name__} ({str(reason).splitlines()[0]}): "
                        "decode cost needs one with a KV cache (hf:gpt2, hf:llama, ...)")


def max_positions(model: nn.Module):
    """The longest context the configuration allows (``max_position_embeddings`` or GPT-2's
    ``n_positions``); None when it states none."""
    config = model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def weight_bytes_read(model: nn.Module, lookups: int) -> int:
    """Bytes of the parameters one forward reads: each storage once; a table owned only by
    ``nn.Embedding`` modules at ``lookups`` rows (its other rows are never touched)."""
    owners = {}
    for mod in model.modules():
        for p in mod.parameters(recurse=False):
            owners.setdefault(id(p), []).append(mod)
    total, seen = 0, set()
    for p in model.parameters():
        key = p.untyped_storage()._cdata if p.device.type != "meta" else id(p)
        if key in seen:
            continue
        seen.add(key)
        mods = owners.get(id(p), [])
        if mods and all(isinstance(m, nn.Embedding) for m in mods) and p.dim() == 2:
            total += min(lookups, p.shape[0]) * p.shape[1] * p.element_size()
        else:
            total += p.numel() * p.element_size()
    return total


def cache_bytes(cache) -> int:
    """Bytes of the keys and values a KV cache holds, every layer's (``cache.layers[i].keys``
    and ``.values`` in transformers 5.x, ``key_cache``/``value_cache`` lists before). A
    sliding-window layer holds its window (a view of fewer tokens): its elements count."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        found = [t for layer in layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))]
    else:
        found = list(getattr(cache, "key_cache", [])) + list(getattr(cache, "value_cache", []))
    return sum(t.numel() * t.element_size() for t in found if isinstance(t, torch.Tensor))


def _count_writes(cache) -> list:
    """Make ``cache.update`` (the one way attention stores keys and values) add the bytes of
    the key and value states it is given to the returned one-element list."""
    written = [0]
    update = cache.update

    def counting(key_states, value_states, *args, **kwargs):
        written[0] += (key_states.numel() + value_states.numel()) * key_states.element_size()
        return update(key_states, value_states, *args, **kwargs)

    cache.update = counting
    return written


def _output_cache(out, name):
    for key in (name, "cache", "past_key_values"):
        cache = getattr(out, key, None) if not isinstance(out, dict) else out.get(key)
        if cache is not None:
            return cache
    raise AnalysisError("the model's forward returned no KV cache (use_cache=True): decode cost needs one")


def _attention_macs(result) -> int:
    return int(result.macs_by_op.get(ATTENTION, 0))


def count_decode(model: nn.Module, context: int, batch_size: int = 1, dtype: torch.dtype = None):
    """-> (prefill, decode) ``TokenCost`` of a causal LM at ``context`` N: the prefill of N
    tokens and the generation of token N + 1 with N cached, on meta tensors (a copy built from
    the model's configuration: see ``causal_lm``). ``dtype``: of the weights and so of the
    cache (default: the model's)."""
    if context < 1 or batch_size < 1:
        raise AnalysisError(f"context {context} and batch {batch_size} must be positive integers")
    lm = model if _ready(model, dtype) else causal_lm(model, dtype)
    name = cache_argument(lm)
    longest = max_positions(lm)
    if longest is not None and context + 1 > longest:
        raise AnalysisError(f"context {context} + 1 new token exceeds the {longest} positions of "
                            f"{type(lm).__name__}'s configuration: use a context up to {longest - 1}")
    params = inspect.signature(lm.forward).parameters
    keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    tokens = torch.zeros(batch_size, context, dtype=torch.long, device="meta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecations of transformers' own arguments
        pre = run_pass(lm, (tokens,), dict(use_cache=True, **keep), record_ops=True)
        cache = _output_cache(pre.output, name)
        kv = cache_bytes(cache)
        written = _count_writes(cache)
        step = run_pass(lm, (tokens[:, :1],), {name: cache, "use_cache": True}, record_ops=True)
    prefill_weights = weight_bytes_read(lm, batch_size * context)
    decode_weights = weight_bytes_read(lm, batch_size)
    prefill = TokenCost("prefill", context, batch_size, context, pre.macs, _attention_macs(pre), prefill_weights,
                        kv, 0, kv, pre.uncounted, pre.ops)
    decode = TokenCost("decode", context, batch_size, 1, step.macs, _attention_macs(step), decode_weights, kv, kv,
                       written[0], step.uncounted, step.ops)
    return prefill, decode
