"""`archcost plan` as a user runs it: its plan pasted into `table --train --checkpoint` gives
the same peak; its files; its errors."""

import io
import json
import os

import pandas as pd
from click.testing import CliRunner

from archcost.cli import main

NETS = os.path.join(os.path.dirname(__file__), "plan_nets.py") + ":chain16"
F32 = 4


def run(args):
    return CliRunner().invoke(main, args)


def _plain(batch):
    r = run(["table", NETS, "--input-size", "32", "-b", str(batch), "--train", "--optimizer", "adam",
             "--format", "csv", "--no-save"])
    assert r.exit_code == 0, r.output
    return int(pd.read_csv(io.StringIO(r.output))["train_peak_bytes"].iloc[0])


def test_plan_pasted_into_table_gives_its_peak(tmp_path):
    """The budget: the plain step (peak + the input batch, 512 x 32 floats) less 4.5 hidden
    maps (512 x 512 floats each): a plan of at least 5 blocks, and its --checkpoint patterns
    in `table --train` measure the peak the plan reports."""
    batch = 512
    budget = _plain(batch) + batch * 32 * F32 - 9 * batch * 512 * F32 // 2
    r = run(["plan", NETS, "--input-size", "32", "-b", str(batch), "--memory", str(budget), "--optimizer", "adam",
             "--format", "json", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    plan = doc["rows"][0]
    assert plan["checkpoint"] == "plan" and plan["fits"] and plan["needed_bytes"] <= budget
    assert plan["segments"] >= 5 and {x["checkpoint"] for x in doc["rows"]} == {"plan", "none", "blocks", "sqrt-n"}
    args = [a for p in doc["checkpoint_patterns"] for a in ("--checkpoint", p)]
    t = run(["table", NETS, "--input-size", "32", "-b", str(batch), "--train", "--optimizer", "adam",
             "--format", "csv", "--no-save", *args])
    row = pd.read_csv(io.StringIO(t.output)).iloc[0]
    assert int(row["train_peak_bytes"]) == plan["train_peak_bytes"]
    assert int(row["recompute_macs"]) == plan["recompute_macs"]
    assert "functools.partial(checkpoint" in doc["snippet"]
    written = sorted(p.name for p in tmp_path.iterdir())
    assert [p.rsplit(".", 1)[1] for p in written] == ["csv", "png"]
    saved = pd.read_csv(tmp_path / written[0])
    assert int(saved.loc[saved["checkpoint"] == "plan", "needed_bytes"].iloc[0]) == plan["needed_bytes"]


def test_text_output_names_the_references():
    r = run(["plan", NETS, "--input-size", "32", "-b", "8", "--memory", "1GiB", "--no-save"])
    assert r.exit_code == 0, r.output
    assert "It fits without checkpointing." in r.output
    for ref in ("no checkpointing", "every block", "sqrt(n) segments"):
        assert ref in r.output


def test_errors_are_one_line():
    for args, says in ((["plan", NETS, "--input-size", "32", "--memory", "lots"], "memory budget"),
                       (["plan", NETS, "--input-size", "32", "--memory", "1GiB", "-b", "4", "--max-batch"],
                        "not both"),
                       (["plan", "nosuchnet", "--memory", "1GiB"], "nosuchnet")):
        r = run(args)
        assert r.exit_code == 2 and says in r.output and len(r.output.strip().splitlines()) == 1, r.output
