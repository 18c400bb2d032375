"""`archcost table --decode N` and `archcost sweep --decode LIST`, through click's CliRunner,
on a GPT-2-shaped model from a file.py:builder (hf: names resolve through the model sources
to the same configuration object)."""

import io
import sys
import types

import pandas as pd
import pytest
from click.testing import CliRunner

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
pytest.importorskip("transformers")

from archcost.cli import main  # noqa: E402

L, H, D, V, P = 2, 4, 32, 96, 64
E = D // H
BUILDER = f'''
import transformers

def gpt2():
    return transformers.GPT2Config(n_layer={L}, n_head={H}, n_embd={D}, vocab_size={V}, n_positions={P},
                                   bos_token_id=0, eos_token_id=0)
'''
# per token: QKV 3d^2, projection d^2, MLP 8d^2 per layer, the LM head dV; layer norms at 5 MACs an element
WEIGHT_MACS = L * 12 * D * D + D * V + 5 * D * (2 * L + 1)


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "lm.py"
    path.write_text(BUILDER)
    return f"{path}:gpt2"


def run(args):
    return CliRunner().invoke(main, args)


def test_table_decode_csv(model):
    n = 20
    r = run(["table", model, "--decode", str(n), "--target", "h100-sxm", "--format", "csv", "--no-save"])
    assert r.exit_code == 0, r.output
    rows = pd.read_csv(io.StringIO(r.stdout)).set_index("phase")
    assert list(rows.index) == ["prefill", "decode"]
    d = rows.loc["decode"]
    assert d["macs"] == WEIGHT_MACS + L * H * (n + 1) * (E + E)
    assert d["kv_cache_bytes"] == 2 * L * n * H * E * 4
    assert d["bound"] == "memory" and d["target"] == "NVIDIA H100 SXM5"
    assert str(d["macs"]).isdigit()  # raw integers in the CSV


def test_table_decode_text_and_file(model, tmp_path):
    r = run(["table", model, "--decode", "8", "--target", "a100-80gb", "--dtype", "bfloat16", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "KV cache" in r.stdout and "bound/token" in r.stdout and "A100" in r.stdout
    written = tmp_path / "decode_a100-80gb_bfloat16_b1_n8_lm_py_gpt2.csv"
    assert written.exists()
    assert set(pd.read_csv(written)["dtype"]) == {"bfloat16"}


def test_sweep_decode_stops_past_the_positions(model, tmp_path):
    r = run(["sweep", model, "--decode", "8,16,...,64", "--target", "h100-sxm", "--out", str(tmp_path),
             "--format", "csv"])
    assert r.exit_code == 0, r.output
    stem = tmp_path / "decode_h100-sxm_float32_b1_n8-64_lm_py_gpt2"
    frame = pd.read_csv(stem.with_suffix(".csv"))
    counted = frame.dropna(subset=["phase"])
    assert sorted(set(counted["context"])) == [8, 16, 32]  # 64 + 1 tokens exceed the 64 positions
    assert f"up to {P - 1}" in frame[frame["phase"].isna()]["note"].iloc[0]
    decode = counted[counted["phase"] == "decode"]
    assert list(decode["attention_macs"]) == [L * H * (n + 1) * (E + E) for n in (8, 16, 32)]
    assert stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args,message", [
    (["table", "vgg16", "--decode", "8"], "has no KV cache"),
    (["table", "MODEL", "--decode", "64"], "up to 63"),
    (["table", "MODEL", "--decode", "8", "--latency"], "--latency does not apply"),
    (["table", "--decode", "8"], "name them"),
    (["sweep", "MODEL", "--decode", "8,x"], "--decode '8,x' is not a list"),
    (["sweep", "MODEL", "--decode", "8,16", "--batch-sizes", "1,2"], "one --batch-sizes value"),
    (["sweep", "MODEL", "--target", "h100-sxm"], "--target applies to --decode"),
    (["table", "MODEL", "--decode", "8", "--target", "nope"], "unknown target"),
])
def test_decode_refusals_are_one_line(model, args, message):
    r = run([model if a == "MODEL" else a for a in args] + ["--no-save"])
    assert r.exit_code == 2, r.output
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_counts_stay_integers_beside_a_note_row(model, tmp_path):
    r = run(["sweep", model, "--decode", "62,63,64", "--target", "h100-sxm", "--format", "csv", "--no-save"])
    assert r.exit_code == 0, r.output
    header, *lines = r.stdout.strip().splitlines()
    columns = header.split(",")
    for line in lines[:4]:  # the counted rows
        cells = dict(zip(columns, line.split(",")))
        for c in ("context", "new_tokens", "macs", "attention_macs", "weight_bytes_read", "bytes_moved",
                  "unfused_bytes_moved", "kv_cache_bytes"):
            assert cells[c].isdigit(), (c, cells[c])
