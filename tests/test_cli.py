"""The CLI as a user runs it, through click's CliRunner."""

import io
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from archcost.cli import main


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_help_does_not_import_torch():
    code = ("import sys; from archcost.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_table_csv_raw_integers(tmp_path):
    r = run(["table", "alexnet", "vgg16", "--format", "csv", "--out", str(tmp_path)])
    assert r.exit_code == 0
    df = pd.read_csv(io.StringIO(r.stdout))
    assert list(df["model"]) == ["alexnet", "vgg16"]
    vgg = df.set_index("model").loc["vgg16"]
    assert vgg["params"] == 138_357_544 and vgg["flops"] == 2 * vgg["macs"]
    for col in ("params", "macs", "flops", "activations", "activation_bytes", "param_bytes"):
        assert df[col].dtype.kind == "i", col
    written = pd.read_csv(tmp_path / "table_cpu_float32_b1_alexnet-vgg16.csv")
    assert written.equals(df)
    assert (tmp_path / "memory_vs_compute_cpu_float32_b1_alexnet-vgg16.png").stat().st_size > 10_000


def test_table_default_lineup_text(tmp_path):
    r = run(["table", "--out", str(tmp_path)])
    assert r.exit_code == 0
    for name in ("alexnet", "vgg16", "googlenet", "resnet50"):
        assert name in r.stdout
    assert "one fused multiply-add = 1" in r.stdout and "2 x MACs" in r.stdout
    assert "alexnet_paper" not in r.stdout


def test_table_wildcard_and_family():
    r = run(["table", "resnet*", "vgg", "--no-save", "--format", "csv"])
    names = pd.read_csv(io.StringIO(r.stdout))["model"].tolist()
    assert names[:5] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert "vgg19_bn" in names


def test_layer_breakdown_vgg16(tmp_path):
    r = run(["layer-breakdown", "vgg16", "--format", "csv", "--out", str(tmp_path)])
    assert r.exit_code == 0
    df = pd.read_csv(io.StringIO(r.stdout))
    convs = df[df["type"] == "Conv2d"]
    fcs = df[df["type"] == "Linear"]
    assert len(convs) == 13 and len(fcs) == 3
    assert fcs["layer"].tolist() == ["classifier.0", "classifier.3", "classifier.6"]
    first = convs.iloc[0]
    assert first["layer"] == "features.0" and first["output_shape"] == "1x64x224x224"
    assert first["params"] == 3 * 3 * 3 * 64 + 64
    assert first["macs"] == 224 * 224 * 64 * 3 * 3 * 3
    assert fcs.iloc[0]["params"] == 512 * 7 * 7 * 4096 + 4096
    assert fcs.iloc[0]["macs"] == 512 * 7 * 7 * 4096
    total = df[df["layer"] == "(total)"].iloc[0]
    table = pd.read_csv(io.StringIO(run(["table", "vgg16", "--no-save", "--format", "csv"]).stdout)).iloc[0]
    for col in ("params", "macs", "activations", "activation_bytes"):
        assert total[col] == table[col], col
    # FC layers hold most parameters; convolutions hold most compute
    assert fcs["params"].sum() > 0.85 * total["params"]
    assert convs["macs"].sum() > 0.99 * total["macs"]
    assert (tmp_path / "vgg16_layers_cpu_float32_b1.csv").exists() and (tmp_path / "vgg16_layers_cpu_float32_b1.png").exists()


def test_layer_breakdown_lenet5_shows_paper_figures():
    r = run(["layer-breakdown", "lenet5", "--format", "csv", "--no-save"])
    df = pd.read_csv(io.StringIO(r.stdout)).set_index("layer")
    assert [int(df.loc[k, "params"]) for k in ("c1", "s2", "c3.maps.0", "s4", "c5", "f6")][0] == 156
    depth1 = pd.read_csv(io.StringIO(run(["layer-breakdown", "lenet5", "--depth", "1", "--format",
                                          "csv", "--no-save"]).stdout)).set_index("layer")
    assert [int(depth1.loc[k, "params"]) for k in ("c1", "s2", "c3", "s4", "c5", "f6")] == \
        [156, 12, 1516, 32, 48120, 10164]
    assert int(depth1.loc["(total)", "params"]) == 60000


@pytest.mark.parametrize("args,needle", [
    (["table", "vgg17"], "did you mean"),
    (["table", "alexnet", "--input-size", "32"], "smallest square input that works is 3x63x63"),
    (["table", "alexnet", "--format", "xml"], "'xml' is not one of"),
    (["table", "alexnet", "--input-size", "3xfoo"], "is not N or CxHxW"),
    (["table", "alexnet", "--input-size", "0"], "<= 0"),
    (["table", "alexnet", "--batch-size", "0"], "--batch-size"),
    (["layer-breakdown", "nosuch"], "unknown model"),
    (["table", "lenet5", "--input-size", "3x32x32"], "lenet5 fails on input 3x32x32 at layer c1"),
])
def test_bad_input_one_line_exit_2(args, needle):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.output


def test_unwritable_out_exit_2_and_no_files(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = CliRunner().invoke(main, ["table", "alexnet", "--out", str(blocker / "sub")])
    assert r.exit_code == 2 and "cannot create output folder" in r.stderr


def test_failed_write_leaves_no_half_file(tmp_path, monkeypatch):
    from archcost.report import files

    frame = pd.DataFrame({"a": range(3)})

    def broken_to_csv(self, path, **kw):
        open(path, "w").write("a\n0\n")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken_to_csv)
    with pytest.raises(OSError):
        files.write_csv(tmp_path / "table.csv", frame)
    assert list(tmp_path.iterdir()) == []


def test_list_groups_by_family_and_csv_lists_all():
    r = run(["list", "--format", "csv"])
    df = pd.read_csv(io.StringIO(r.stdout))
    for n in ("lenet5", "alexnet_paper", "zfnet", "googlenet_paper", "densenet201", "xception",
              "se_resnet101", "resnext50_32x4d", "mobilenet_v2"):
        assert n in set(df["name"])
    text = run(["list"]).stdout
    assert "densenet\n  densenet121" in text


def test_ops_cross_check():
    r = run(["ops", "resnet18", "--format", "csv"])
    df = pd.read_csv(io.StringIO(r.stdout)).set_index("operator")
    assert df.loc["convolution", "difference"] == 0
