"""The passes that measure a model. Nothing here formats numbers (see archcost.report)."""

from .analyze import Analysis, analyze  # noqa: F401
from .engine import AnalysisError  # noqa: F401
