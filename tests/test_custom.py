"""Users' own models and hostile inputs: counted correctly or refused in one line."""

import io
import textwrap

import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import archcost
from archcost.analysis import AnalysisError
from archcost.cli import main


def write(tmp_path, body, name="mynet.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


MYNET = """
    import torch.nn as nn
    def build():
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(16, 10))
"""


def test_table_on_a_users_file(tmp_path):
    p = write(tmp_path, MYNET)
    r = CliRunner().invoke(main, ["table", f"{p}:build", "--input-size", "3x64x64", "--format", "csv",
                                  "--no-save"])
    assert r.exit_code == 0, r.stderr
    row = pd.read_csv(io.StringIO(r.stdout)).iloc[0]
    assert row["params"] == 3 * 3 * 3 * 16 + 16 + 16 * 10 + 10
    assert row["macs"] == 64 * 64 * 16 * 3 * 3 * 3 + 16 * 64 * 64 + 16 * 10  # conv + GAP + fc
    assert row["family"] == "custom" and row["input_shape"] == "1x3x64x64"


def test_check_guards_a_users_model(tmp_path):
    p = write(tmp_path, MYNET)
    base = tmp_path / "baseline.csv"
    run = lambda *a: CliRunner().invoke(main, ["check", "--baseline", str(base), *a])
    assert run("--update", f"{p}:build", "--input-size", "3x32x32").exit_code == 0
    assert run().exit_code == 0
    write(tmp_path, MYNET.replace("16, 10", "16, 11"))  # the model grows by one class
    r = run()
    assert r.exit_code == 1 and "mynet.py:build" in r.stdout and "params" in r.stdout  # stored relative to the baseline


def test_check_tolerance_and_update(tmp_path):
    base = tmp_path / "b.csv"
    run = lambda *a: CliRunner().invoke(main, ["check", "--baseline", str(base), *a])
    assert run("--update", "resnet18").exit_code == 0
    frame = pd.read_csv(base)
    frame.loc[0, "macs"] = int(frame.loc[0, "macs"] * 1.005)
    frame.to_csv(base, index=False)
    assert run().exit_code == 1
    assert run("--tolerance", "0.01").exit_code == 0
    assert run("--update").exit_code == 0 and run().exit_code == 0


@pytest.mark.parametrize("body,ref,needle", [
    ("import nosuchmodule\n", "build", "could not import"),
    ("def build():\n    raise RuntimeError('boom')\n", "build", "builder"),
    ("def build():\n    return 42\n", "build", "not a torch.nn.Module"),
    ("x = 1\n", "build", "has no attribute 'build'"),
])
def test_builder_problems_one_line(tmp_path, body, ref, needle):
    p = write(tmp_path, body)
    r = CliRunner().invoke(main, ["table", f"{p}:{ref}", "--input-size", "3x8x8", "--no-save"])
    assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_missing_file_and_missing_input_size(tmp_path):
    r = CliRunner().invoke(main, ["table", "nofile.py:build", "--no-save"])
    assert r.exit_code == 2 and "does not exist" in r.stderr
    p = write(tmp_path, MYNET)
    r = CliRunner().invoke(main, ["table", f"{p}:build", "--no-save"])
    assert r.exit_code == 2 and "input size is required" in r.stderr


def test_wrong_channels_names_the_layer():
    with pytest.raises(AnalysisError, match=r"at layer conv1 \(Conv2d\).*channels"):
        archcost.analyze("resnet18", input_size=(1, 224, 224))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(5, 8)

    def forward(self, img, vec):
        a = F.relu(self.conv(img)).mean((2, 3))
        return {"sum": a + self.fc(vec), "img": torch.cat([a, a], 1)}


def test_several_inputs_and_dict_outputs():
    a = archcost.analyze(TwoInputs(), input_size=[(3, 10, 10), (5,)], batch_size=2)
    assert a.row["macs"] == 2 * 8 * 8 * 8 * 3 * 3 * 3 + 2 * 5 * 8
    assert a.row["input_shape"] == "2x3x10x10,2x5"
    assert a.layers.set_index("layer").loc["(model)", "output_shape"] == "2x8,2x16"
    assert "mean x1" in a.row["uncounted_ops"] and "add x1" in a.row["uncounted_ops"]


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(6, 6, bias=False)
        self.dec = nn.Linear(6, 6, bias=False)
        self.dec.weight = self.enc.weight  # tied

    def forward(self, x):
        return self.dec(self.enc(x))


def test_tied_weights_counted_once_and_module_called_twice():
    a = archcost.analyze(Tied(), input_size=(6,))
    assert a.row["params"] == 36  # one shared 6x6 matrix
    assert a.row["macs"] == 2 * 36
    twice = nn.Sequential(nn.Linear(4, 4))
    twice.forward = lambda x: twice[0](twice[0](x))
    b = archcost.analyze(twice, input_size=(4,))
    rec = b.layers.set_index("layer").loc["0"]
    assert rec["calls"] == 2 and rec["macs"] == 2 * 16 and b.row["macs"] == 32


def test_control_flow_falls_back_to_real_tensors(tmp_path):
    p = write(tmp_path, """
        import torch, torch.nn as nn
        class Gate(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(4, 4)
                self.b = nn.Linear(4, 8)
            def forward(self, x):
                if x.sum() > -1:   # data-dependent: needs real values
                    return self.b(self.a(x))
                return self.a(x)
        def build():
            return Gate()
    """)
    a = archcost.analyze(f"{p}:build", input_size=(4,))
    assert a.row["engine"] == "cpu" and a.row["macs"] == 16 + 32


def test_functional_ops_inside_a_module_are_attributed_to_it():
    class Fn(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(4, 3, 3, 3))

        def forward(self, x):
            return F.relu(F.conv2d(x, self.w)) + 1

    a = archcost.analyze(nn.Sequential(Fn()), input_size=(3, 6, 6))
    rec = a.layers.set_index("layer").loc["0"]
    assert rec["macs"] == 4 * 4 * 4 * 3 * 3 * 3 and rec["self_params"] == 4 * 3 * 3 * 3


@pytest.mark.parametrize("size,batch,needle", [
    ((0, 8, 8), 1, "positive"), ((3, 8, 8), 0, "batch size"), ((3, -1, 8), 1, "positive"),
])
def test_bad_sizes_refused(size, batch, needle):
    with pytest.raises(AnalysisError, match=needle):
        archcost.analyze(nn.Conv2d(3, 4, 3), input_size=size, batch_size=batch)


def test_nan_size_on_the_cli():
    r = CliRunner().invoke(main, ["table", "alexnet", "--input-size", "nan", "--no-save"])
    assert r.exit_code == 2 and "is not N or CxHxW" in r.stderr


def test_register_model_adds_to_the_zoo():
    from archcost.zoo.registry import _REGISTRY, Accuracy, Paper

    @archcost.register_model(family="test", input_size=(3, 16, 16), depth=1,
                             paper=Paper("t", "a", 2020, "https://example.org"),
                             accuracy=Accuracy(1.0, None, "d", "s"), note="test")
    def tiny_test_net():
        return nn.Conv2d(3, 2, 3)

    try:
        assert "tiny_test_net" in archcost.list_models("test")
        assert archcost.analyze("tiny_test_net").row["macs"] == 14 * 14 * 2 * 27
    finally:
        _REGISTRY.pop("tiny_test_net")


# --- properties: per-layer counts equal closed forms -----------------------------------

def out_len(n, k, s, p, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@settings(max_examples=40, deadline=None)
@given(cin_g=st.integers(1, 4), cout_g=st.integers(1, 4), groups=st.integers(1, 3),
       k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2),
       h=st.integers(5, 20), w=st.integers(5, 20), n=st.integers(1, 3), bias=st.booleans())
def test_conv2d_property(cin_g, cout_g, groups, k, s, p, d, h, w, n, bias):
    cin, cout = cin_g * groups, cout_g * groups
    ho, wo = out_len(h, k, s, p, d), out_len(w, k, s, p, d)
    if ho < 1 or wo < 1:
        return
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=groups, bias=bias)
    a = archcost.analyze(conv, input_size=(cin, h, w), batch_size=n)
    assert a.row["macs"] == n * cout * ho * wo * (cin // groups) * k * k
    assert a.row["params"] == cout * (cin // groups) * k * k + (cout if bias else 0)
    assert a.layers.iloc[0]["output_shape"] == f"{n}x{cout}x{ho}x{wo}"


@settings(max_examples=30, deadline=None)
@given(fin=st.integers(1, 64), fout=st.integers(1, 64), n=st.integers(1, 4), bias=st.booleans())
def test_linear_property(fin, fout, n, bias):
    a = archcost.analyze(nn.Linear(fin, fout, bias=bias), input_size=(fin,), batch_size=n)
    assert a.row["macs"] == n * fin * fout
    assert a.row["params"] == fin * fout + (fout if bias else 0)


@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 8), h=st.integers(4, 20), k=st.integers(1, 4), s=st.integers(1, 3),
       max_pool=st.booleans(), affine=st.booleans())
def test_pool_and_batchnorm_property(c, h, k, s, max_pool, affine):
    p = k // 2
    pool = nn.MaxPool2d(k, s, p) if max_pool else nn.AvgPool2d(k, s, p)
    net = nn.Sequential(nn.BatchNorm2d(c, affine=affine), pool)
    a = archcost.analyze(net, input_size=(c, h, h))
    ho = out_len(h, k, s, p)
    assert a.layers.set_index("layer").loc["1", "output_shape"] == f"1x{c}x{ho}x{ho}"
    assert a.row["macs"] == c * h * h * (2 if affine else 1)  # fvcore: eval BN; pooling uncounted
    assert a.row["params"] == (2 * c if affine else 0)


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 12), min_size=2, max_size=5), bias=st.booleans())
def test_params_equal_numel_sum_on_random_nets(widths, bias):
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b, bias=bias), nn.ReLU()]
    net = nn.Sequential(*layers)
    r = archcost.analyze(net, input_size=(widths[0],))
    assert r.row["params"] == sum(p.numel() for p in net.parameters())
    assert r.row["macs"] == sum(a * b for a, b in zip(widths, widths[1:]))


def test_entry_point_plugins_add_models(tmp_path, monkeypatch):
    """A package's ``archcost.models`` entry point registers its models for `archcost list`."""
    import sys

    import archcost.plugins as plugins
    from archcost.zoo.registry import _REGISTRY

    write(tmp_path, """
        import torch.nn as nn
        from archcost.zoo.registry import Accuracy, Paper, register_model
        @register_model(family="plugin", input_size=(3, 8, 8), depth=1, note="plugin test",
                        paper=Paper("p", "a", 2021, "https://example.org"), accuracy=Accuracy(1.0, None, "d", "s"))
        def plugin_net():
            return nn.Conv2d(3, 1, 1)
    """, name="my_plugin.py")
    dist = tmp_path / "my_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[archcost.models]\nmine = my_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_loaded", False)
    try:
        assert "plugin_net" in archcost.list_models("plugin")
        r = CliRunner().invoke(main, ["list", "plugin", "--format", "csv"])
        assert "plugin_net" in r.stdout
    finally:
        _REGISTRY.pop("plugin_net", None)
        sys.modules.pop("my_plugin", None)
