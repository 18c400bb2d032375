"""Decode cost of causal language models (issue #23, item 4), by formula from the architecture.

A GPT-2-shaped model (L layers, H heads of size E = d / H, vocabulary V, P positions) costs,
per token, its weights' MACs -- per layer the fused QKV projection 3d^2, the output
projection d^2 and the MLP 4d^2 + 4d^2, then the LM head d*V -- plus two layer norms per
layer and a final one at fvcore's 5 MACs an element, plus attention: the new token's query
against the N cached keys and its own, Q K^T and attention x V, H*(N+1)*(E+Ev) per layer.
Its KV cache holds keys and values of N tokens: 2*L*N*H*E elements.
"""

import sys
import types

import pytest
import torch

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
transformers = pytest.importorskip("transformers")

from archcost.count.decode import count_decode  # noqa: E402
from archcost.devices.table import by_key  # noqa: E402
from archcost.errors import AnalysisError  # noqa: E402
from archcost.roofline import bounds  # noqa: E402
from archcost.analysis.decode import decode_frame  # noqa: E402
from archcost.roofline.decode import COLUMNS  # noqa: E402

L, H, D, V, P = 2, 4, 32, 96, 64
E = D // H
NORM = 5  # fvcore's layer-norm rule: 5 MACs an element with affine weights


def gpt2(**kw):
    config = transformers.GPT2Config(n_layer=L, n_head=H, n_embd=D, vocab_size=V, n_positions=P,
                                     bos_token_id=0, eos_token_id=0, **kw)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(config)


def llama(kv_heads=2, ff=80):
    config = transformers.LlamaConfig(num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=kv_heads,
                                      hidden_size=D, intermediate_size=ff, vocab_size=V,
                                      max_position_embeddings=P, bos_token_id=0, eos_token_id=0)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(config)


GPT2_WEIGHT_MACS = L * (3 * D * D + D * D + 4 * D * D + 4 * D * D) + D * V  # per token
GPT2_NORM_MACS = NORM * D * (2 * L + 1)  # per token
# parameters: token and position tables, per layer 12d^2 + 13d (weights, biases, two norms), a final norm
GPT2_PARAMS = V * D + P * D + L * (12 * D * D + 13 * D) + 2 * D


@pytest.mark.parametrize("n", [1, 7, 40])
def test_gpt2_decode_macs_and_kv_bytes_by_formula(n):
    prefill, decode = count_decode(gpt2(), n)
    attention = L * H * (n + 1) * (E + E)
    assert decode.attention_macs == attention
    assert decode.macs == GPT2_WEIGHT_MACS + GPT2_NORM_MACS + attention
    assert decode.kv_cache_bytes == 2 * L * n * H * E * 4
    assert decode.bytes_written == 2 * L * 1 * H * E * 4  # the new token's keys and values
    # every weight once; the position table (an embedding only looked up) at one row; the
    # token table is tied to the LM head, which reads it whole
    assert decode.weight_bytes_read == 4 * (GPT2_PARAMS - (P - 1) * D)
    assert decode.kv_read_bytes == decode.kv_cache_bytes  # the whole cache, once
    assert decode.bytes_read == decode.weight_bytes_read + decode.kv_cache_bytes


def test_gpt2_prefill_by_formula():
    n = 9
    prefill, _ = count_decode(gpt2(), n)
    # every token through every layer and the final norm; the LM head on the last token only
    # (logits_to_keep=1, as generate does); attention over the full N x N square (the
    # operator's count whatever the causal mask hides, as for any attention)
    per_token = GPT2_WEIGHT_MACS - D * V + GPT2_NORM_MACS
    assert prefill.macs == n * per_token + D * V + L * H * n * n * (E + E)
    assert prefill.new_tokens == n
    assert prefill.bytes_written == prefill.kv_cache_bytes == 2 * L * n * H * E * 4
    assert prefill.bytes_read == 4 * (GPT2_PARAMS - (P - n) * D)  # n rows of the position table


def test_decode_grows_by_attention_alone():
    small, large = count_decode(gpt2(), 10)[1], count_decode(gpt2(), 50)[1]
    assert large.macs - small.macs == L * H * (50 - 10) * (E + E)
    assert large.bytes_read - small.bytes_read == 2 * L * (50 - 10) * H * E * 4


@pytest.mark.parametrize("dtype,size", [(torch.bfloat16, 2), (torch.float16, 2), (torch.float32, 4)])
def test_bytes_follow_dtype(dtype, size):
    n = 12
    _, decode = count_decode(gpt2(), n, dtype=dtype)
    assert decode.kv_cache_bytes == 2 * L * n * H * E * size
    assert decode.weight_bytes_read == size * (GPT2_PARAMS - (P - 1) * D)


def test_batch_scales_tokens_not_weights():
    n, b = 6, 3
    _, decode = count_decode(gpt2(), n, batch_size=b)
    attention = b * L * H * (n + 1) * (E + E)
    assert decode.macs == b * (GPT2_WEIGHT_MACS + GPT2_NORM_MACS) + attention
    assert decode.kv_cache_bytes == b * 2 * L * n * H * E * 4
    assert decode.weight_bytes_read == 4 * (GPT2_PARAMS - (P - b) * D)  # b rows of the position table


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_llama_grouped_query_attention(kv_heads):
    ff, n = 80, 11
    _, decode = count_decode(llama(kv_heads, ff), n)
    # q and o: d x d; k and v: d x (kv_heads * E); gated MLP: three d x ff; untied LM head d x V.
    # RMSNorm runs as pow/mean/rsqrt/mul, which have no MAC rule (reported as uncounted).
    weights = L * (2 * D * D + 2 * D * kv_heads * E + 3 * D * ff) + D * V
    attention = L * H * (n + 1) * (E + E)  # every query head attends, whatever the KV heads
    assert decode.attention_macs == attention
    assert decode.macs == weights + attention
    assert decode.kv_cache_bytes == 2 * L * n * kv_heads * E * 4  # fewer KV heads: a smaller cache
    # the token table is not tied: read at the one looked-up row; norms: 2 per layer + 1 of d
    params = V * D + L * (2 * D * D + 2 * D * kv_heads * E + 3 * D * ff + 2 * D) + D + D * V
    assert decode.weight_bytes_read == 4 * (params - (V - 1) * D)
    assert "mean" in decode.uncounted


def test_base_model_gets_its_head_and_is_left_alone():
    config = transformers.GPT2Config(n_layer=L, n_head=H, n_embd=D, vocab_size=V, n_positions=P,
                                     bos_token_id=0, eos_token_id=0)
    base = transformers.AutoModel.from_config(config)  # real CPU weights, no LM head
    _, decode = count_decode(base, 5)
    assert decode.macs == GPT2_WEIGHT_MACS + GPT2_NORM_MACS + L * H * 6 * (E + E)
    assert base.wte.weight.device.type == "cpu"  # counted on a meta copy


def test_refusals_are_one_line():
    with pytest.raises(AnalysisError, match=f"up to {P - 1}"):
        count_decode(gpt2(), P)
    with pytest.raises(AnalysisError, match="positive"):
        count_decode(gpt2(), 0)
    with pytest.raises(AnalysisError, match="not a Hugging Face model"):
        count_decode(torch.nn.Linear(2, 2), 4)


def test_decode_is_memory_bound_on_a_gpu():
    dev = by_key("h100-sxm")
    roof = bounds.Roof(dev.name, "bfloat16", dev.peak_flops("bfloat16"), dev.bandwidth_bytes_per_s)
    rows = decode_frame([gpt2()], [8, 32], roof, dtype=torch.bfloat16).to_dict("records")
    assert [(r["phase"], r["context"]) for r in rows] == [("prefill", 8), ("decode", 8), ("prefill", 32),
                                                          ("decode", 32)]
    assert all(list(r) == COLUMNS + ["uncounted_ops", "note"] for r in rows)
    assert all(r["uncounted_ops"].startswith("add x") for r in rows)  # GELU's and residuals' element-wise ops
    for r in rows:
        moved = r["weight_bytes_read"] + r["kv_read_bytes"] + r["kv_written_bytes"]
        assert r["bytes_moved"] == moved
        assert r["flops"] == 2 * r["macs"]
        assert r["arithmetic_intensity"] == r["flops"] / moved
        assert r["step_bound_ms"] == pytest.approx(max(r["flops"] / roof.peak_flops, moved / roof.bandwidth) * 1e3)
        assert r["bound_per_token_ms"] == pytest.approx(r["step_bound_ms"] / (r["batch_size"] * r["new_tokens"]))
        # the eager run moves at least the floor: the whole token table, the cache rewritten by cat
        assert r["unfused_bytes_moved"] >= moved
    for r in (r for r in rows if r["phase"] == "decode"):
        # one MAC per weight read (2 bytes): at most 1 FLOP/byte, far below the H100's ridge
        assert r["arithmetic_intensity"] < 1 < roof.ridge
        assert r["bound"] == "memory"
    decode8, decode32 = rows[1], rows[3]
    assert decode32["step_bound_ms"] > decode8["step_bound_ms"]  # the cache grows


def test_decode_sweep_plot(tmp_path):
    from archcost.report.plots_decode import decode_sweep

    dev = by_key("a100-80gb")
    roof = bounds.Roof(dev.name, "float32", dev.peak_flops("tf32"), dev.bandwidth_bytes_per_s)
    frame = decode_frame([gpt2(), llama()], [4, 16, 63], roof)
    target = tmp_path / "decode.png"
    decode_sweep(frame, target, "tiny models")
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_configuration_is_enough_and_an_encoder_is_refused():
    config = transformers.GPT2Config(n_layer=L, n_head=H, n_embd=D, vocab_size=V, n_positions=P,
                                     bos_token_id=0, eos_token_id=0)
    _, decode = count_decode(config, 5)  # as hf:gpt2 gives it: float32, the LM head added
    assert decode.macs == GPT2_WEIGHT_MACS + GPT2_NORM_MACS + L * H * 6 * (E + E)
    assert decode.kv_cache_bytes == 2 * L * 5 * H * E * 4
    bert = transformers.BertConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32)
    with pytest.raises(AnalysisError, match="no causal language model|KV cache"):
        count_decode(bert, 4)


def test_sliding_window_cache_holds_its_window():
    # Mistral's layers attend to the last W tokens: its cache keeps W - 1 (the new token is
    # the W-th), so past the window the cache and the attention stop growing
    w, kv_heads = 8, 2
    config = transformers.MistralConfig(num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=kv_heads,
                                        hidden_size=D, intermediate_size=64, vocab_size=V, sliding_window=w,
                                        max_position_embeddings=P, bos_token_id=0, eos_token_id=0)
    short, long = count_decode(config, 5)[1], count_decode(config, 30)[1]
    assert short.kv_cache_bytes == 2 * L * 5 * kv_heads * E * 4
    assert short.attention_macs == L * H * 6 * (E + E)
    assert long.kv_cache_bytes == 2 * L * (w - 1) * kv_heads * E * 4
    assert long.attention_macs == L * H * w * (E + E)
    assert long.bytes_written == short.bytes_written == 2 * L * kv_heads * E * 4  # the new token's, either way


def test_torch_flop_counter_agrees_on_a_real_decode_step():
    # Independent of archcost's engine and of meta tensors: a real CPU model prefills n tokens,
    # then torch.utils.flop_counter counts one decode step (eager attention, whose matrix
    # products it counts; 2 FLOPs per MAC; it has no rule for layer norms).
    from torch.utils.flop_counter import FlopCounterMode

    n = 7
    config = transformers.GPT2Config(n_layer=L, n_head=H, n_embd=D, vocab_size=V, n_positions=P,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    tokens = torch.randint(0, V, (1, n))
    with torch.no_grad():
        cache = model(tokens, use_cache=True).cache
        assert cache.get_seq_length() == n
        with FlopCounterMode(display=False) as counter:
            model(tokens[:, :1], cache=cache, use_cache=True)
    _, decode = count_decode(model, n)
    assert counter.get_total_flops() == 2 * (decode.macs - GPT2_NORM_MACS)
