"""`archcost diff` and the per-layer `archcost check`: expectations derived from the
architectures (channel counts, reduction ratio), never copied from the tool's output."""

import io
import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from click.testing import CliRunner

from archcost.cli import main

RESNET50_STAGES = [(256, 3), (512, 4), (1024, 6), (2048, 3)]  # (bottleneck output channels, blocks)


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_diff_resnet50_se_resnet50_finds_every_se_fc():
    r = run("diff", "resnet50", "se_resnet50", "--format", "csv", "--no-save", "--no-memory")
    assert r.exit_code == 0, r.stderr
    d = pd.read_csv(io.StringIO(r.stdout), keep_default_na=False, na_values=[""])
    added = d[d["status"] == "added"].set_index("layer")
    expected_total = 0
    for stage, (c, blocks) in enumerate(RESNET50_STAGES, start=1):
        h = c // 16  # SE reduction ratio r = 16 (Hu et al.)
        for b in range(blocks):
            se = f"layer{stage}.{b}.se"
            assert added.loc[f"{se}.fc1", "params_delta"] == c * h + h  # Linear C -> C/16 with bias
            assert added.loc[f"{se}.fc2", "params_delta"] == h * c + c  # Linear C/16 -> C with bias
            expected_total += 2 * c * h + h + c
    # Every other layer of ResNet-50 is there, unchanged, under its name.
    assert set(d.loc[d["layer"] != "(total)", "status"]) == {"added"}  # the same rows are not shown
    assert (d.loc[d["status"] == "added", "layer"].str.contains(r"\.se[\.\s]")).all()
    total = d[d["layer"] == "(total)"].iloc[0]
    assert total["params_delta"] == expected_total  # about 2.5M, Hu et al. Table 7: 25.6M -> 28.1M
    assert added["params_delta"].sum() == expected_total


def test_diff_text_and_json_are_readable():
    r = run("diff", "resnet18", "resnet34", "--no-save", "--no-memory")
    assert r.exit_code == 0, r.stderr
    # ResNet-34 adds blocks layer1.2, layer2.2, layer2.3, ...: a basic block of 64 channels
    # holds two 3x3 convs (no bias) and two BNs (2 x 64 params each).
    assert "+ layer1.2.conv1" in r.stdout and f"{64 * 64 * 9:+,}" in r.stdout
    r = run("diff", "resnet18", "resnet34", "--no-save", "--no-memory", "--format", "json", "--all")
    rows = json.loads(r.stdout)
    by = {x["layer"]: x for x in rows}
    assert by["layer1.2.conv1"]["status"] == "added" and by["layer1.2.conv1"]["params_a"] is None
    assert by["conv1"]["status"] == "same" and by["conv1"]["params_delta"] == 0
    assert by["(total)"]["params_delta"] == sum(x["params_delta"] for x in rows if x["layer"] != "(total)")


def test_diff_falls_back_to_execution_order(tmp_path):
    """Two nets whose modules are named differently line up by order where types agree."""
    (tmp_path / "a.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        def build():
            return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3))
    """))
    (tmp_path / "b.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        class B(nn.Module):
            def __init__(self):
                super().__init__()
                self.stem = nn.Conv2d(3, 8, 3)
                self.act = nn.ReLU()
                self.body = nn.Conv2d(8, 32, 3)
            def forward(self, x):
                return self.body(self.act(self.stem(x)))
        def build():
            return B()
    """))
    r = run("diff", f"{tmp_path}/a.py:build", f"{tmp_path}/b.py:build", "--input-size", "3x16x16",
            "--format", "json", "--all", "--no-save", "--no-memory")
    assert r.exit_code == 0, r.stderr
    rows = {x["layer"]: x for x in json.loads(r.stdout)}
    assert rows["0"]["layer_b"] == "stem" and rows["0"]["matched_by"] == "order" and rows["0"]["status"] == "same"
    body = rows["2"]
    assert body["layer_b"] == "body" and body["status"] == "changed"
    assert body["params_delta"] == (8 * 32 * 9 + 32) - (8 * 16 * 9 + 16)
    assert body["macs_delta"] == 12 * 12 * 9 * 8 * (32 - 16)


def test_diff_writes_csv_and_plot(tmp_path):
    r = run("diff", "resnet18", "resnet34", "--out", str(tmp_path), "--no-memory", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "diff_resnet18_vs_resnet34.png").stat().st_size > 0
    saved = pd.read_csv(tmp_path / "diff_resnet18_vs_resnet34.csv")
    assert saved["params_a"].dropna().apply(float.is_integer).all()


@pytest.mark.parametrize("args,needle", [
    (["resnet*", "vgg16"], "matches"),
    (["resnt50", "vgg16"], "unknown model"),
    (["nofile.csv:resnet50", "resnet50"], "does not exist"),
])
def test_diff_bad_input_is_one_line(args, needle):
    r = run("diff", *args, "--no-save")
    assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


MYNET = """
    import torch.nn as nn
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, {c2}, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear({c2}, 10)
        def forward(self, x):
            return self.fc(self.pool(self.conv2(self.conv1(x))).flatten(1))
    def build():
        return Net()
"""


def test_check_names_the_layer_that_drifted(tmp_path):
    net = tmp_path / "net.py"
    net.write_text(textwrap.dedent(MYNET.format(c2=32)))
    base = tmp_path / "base.csv"
    r = run("check", "--update", "--layers", "--baseline", str(base), f"{net}:build", "--input-size", "3x8x8")
    assert r.exit_code == 0, r.stderr
    stored = pd.read_csv(base, keep_default_na=False)
    assert list(stored["layer"]) == ["", "conv1", "conv2", "pool", "fc"]
    assert run("check", "--baseline", str(base)).exit_code == 0
    net.write_text(textwrap.dedent(MYNET.format(c2=40)))  # conv2 grows by 8 output channels
    r = run("check", "--baseline", str(base))
    assert r.exit_code == 1
    d_conv2 = 16 * 8 * 9 + 8  # 8 more 3x3x16 filters with bias
    d_fc = 8 * 10  # 8 more inputs to the classifier
    assert f"conv2: {d_conv2:+,} params, {8 * 8 * 8 * 16 * 9:+,} MACs" in r.stdout
    assert f"fc: {d_fc:+,} params" in r.stdout and "conv1" not in r.stdout
    r = run("check", "--baseline", str(base), "--format", "json")
    rows = json.loads(r.stdout)
    assert {"model": "net.py:build", "layer": "conv2", "type": "Conv2d", "status": "changed", "column": "params",
            "baseline": 16 * 32 * 9 + 32,
            "now": 16 * 40 * 9 + 40, "delta": d_conv2} in rows
    total = [x for x in rows if x["layer"] == "(total)" and x["column"] == "params"][0]
    assert total["delta"] == d_conv2 + d_fc
    r = run("check", "--baseline", str(base), "--format", "csv")
    assert pd.read_csv(io.StringIO(r.stdout))["delta"].sum() == sum(x["delta"] for x in rows)


def test_check_resolves_paths_from_the_baselines_folder(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    (proj / "models").mkdir(parents=True)
    (proj / "ci").mkdir()
    (proj / "models" / "net.py").write_text(textwrap.dedent(MYNET.format(c2=32)))
    monkeypatch.chdir(proj)
    r = run("check", "--update", "--baseline", "ci/base.csv", "models/net.py:build", "--input-size", "3x8x8")
    assert r.exit_code == 2 and "--allow-outside" in r.stderr  # a file outside the baseline's folder
    r = run("check", "--update", "--baseline", "ci/base.csv", "models/net.py:build", "--input-size", "3x8x8",
            "--allow-outside")
    assert r.exit_code == 0, r.stderr
    assert pd.read_csv(proj / "ci" / "base.csv")["model"][0] == "../models/net.py:build"
    monkeypatch.chdir(tmp_path)  # elsewhere: the path still means the same file
    r = run("check", "--baseline", "proj/ci/base.csv", "--allow-outside")
    assert r.exit_code == 0, r.stderr
    monkeypatch.chdir(proj / "ci")
    assert run("check", "--baseline", "base.csv", "../models/net.py:build", "--allow-outside").exit_code == 0


def test_check_layers_needs_update_and_format_on_success(tmp_path):
    assert run("check", "--layers").exit_code == 2
    base = tmp_path / "b.csv"
    assert run("check", "--update", "--baseline", str(base), "lenet5").exit_code == 0
    r = run("check", "--baseline", str(base), "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []


SLOW = """
    import os, pathlib, time
    import torch.nn as nn
    def build_{name}():
        # A barrier: both processes have read the baseline before either writes it.
        d = pathlib.Path(os.environ["BARRIER"])
        (d / "{name}").touch()
        t = time.time()
        while not ((d / "a").exists() and (d / "b").exists()) and time.time() - t < 60:
            time.sleep(0.05)
        return nn.Sequential(nn.Conv2d(3, {c}, 3))
"""


def test_concurrent_updates_keep_both_models(tmp_path):
    """Two real processes run `check --update` at once; neither model is lost."""
    (tmp_path / "nets.py").write_text(textwrap.dedent(SLOW.format(name="a", c=4) + SLOW.format(name="b", c=6)))
    base = tmp_path / "base.csv"
    assert run("check", "--update", "--baseline", str(base), "lenet5").exit_code == 0
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "BARRIER": str(barrier)}
    procs = [subprocess.Popen([sys.executable, "-m", "archcost.cli", "check", "--update", "--baseline", str(base),
                               f"{tmp_path}/nets.py:build_{n}", "--input-size", "3x8x8"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in "ab"]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    frame = pd.read_csv(base).set_index("model")
    a, b = "nets.py:build_a", "nets.py:build_b"  # stored relative to the baseline's folder
    assert set(frame.index) == {"lenet5", a, b}
    assert frame.loc[a, "params"] == 3 * 4 * 9 + 4
    assert frame.loc[b, "params"] == 3 * 6 * 9 + 6


def test_header_only_baseline_says_it_is_empty(tmp_path):
    base = tmp_path / "b.csv"
    base.write_text("model,input_shape,params,macs\n")
    r = run("check", "--baseline", str(base))
    assert r.exit_code == 2 and "has no rows" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_diff_against_a_baseline_row(tmp_path):
    net = tmp_path / "net.py"
    net.write_text(textwrap.dedent(MYNET.format(c2=32)))
    base = tmp_path / "base.csv"
    assert run("check", "--update", "--layers", "--baseline", str(base), f"{net}:build",
               "--input-size", "3x8x8").exit_code == 0
    net.write_text(textwrap.dedent(MYNET.format(c2=40)))
    # B is measured at the input the baseline row recorded (no --input-size needed).
    r = run("diff", f"{base}:{net}:build", f"{net}:build", "--format", "json", "--no-save")
    assert r.exit_code == 0, r.stderr
    rows = {x["layer"]: x for x in json.loads(r.stdout)}
    assert set(rows) == {"conv2", "pool", "fc", "(total)"}  # conv1 is the same, not shown
    assert rows["pool"]["params_delta"] == 0 and rows["pool"]["macs_delta"] == 8 * 8 * 8  # 1 MAC per input element
    assert rows["pool"]["activation_bytes_delta"] == 8 * 4  # 8 more float32 outputs
    assert rows["conv2"]["params_delta"] == 16 * 8 * 9 + 8 and rows["fc"]["params_delta"] == 8 * 10
    assert rows["(total)"]["params_b"] == 3 * 16 * 9 + 16 + 16 * 40 * 9 + 40 + 40 * 10 + 10


def test_diff_does_not_pair_layers_of_different_types_by_index_name(tmp_path):
    """An nn.Sequential with a layer inserted at index 3: one added Conv2d, not a cascade
    of 'changed' rows pairing 3 with 3, 4 with 4..."""
    import archcost
    from archcost.compare.diff import diff_layers

    path = tmp_path / "seq.py"
    path.write_text(
        "import torch.nn as nn\n"
        "def a(): return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.AdaptiveAvgPool2d(1),"
        " nn.Flatten(), nn.Linear(8, 10))\n"
        "def b(): return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3),"
        " nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))\n")
    sides = [archcost.analyze(f"{path}:{f}", input_size=(3, 16, 16), memory=False) for f in "ab"]
    rows = diff_layers(*[s.breakdown() for s in sides])
    added = rows[rows["status"] == "added"]
    assert list(added["type"]) == ["Conv2d"] and added["params_b"].iloc[0] == 8 * 8 * 3 * 3 + 8
    assert set(rows.loc[rows["status"] == "changed", "type"]) <= {"AdaptiveAvgPool2d"}  # its input shrank
    assert not (rows["status"] == "removed").any()
