"""Issue #22, "Expected of a well-kept package": LICENSE, CHANGELOG, python -m archcost,
shell completion, fit/roofline/diff/check in the Python API, a notebook-friendly Analysis."""

import pathlib
import subprocess
import sys
import textwrap
import tomllib

import pandas as pd
import pytest
import torch.nn as nn

import archcost
from archcost.errors import AnalysisError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_license_matches_pyproject_and_changelog_exists():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"]["text"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{project['version']}]" in changelog


def test_python_dash_m_and_completion():
    r = subprocess.run([sys.executable, "-m", "archcost", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and archcost.__version__ in r.stdout
    from archcost.cli import main

    env = {"_ARCHCOST_COMPLETE": "bash_complete", "COMP_WORDS": "archcost ta", "COMP_CWORD": "1"}
    from click.testing import CliRunner

    out = CliRunner().invoke(main, [], prog_name="archcost", env=env).output
    assert "table" in out
    readme = (ROOT / "README.md").read_text()
    assert "_ARCHCOST_COMPLETE=bash_source archcost" in readme and "python -m archcost" in readme


def test_fit_from_the_api():
    r = archcost.fit("lenet5", "1MiB", train=False)
    assert r.batch >= 1 and r.needed_bytes <= 2**20
    with pytest.raises(AnalysisError):
        archcost.fit("lenet5", "lots")


def test_roofline_from_the_api():
    layers, summary = archcost.roofline_of("lenet5", target="a100-80gb")
    assert int(summary["macs"].iloc[0]) == int(archcost.analyze("lenet5", memory=False).row["macs"])
    assert len(layers) and "time_bound_ms" in layers


def test_diff_from_the_api():
    a = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    b = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    frame = archcost.diff(a, b, input_size=(4,))
    total = frame[frame["layer"] == "(total)"].iloc[0]
    assert total["params_delta"] == (4 * 16 + 16 + 16 * 2 + 2) - (4 * 8 + 8 + 8 * 2 + 2)
    assert set(frame["status"]) >= {"changed"}


def test_check_from_the_api(tmp_path):
    net = tmp_path / "net.py"
    net.write_text(textwrap.dedent("""
        import torch.nn as nn
        def build():
            return nn.Linear({n}, 2)
        """).format(n=4))
    from click.testing import CliRunner

    from archcost.cli import main

    base = tmp_path / "base.csv"
    assert CliRunner().invoke(main, ["check", "--update", "--baseline", str(base), f"{net}:build",
                                     "--input-size", "4"]).exit_code == 0
    assert len(archcost.check(base)) == 0
    net.write_text(net.read_text().replace("nn.Linear(4, 2)", "nn.Linear(4, 3)"))
    drift = archcost.check(base)
    params = drift[(drift["layer"] == "(total)") & (drift["column"] == "params")].iloc[0]
    assert params["delta"] == (4 * 3 + 3) - (4 * 2 + 2) and params["status"] == "changed"
    with pytest.raises(AnalysisError):
        archcost.check(base, tolerance=float("nan"))


def test_analysis_repr_is_short_and_html_is_a_table():
    a = archcost.analyze("resnet18", memory=False)
    text = repr(a)
    assert "\n" not in text and len(text) < 200
    assert f"params={int(a.row['params'])}" in text
    page = a._repr_html_()
    assert page.count("<table") == 2 and "resnet18" in page
    assert f"{len(a.layers) - 12} more rows" in page
