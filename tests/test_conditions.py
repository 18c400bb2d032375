"""A run's conditions as one value (issue #19): analyze() keeps its keywords, refuses the
unknown ones as Python does (TypeError, with the closest name), and takes a RunConditions."""

import pytest
import torch
import torch.nn as nn

from archcost.analysis import analyze
from archcost.conditions import RunConditions
from archcost.devices import DEVICES, by_key, names, parse_memory


def _net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())


def test_misspelled_keyword_on_a_module_is_a_type_error_with_the_closest_name():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'batchsize'.*'batch_size'"):
        analyze(_net(), input_size=(3, 8, 8), batchsize=8)


def test_misspelled_keyword_on_a_zoo_name_is_a_type_error():
    with pytest.raises(TypeError, match=r"'optimiser'.*'optimizer'"):
        analyze("lenet5", optimiser="adam", memory=False)


def test_conditions_value_equals_the_keywords():
    by_kw = analyze(_net(), input_size=(3, 8, 8), batch_size=4, memory=False).row
    by_value = analyze(_net(), conditions=RunConditions(input_size=(3, 8, 8), batch_size=4, memory=False)).row
    assert by_kw["macs"] == by_value["macs"] == 4 * 8 * 8 * 8 * 3 * 3 * 3
    # a keyword given beside the value overrides its field
    both = analyze(_net(), conditions=RunConditions(input_size=(3, 8, 8), batch_size=4, memory=False), batch_size=2)
    assert both.row["macs"] == 2 * 8 * 8 * 8 * 3 * 3 * 3


def test_bad_condition_values_are_one_line_errors():
    from archcost.errors import AnalysisError

    with pytest.raises(AnalysisError, match="unknown dtype"):
        RunConditions(dtype="float8").checked()
    with pytest.raises(AnalysisError, match="amp needs a lower precision"):
        RunConditions(amp=True, dtype=torch.float32).checked()


def test_one_resolver_for_every_device_name():
    # every listed name and alias resolves to one entry; budgets by name are that entry's memory
    for n in names():
        d = by_key(n)
        assert d is not None
        if d.memory_gib:
            assert parse_memory(n) == int(d.memory_gib * 2**30)
    # the names the two old tables disagreed on
    assert parse_memory("h100-pcie") == 80 * 2**30
    assert by_key("rtx3090").memory_gib == 24
    assert {d.key for d in DEVICES} <= set(names())


def test_cli_fit_and_roofline_take_the_devices_names():
    from click.testing import CliRunner

    from archcost.cli import main

    listed = CliRunner().invoke(main, ["devices", "--format", "csv"]).output.splitlines()[1:]
    keys = [line.split(",")[0] for line in listed]
    assert keys == [d.key for d in DEVICES]
    r = CliRunner().invoke(main, ["fit", "lenet5", "--memory", "h100-pcie", "--no-save", "--inference",
                                  "--max-batch", "4"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["roofline", "lenet5", "--target", "rtx3090", "--no-save"])
    assert r.exit_code == 2 and "memory only" in r.output
    r = CliRunner().invoke(main, ["roofline", "lenet5", "--target", "h100-pcie", "--no-save"])
    assert r.exit_code == 0, r.output
