import json
import pathlib

import pytest

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tv_reference():
    """Facts about torchvision's networks (see data/make_torchvision_reference.py)."""
    return json.loads((DATA / "torchvision_reference.json").read_text())["models"]
