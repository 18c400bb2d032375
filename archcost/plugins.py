"""Third-party models: packages add theirs through the ``archcost.models`` entry-point
group; each entry point names a module (importing it registers its models with
``archcost.register_model``) or a callable taking no arguments that does."""

_loaded = False


def load_entry_points() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="archcost.models"):
        obj = ep.load()
        if callable(obj):
            obj()
