"""The one error type a user sees as a single line (the CLI prints it and exits 2)."""


class AnalysisError(ValueError):
    """A problem with the model or its input, phrased for the user (one line)."""
