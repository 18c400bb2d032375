"""archcost: what a CNN architecture really costs — parameters, multiply-adds, memory, time.

Conventions: ``macs`` counts one fused multiply-add as 1; ``flops = 2 * macs``; ``*_bytes``
are bytes. Heavy imports (torch) happen on first use, so ``archcost --help`` stays fast.
"""

__version__ = "0.1.0"

__all__ = ["analyze", "fit", "roofline_of", "diff", "check", "get_model", "list_models", "register_model", "get_spec",
           "ModelSpec"]


def __getattr__(name):
    if name == "analyze":
        from .analysis import analyze
        return analyze
    if name in ("fit", "roofline_of", "diff", "check"):
        from . import api  # roofline_of: ``archcost.roofline`` is the package of the roofline's passes

        return getattr(api, "roofline" if name == "roofline_of" else name)
    if name in ("get_model", "list_models", "register_model", "get_spec", "ModelSpec"):
        from .zoo import registry
        return getattr(registry, name)
    raise AttributeError(f"module 'archcost' has no attribute {name!r}")
