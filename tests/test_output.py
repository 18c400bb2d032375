"""Output that parses: plain values, integer counts, strict JSON."""

import io
import json

import numpy as np
import pandas as pd
import torch
from click.testing import CliRunner

from archcost.cli import main
from archcost.report.clean import plain_frame, to_json
from archcost.report.files import write_csv
from archcost.report.tables import render


def strict_json(text):
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def hostile_frame():
    return pd.DataFrame({
        "model": ["a", "b"],
        "activations": [torch.tensor(591720), torch.tensor(12)],  # what fvcore's engine hands back
        "self_params": [1792.0, float("nan")],  # an integer column turned float by a missing row
        "macs": [np.int64(2**40), np.int64(3)],
        "latency_ms": [np.float32(1.5), float("nan")],
        "aliased": [np.bool_(True), False],
    })


def test_frames_leave_as_plain_values(tmp_path):
    frame = plain_frame(hostile_frame())
    for col in frame.columns:
        for v in frame[col].tolist():
            assert v is pd.NA or v != v or type(v) in (int, float, str, bool), (col, type(v))
    written = pd.read_csv(write_csv(tmp_path / "x.csv", hostile_frame()))
    assert written["activations"].tolist() == [591720, 12]
    assert "tensor" not in (tmp_path / "x.csv").read_text()
    assert "1792.0" not in (tmp_path / "x.csv").read_text() and ",1792," in (tmp_path / "x.csv").read_text()
    rows = strict_json(to_json(hostile_frame()))
    assert rows[0]["activations"] == 591720 and rows[0]["self_params"] == 1792
    assert isinstance(rows[0]["self_params"], int) and rows[1]["self_params"] is None
    assert rows[1]["latency_ms"] is None and rows[0]["aliased"] is True and rows[0]["macs"] == 2**40
    assert render(hostile_frame(), "json") == to_json(hostile_frame())


def test_layer_breakdown_json_is_strict_and_counts_are_integers():
    r = run(["layer-breakdown", "lenet5", "--format", "json", "--no-save"])
    rows = strict_json(r.stdout)
    for row in rows:
        for col in ("params", "self_params", "macs", "self_macs", "activations", "activation_bytes"):
            assert row[col] is None or isinstance(row[col], int), (col, row[col])
    csv = pd.read_csv(io.StringIO(run(["layer-breakdown", "lenet5", "--format", "csv", "--no-save"]).stdout))
    for col in ("params", "macs", "activations"):
        assert csv[col].dtype.kind == "i", col
    raw = pd.read_csv(io.StringIO(run(["layer-breakdown", "lenet5", "--format", "csv", "--no-save"]).stdout),
                      dtype=str, keep_default_na=False).set_index("layer")
    assert raw.loc["c1", "self_params"] == str(6 * 5 * 5 + 6)  # not '156.0'
    # the total row (marked in is_total) holds the model's own: lenet5's parameters all sit in layers
    assert raw.loc["(total)", "self_params"] == "0" and raw.loc["(total)", "is_total"] == "True"


def test_table_latency_json_is_strict():
    rows = strict_json(run(["table", "lenet5", "--latency", "--repeat", "2", "--warmup", "0", "--format",
                            "json", "--no-save"]).stdout)
    assert rows[0]["params"] == 60000 and rows[0]["peak_fraction"] is None  # no datasheet peak on a CPU


def test_a_measurement_that_could_not_be_taken_is_a_dash_empty_and_null():
    """MobileNetV2 on a 1x1 image: BatchNorm cannot run in train mode on one value per
    channel, so saved_bytes is missing (pandas' NA): '-' in text, empty in CSV, null in JSON."""
    args = ["table", "mobilenet_v2", "--input-size", "1", "--no-save"]
    text = run(args)
    assert text.exit_code == 0, text.output
    assert "no train-mode forward" in run(args + ["--format", "csv"]).stdout
    row = strict_json(run(args + ["--format", "json"]).stdout)[0]
    assert row["saved_bytes"] is None and row["train_bytes"] is None and isinstance(row["peak_bytes"], int)
    header, values = text.stdout.splitlines()[:2]
    assert values.split()[header.split().index("saved") + 1] == "-"  # 'act. mem' is two words in the header
