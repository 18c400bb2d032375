"""Issue #22: hostile values to analyze() give one clear error each; dict and nested inputs
(positional and keyword) are counted, from the API and from a builder that returns its
example inputs; the notes name the input actually used; a model file imports its neighbours."""

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

import archcost
from archcost.errors import AnalysisError


@pytest.mark.parametrize("kw, words", [
    (dict(repeats=0, latency=True), "repeats"),
    (dict(warmup=-1, latency=True), "warmup"),
    (dict(dtype=torch.int8), "int8"),
    (dict(dtype=3), "dtype"),
])
def test_bad_conditions_are_one_error(kw, words):
    with pytest.raises(AnalysisError, match=words):
        archcost.analyze(nn.Linear(4, 4), input_size=(4,), **kw)


def test_inputs_that_are_not_arguments_are_refused():
    with pytest.raises(AnalysisError, match="inputs must be a list"):
        archcost.analyze(nn.Linear(4, 4), inputs="abc")
    with pytest.raises(AnalysisError, match="input_kwargs must be a dict"):
        archcost.analyze(nn.Linear(4, 4), input_size=(4,), input_kwargs=[1])


def test_unknown_keyword_is_refused():
    with pytest.raises(TypeError, match="batch_size"):
        archcost.analyze(nn.Linear(4, 4), input_size=(4,), batchsize=8)


def test_lazy_module_is_one_error():
    with pytest.raises(AnalysisError, match="lazy"):
        archcost.analyze(nn.LazyLinear(4), input_size=(4,))


class DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 8)
        self.fc = nn.Linear(8, 2)

    def forward(self, batch):
        return self.fc(self.emb(batch["ids"]) * batch["mask"].unsqueeze(-1))


class NestedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 3)
        self.b = nn.Linear(4, 3)

    def forward(self, pair, extra=None):
        x, ys = pair
        out = self.a(x) + self.b(ys[0]) + self.b(ys[1])
        return out if extra is None else out + self.b(extra)


def test_forward_taking_a_dict():
    batch = {"ids": torch.randint(0, 100, (2, 5)), "mask": torch.ones(2, 5)}
    a = archcost.analyze(DictNet(), inputs=[batch])
    assert a.row["macs"] == 2 * 5 * 8 * 2  # the Linear on 2x5 tokens; the embedding is a lookup
    assert a.row["input_shape"] == "2x5" and a.row["batch_size"] == 2
    assert a.row["peak_bytes"] > 0


def test_nested_inputs_and_keyword_tensors_on_meta():
    x, y1, y2, extra = torch.randn(2, 6), torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 4)
    a = archcost.analyze(NestedNet(), inputs=[(x, [y1, y2])], input_kwargs={"extra": extra})
    assert a.row["macs"] == 2 * 6 * 3 + 3 * (2 * 4 * 3)
    assert a.row["engine"] == "meta"  # the keyword tensor went to meta with the positional ones


class ReadsValues(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 4)

    def forward(self, ids):
        return self.emb(ids[:, : int(ids.max().item()) % 3 + 1])


def test_notes_name_the_example_input():
    a = archcost.analyze(ReadsValues(), inputs=[torch.randint(0, 50, (1, 6))], memory=False)
    assert "the example inputs given" in a.row["notes"] and "int64" in a.row["notes"]
    assert "torch.randn" not in a.row["notes"]


def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "archcost", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_builder_returning_example_inputs_and_importing_beside_it(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "blocks.py").write_text("import torch.nn as nn\nblock = lambda: nn.Linear(8, 2)\n")
    (tmp_path / "m" / "net.py").write_text(textwrap.dedent("""
        import torch, torch.nn as nn
        from blocks import block

        class D(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb, self.fc = nn.Embedding(100, 8), block()

            def forward(self, batch):
                return self.fc(self.emb(batch["ids"]) * batch["mask"].unsqueeze(-1))

        def build():
            return D(), {"ids": torch.randint(0, 100, (3, 5)), "mask": torch.ones(3, 5)}
        """))
    r = _cli(["table", "m/net.py:build", "--format", "csv", "--no-save"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    import io

    import pandas as pd

    df = pd.read_csv(io.StringIO(r.stdout))
    assert int(df["macs"].iloc[0]) == 3 * 5 * 8 * 2


def test_missing_neighbour_module_has_a_hint(tmp_path):
    (tmp_path / "net.py").write_text("from nowhere_blocks import block\n")
    r = _cli(["table", "net.py:build", "--input-size", "8", "--no-save"], tmp_path)
    assert r.returncode == 2 and "beside the model file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("examples", [
    '"abc"', "[]", "{}", "(torch.ones(2, 4), [torch.ones(2, 4), {'k': torch.ones(2, 4)}])",
    "{'x': [torch.ones(2, 4)]}", "(None,)", "torch.ones(3)",
])
def test_cli_nested_example_inputs_never_a_traceback(tmp_path, examples):
    from click.testing import CliRunner

    from archcost.cli import main

    (tmp_path / "net.py").write_text(textwrap.dedent(f"""
        import torch, torch.nn as nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)

            def forward(self, *args, **kw):
                ts = [t for t in torch.utils._pytree.tree_leaves((args, kw)) if isinstance(t, torch.Tensor)]
                return self.fc(ts[0])

        def build():
            return Net(), {examples}
        """))
    r = CliRunner().invoke(main, ["table", f"{tmp_path}/net.py:build", "--no-save"])
    assert r.exit_code in (0, 2), (r.exit_code, r.output)
    assert "Traceback" not in r.output and "internal error" not in r.output


def test_ops_counts_on_the_builders_example_inputs(tmp_path):
    """`ops` takes a builder's (model, example inputs) as `table` does: both sides count the
    dict input's Linear, rows x in x out, and the note names the example inputs."""
    import json

    from click.testing import CliRunner

    from archcost.cli import main

    (tmp_path / "net.py").write_text(textwrap.dedent("""
        import torch, torch.nn as nn

        class D(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(6, 3)

            def forward(self, batch):
                return self.fc(batch["x"] * batch["mask"])

        def build():
            return D(), {"x": torch.ones(5, 6), "mask": torch.ones(5, 6)}
        """))
    r = CliRunner().invoke(main, ["ops", f"{tmp_path}/net.py:build", "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = {row["operator"]: row for row in json.loads(r.stdout)}
    assert rows["(total)"]["macs"] == 5 * 6 * 3
    assert rows["(total)"]["torch_macs"] == 5 * 6 * 3
    r = CliRunner().invoke(main, ["ops", f"{tmp_path}/net.py:build"])
    assert "example inputs" in r.output and "torch.randn" not in r.output


def test_a_lazy_module_from_a_builder_is_one_line_exit_2(tmp_path):
    (tmp_path / "lazy.py").write_text("import torch.nn as nn\ndef build():\n    return nn.Sequential(nn.LazyLinear(4))\n")
    for cmd in (["table", "--no-save"], ["ops"], ["layer-breakdown", "--no-save"]):
        r = _cli([cmd[0], "lazy.py:build", "--input-size", "5", *cmd[1:]], tmp_path)
        assert r.returncode == 2, (cmd, r.returncode, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "lazy" in lines[0] and "Traceback" not in r.stderr, (cmd, r.stderr)


@pytest.mark.parametrize("text", ["1,,2", "1,2,", ",4", ""])
def test_batch_sizes_with_an_empty_element_is_one_line_exit_2(text):
    from click.testing import CliRunner

    from archcost.cli import main

    r = CliRunner().invoke(main, ["sweep", "lenet5", "--batch-sizes", text, "--no-save", "--no-latency"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, (text, r.output)


@pytest.mark.parametrize("seconds, text", [(41, "0:41"), (725, "12:05"), (3 * 3600 + 7 * 60, "3h07m"),
                                           (1e30, "over 99 h"), (float("nan"), "unknown")])
def test_an_eta_is_readable_however_large(seconds, text):
    from archcost.cli.common import eta_text

    assert eta_text(seconds) == text
