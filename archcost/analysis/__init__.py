"""The facade: ``analyze()`` takes a model and its run conditions and joins the counting,
memory, roofline and timing passes into one ``Analysis`` of frames. Imports every layer below."""

from .analyze import Analysis, analyze  # noqa: F401
from archcost.errors import AnalysisError  # noqa: F401
