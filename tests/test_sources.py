"""Model sources: timm:NAME, torchvision:NAME (tv:), hf:TYPE or hf:config.json, in every
command, with the library's default input, never a download.

Small configurations: timm's own test models (``test_vit``: 6 blocks of width 64 at 160x160,
its pretrained_cfg's size) and Hugging Face configs of width 32 written to a local config.json.
"""

import json
import sys
import types

import pytest

if "torchvision" not in sys.modules:  # torchvision's CUDA wheel beside a CPU torch (see tests/conftest.py)
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from archcost.zoo import sources  # noqa: E402
from archcost.zoo.sources import DEFAULT_SEQ_LEN, MissingLibrary, SourceError, TokenInput  # noqa: E402

# --- the models and their formulas -------------------------------------------------------------


def vit_macs(m, size):
    """timm ViT (class token, token pooling) at a square ``size``: patch conv + per block
    qkv, proj, fc1, fc2 (N*D*(3D + D + 2*hidden)), attention's two products (2*N^2*D),
    two layer norms (5 per element, fvcore's rule) + the final norm + the head on one token."""
    d, p = m.embed_dim, m.patch_embed.patch_size[0]
    patches = (size // p) ** 2
    n = patches + m.num_prefix_tokens
    hidden = m.blocks[0].mlp.fc1.out_features
    block = n * d * (3 * d + d + 2 * hidden) + 2 * n * n * d + 2 * 5 * n * d
    return d * 3 * p * p * patches + len(m.blocks) * block + 5 * n * d + d * m.head.out_features


def gpt2_macs(c, t):
    """GPT-2 without its LM head, one sequence of t tokens: per layer c_attn (3E^2), c_proj (E^2),
    the MLP (2 * 4E^2) per token, attention's two products 2*T^2*E, two layer norms; + ln_f."""
    e, layers = c.n_embd, c.n_layer
    return layers * (12 * t * e * e + 2 * t * t * e + 2 * 5 * t * e) + 5 * t * e


@pytest.fixture(scope="module")
def test_vit():
    return timm.create_model("test_vit", pretrained=False)


@pytest.fixture(scope="module")
def gpt2_config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    config = transformers.AutoConfig.for_model("gpt2", n_layer=2, n_embd=32, n_head=2, vocab_size=100,
                                               n_positions=64, bos_token_id=0, eos_token_id=0)
    config.save_pretrained(folder)
    return config, folder / "config.json"


# --- naming and resolving ------------------------------------------------------------------------


def test_timm_name_takes_its_pretrained_cfg_input(test_vit):
    s = sources.resolve("timm:test_vit")
    assert s.ref == "timm:test_vit" and s.library == "timm"
    assert s.input_size == tuple(timm.get_pretrained_cfg("test_vit").input_size)
    built = s.build()
    assert sum(p.numel() for p in built.parameters()) == sum(p.numel() for p in test_vit.parameters())
    assert s.family == "vision_transformer"


def test_nothing_is_downloaded(monkeypatch):
    import torch.hub
    import timm.models._builder as builder

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(builder, "load_pretrained", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    sources.resolve("timm:test_vit").build()
    sources.resolve("tv:resnet18").build()
    # a detection builder's backbone defaults to ImageNet weights: weights_backbone=None too
    sources.resolve("tv:fasterrcnn_mobilenet_v3_large_320_fpn").build()
    sources.resolve("tv:deeplabv3_resnet50").build()


def test_torchvision_sizes_are_its_documented_ones():
    from torchvision.models import get_model_weights

    s = sources.resolve("tv:resnet18")
    assert s.ref == "torchvision:resnet18"  # tv: is short for torchvision:
    crop = get_model_weights("resnet18").IMAGENET1K_V1.transforms.keywords["crop_size"]
    assert s.input_size == (3, crop, crop)
    # a ViT built with weights=None fixes its own image size, whatever its default weights' size
    vit = sources.resolve("torchvision:vit_h_14")
    assert vit.input_size == (3, vit.build().image_size, vit.build().image_size)
    video = sources.resolve("tv:r3d_18")
    h, w = get_model_weights("r3d_18").DEFAULT.transforms.keywords["crop_size"]
    assert video.input_size == (3, sources.VIDEO_FRAMES, h, w)
    assert sources.resolve("tv:fasterrcnn_resnet50_fpn").input_size is None


def test_hf_type_takes_its_config_defaults():
    s = sources.resolve("hf:gpt2")
    default = transformers.GPT2Config()
    assert isinstance(s.input_size, TokenInput)
    assert s.input_size.vocab_size == default.vocab_size and s.input_size.max_seq_len == default.n_positions
    assert s.config.n_layer == default.n_layer and s.family == "gpt2"
    vit = sources.resolve("hf:vit")
    c = transformers.ViTConfig()
    assert vit.input_size == (c.num_channels, c.image_size, c.image_size)


def test_hf_config_json_and_token_lengths(gpt2_config):
    config, path = gpt2_config
    s = sources.resolve(f"hf:{path}")
    assert s.input_size.vocab_size == config.vocab_size
    ids, = s.input_size.shapes(None, 3)
    assert tuple(ids.shape) == (3, min(DEFAULT_SEQ_LEN, config.n_positions))  # capped by the positions
    assert int(ids.max()) < config.vocab_size and ids.dtype.is_floating_point is False
    again, = s.input_size.shapes(None, 3)
    assert bool((ids == again).all())  # seeded
    assert tuple(s.input_size.shapes(16, 1)[0].shape) == (1, 16)
    with pytest.raises(SourceError, match="positions"):
        s.input_size.shapes(config.n_positions + 1, 1)
    with pytest.raises(SourceError, match="--seq-len"):
        s.input_size.shapes((3, 32, 32), 1)


def test_encoder_decoder_gets_decoder_ids_at_their_position():
    s = sources.resolve("hf:t5")
    ids, *between, dec = s.input_size.shapes(8, 2)
    import inspect

    names = [p for p in inspect.signature(transformers.T5Model.forward).parameters if p != "self"]
    assert len(between) + 1 == names.index("decoder_input_ids") and all(b is None for b in between)
    assert tuple(dec.shape) == tuple(ids.shape) == (2, 8)


def test_wildcards_list_the_library_names():
    assert sources.list_sources("timm:*test_vit*") == [f"timm:{n}" for n in timm.list_models("*test_vit*")]
    assert "torchvision:swin_t" in sources.list_sources("tv:swin*")
    assert sources.list_sources("hf:gpt2") == ["hf:gpt2"]
    assert sources.list_sources("timm:*no_such_model*") == []


@pytest.mark.parametrize("ref, hint", [("timm:test_vitt", "test_vit"), ("tv:resnet5", "resnet50"),
                                       ("hf:gpt3", "gpt2"), ("hf:/no/such/config.json", "no such config")])
def test_unknown_names_say_what_would_work(ref, hint):
    with pytest.raises(SourceError, match=hint):
        sources.resolve(ref)


@pytest.mark.parametrize("prefix, extra", [("timm", "timm"), ("tv", "torchvision"), ("hf", "hf")])
def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch, prefix, extra):
    import importlib.util

    real = importlib.util.find_spec
    package = sources.PACKAGES[sources.PREFIXES[prefix]]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    with pytest.raises(MissingLibrary) as info:
        sources.resolve(f"{prefix}:anything")
    assert f"pip install 'archcost[{extra}]'" in str(info.value) and "\n" not in str(info.value)
    from archcost.cli import main

    result = CliRunner().invoke(main, ["table", f"{prefix}:anything", "--no-save"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines() if hasattr(result, "stderr") else result.output.strip().splitlines()
    assert len(lines) == 1 and f"archcost[{extra}]" in lines[0]


def test_extras_are_declared():
    import pathlib

    tomllib = pytest.importorskip("tomllib")

    root = pathlib.Path(__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("timm") for r in extras["timm"])
    assert any(r.startswith("transformers") for r in extras["hf"])
    assert any(r.startswith("torchvision") for r in extras["torchvision"])


# --- counted through the facade and every command ------------------------------------------------


def test_analyze_counts_a_timm_model_at_its_default_input(test_vit):
    from archcost import analyze

    size = timm.get_pretrained_cfg("test_vit").input_size[1]
    a = analyze("timm:test_vit", memory=False)
    assert a.row["input_shape"] == f"1x3x{size}x{size}"
    assert a.row["macs"] == vit_macs(test_vit, size)
    assert a.row["params"] == sum(p.numel() for p in test_vit.parameters())
    assert a.row["family"] == "vision_transformer"
    b = analyze("timm:test_vit", input_size=size, memory=False)  # N: a square image with the model's channels
    assert b.row["input_shape"] == a.row["input_shape"] and b.row["macs"] == a.row["macs"]


def test_analyze_counts_an_hf_config_at_a_token_length(gpt2_config):
    from archcost import analyze

    config, path = gpt2_config
    a = analyze(f"hf:{path}", memory=False)
    t = min(DEFAULT_SEQ_LEN, config.n_positions)
    assert a.row["input_shape"] == f"1x{t}"
    assert a.row["macs"] == gpt2_macs(config, t)
    b = analyze(f"hf:{path}", input_size=16, batch_size=2, memory=False)
    assert b.row["macs"] == 2 * gpt2_macs(config, 16)


def _cli(*args):
    from archcost.cli import main

    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout if hasattr(result, "stdout") else result.output


def _csv(text):
    import io

    import pandas as pd

    return pd.read_csv(io.StringIO(text))


def test_table_takes_timm_and_hf_names_and_seq_len(test_vit, gpt2_config):
    config, path = gpt2_config
    size = timm.get_pretrained_cfg("test_vit").input_size[1]
    frame = _csv(_cli("table", "timm:test_vit", f"hf:{path}", "--seq-len", "8", "--no-save", "--format", "csv"))
    rows = {m: r for m, r in zip(frame["model"], frame.to_dict("records"))}
    assert rows["timm:test_vit"]["macs"] == vit_macs(test_vit, size)
    assert rows[f"hf:{path}"]["macs"] == gpt2_macs(config, 8)
    assert rows[f"hf:{path}"]["input_shape"] == "1x8"


def test_table_refuses_seq_len_past_the_positions(gpt2_config):
    from archcost.cli import main

    config, path = gpt2_config
    result = CliRunner().invoke(main, ["table", f"hf:{path}", "--seq-len", str(config.n_positions + 1), "--no-save"])
    assert result.exit_code == 2 and "positions" in result.output


def test_layer_breakdown_total_is_the_formula(test_vit, gpt2_config):
    size = timm.get_pretrained_cfg("test_vit").input_size[1]
    frame = _csv(_cli("layer-breakdown", "timm:test_vit", "--no-save", "--format", "csv"))
    assert int(frame[frame["layer"] == "(total)"]["macs"].iloc[0]) == vit_macs(test_vit, size)
    config, path = gpt2_config
    frame = _csv(_cli("layer-breakdown", f"hf:{path}", "--seq-len", "8", "--no-save", "--format", "csv"))
    total = frame[frame["layer"] == "(total)"]
    assert int(total["macs"].iloc[0]) == gpt2_macs(config, 8)
    assert int(frame[frame["layer"] != "(total)"]["macs"].sum()) == gpt2_macs(config, 8)


def test_ops_names_attention_for_timm_and_hf(test_vit, gpt2_config):
    size = timm.get_pretrained_cfg("test_vit").input_size[1]
    frame = _csv(_cli("ops", "timm:test_vit", "--format", "csv"))
    assert int(frame[frame["operator"] == "(total)"]["macs"].iloc[0]) == vit_macs(test_vit, size)
    n = (size // 16) ** 2 + 1
    attention = frame[frame["operator"] == "scaled_dot_product_attention"]
    assert int(attention["macs"].iloc[0]) == len(test_vit.blocks) * 2 * n * n * test_vit.embed_dim
    config, path = gpt2_config
    frame = _csv(_cli("ops", f"hf:{path}", "--seq-len", "8", "--format", "csv"))
    assert int(frame[frame["operator"] == "(total)"]["macs"].iloc[0]) == gpt2_macs(config, 8)


def test_memory_command_takes_library_names(gpt2_config):
    config, path = gpt2_config
    for ref in ("timm:test_vit", f"hf:{path}"):
        frame = _csv(_cli("memory", ref, "--format", "csv"))
        assert {"peak_bytes", "saved_bytes"} <= {q.split()[0] for q in frame["quantity"]}
        profiler = frame[frame["by"].str.contains("sampled as each top-level operator")]
        if ref.startswith("timm:"):  # the ViT's figures equal the allocator's events
            assert (profiler["archcost"] == profiler["independent"]).all()


def test_fit_takes_library_names(gpt2_config):
    config, path = gpt2_config
    frame = _csv(_cli("fit", "timm:test_vit", f"hf:{path}", "--memory", "256MiB", "--inference", "--max-batch", "64",
                      "--no-save", "--format", "csv"))
    assert set(frame["model"]) == {"timm:test_vit", f"hf:{path}"} and (frame["batch"] >= 1).all()


def test_diff_of_two_timm_models(test_vit):
    other = timm.create_model("test_vit2", pretrained=False)
    frame = _csv(_cli("diff", "timm:test_vit", "timm:test_vit2", "--no-save", "--format", "csv", "--no-memory"))
    total = frame[frame["layer"] == "(total)"].iloc[0]
    params = [c for c in frame.columns if c.startswith("params")]
    assert sorted(int(total[c]) for c in params if c in ("params_a", "params_b")) == sorted(
        [sum(p.numel() for p in test_vit.parameters()), sum(p.numel() for p in other.parameters())])


def test_a_baseline_holds_library_models(tmp_path, gpt2_config):
    config, path = gpt2_config
    base = tmp_path / "baseline.csv"
    from archcost.cli import main

    result = CliRunner().invoke(main, ["check", "--update", "--baseline", str(base), "timm:test_vit", f"hf:{path}"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["check", "--baseline", str(base)])
    assert result.exit_code == 0, result.output
    assert "2 model(s) match" in result.output


def test_a_baseline_stores_an_hf_config_path_relative_to_its_folder(tmp_path, gpt2_config, monkeypatch):
    """As a file.py:builder row: named from one directory, stored relative to the baseline's
    folder, checked from another directory."""
    import os
    import shutil

    import pandas as pd

    from archcost.cli import main

    config, path = gpt2_config
    (tmp_path / "configs").mkdir()
    shutil.copy(path, tmp_path / "configs" / "config.json")
    (tmp_path / "base").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", "--update", "--baseline", "base/baseline.csv",
                                       "hf:configs/config.json"])
    assert result.exit_code == 0, result.output
    stored = pd.read_csv(tmp_path / "base" / "baseline.csv")["model"].tolist()
    assert stored == [f"hf:{os.path.relpath(tmp_path / 'configs' / 'config.json', tmp_path / 'base')}"]
    assert stored == ["hf:../configs/config.json"]
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = CliRunner().invoke(main, ["check", "--baseline", "../base/baseline.csv"])
    assert result.exit_code == 0, result.output
    assert "1 model(s) match" in result.output
    # the row names the same model however the path was written from here
    result = CliRunner().invoke(main, ["check", "--update", "--baseline", "../base/baseline.csv",
                                       f"hf:{tmp_path / 'configs' / 'config.json'}"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "base" / "baseline.csv")["model"].tolist() == stored
    # a diff against the stored row finds it from here too
    result = CliRunner().invoke(main, ["diff", "../base/baseline.csv:hf:../configs/config.json",
                                       "hf:../configs/config.json", "--no-save", "--no-memory"])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def t5_config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-t5")
    config = transformers.AutoConfig.for_model("t5", d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                                               num_heads=4, vocab_size=100, decoder_start_token_id=0)
    config.save_pretrained(folder)
    return config, folder / "config.json"


@pytest.mark.parametrize("memory", ["64MiB", "t4"])
@pytest.mark.parametrize("mode", ["--train", "--inference"])
def test_fit_takes_an_encoder_decoder_whose_inputs_hold_none(t5_config, memory, mode):
    """T5's forward takes (input_ids, attention_mask=None, decoder_input_ids, ...): its
    example inputs hold None between the two id tensors; fit measures on the tensors only."""
    config, path = t5_config
    frame = _csv(_cli("fit", f"hf:{path}", "--memory", memory, mode, "--max-batch", "4", "--no-save",
                      "--format", "csv"))
    row = frame.iloc[0]
    assert row["batch"] == 4  # a 2-layer, width-32 T5 fits 4 sequences in 64 MiB or on a T4
    if memory == "64MiB":
        model = transformers.AutoModel.from_config(config)
        assert row["weight_bytes"] == 4 * sum(p.numel() for p in model.parameters())  # float32, tied embeddings once
        assert row["input_bytes"] == 2 * 4 * DEFAULT_SEQ_LEN * 8  # encoder and decoder ids, int64, batch 4
