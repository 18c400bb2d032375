"""Report file names: different runs write different files.

A name is ``<kind>_<conditions>[_<what>]``:

- conditions: ``<device>_<dtype>[-amp][_nhwc]`` then the batch (``_b8``; a sweep's range
  ``_b1-64``), then only what differs from the default: ``_in<input size>`` when
  ``--input-size`` is given (``_in3x256x256``, several inputs joined by ``+``), ``_seq<N>``
  with ``--seq-len``, the
  optimizer when it is not sgd (``_adam``), ``_latency`` when timed (a sweep without
  timing: ``_nolatency``), ``_nomem`` without the memory passes, ``_d<N>`` for ``--depth``;
- a model file's reference (``path/net.py:build``) becomes ``net_py_build-<hash>``: the hash
  of the file's absolute path tells apart ``d1/net.py`` and ``d2/net.py``;
- what: ``--name NAME`` when given, else for a model set other than the command's
  default a suffix derived from it: the names joined by ``-`` (``table_cpu_float32_b1_alexnet``),
  or, past 48 characters, the count and a hash of the sorted names (``_15models-3f2a9c1e``).

Defaults add nothing, so a plain ``archcost table`` still writes ``table_cpu_float32_b1.csv``.
"""

import hashlib

MAX_SUBSET = 48


def stem(text: str) -> str:
    """A file-name-safe form of a model name or reference. A model file's reference adds a
    short hash of the file's absolute path, so two files of one name in different folders
    get different reports (``./nets/my.py:build`` -> ``my_py_build-1a2b3c``)."""
    text = str(text).replace("\\", "/")
    target, sep, _ = text.rpartition(":")
    tag = ""
    if sep and (target.endswith(".py") or "/" in target):
        import os

        tag = "-" + hashlib.sha1(os.path.abspath(target).encode()).hexdigest()[:6]
    text = text.split("/")[-1]
    return ("".join(ch if ch.isalnum() or ch in "-_+" else "_" for ch in text).strip("_") or "model") + tag


def size_token(input_size) -> str:
    """(3, 256, 256) -> '3x256x256'; [(3, 8, 8), (5,)] -> '3x8x8+5'; None -> ''."""
    if input_size is None:
        return ""
    if isinstance(input_size, int):
        return str(input_size)
    if len(input_size) and all(isinstance(s, (tuple, list)) for s in input_size):
        return "+".join("x".join(map(str, s)) for s in input_size)
    return "x".join(map(str, input_size))


def conditions(device_slug, dtype, amp=False, channels_last=False, batch=None, input_size=None,
               optimizer="sgd", extra=()) -> str:
    """``device_dtype[-amp][_nhwc][_bN][_in...][_optimizer][_extra...]`` (see the module docstring)."""
    parts = [f"{device_slug}_{dtype}" + ("-amp" if amp else "") + ("_nhwc" if channels_last else "")]
    if batch is not None:
        parts.append(f"b{batch}")
    seq = getattr(input_size, "tokens", None)  # --seq-len (a SeqLen: tokens, and the image sizes beside)
    size = size_token(input_size.other if seq is not None else input_size)
    if size:
        parts.append(f"in{size}")
    if seq is not None:
        parts.append(f"seq{seq}")
    if optimizer and optimizer != "sgd":
        parts.append(optimizer)
    parts += [e for e in extra if e]
    return "_".join(parts)


def subset(names, default=None, name=None) -> str:
    """The ``_<what>`` suffix: ``--name`` when given, '' for the default set, else derived
    from the model names."""
    if name:
        return "_" + stem(name)
    names = list(names)
    if not names or (default is not None and list(default) == names):
        return ""
    joined = "-".join(stem(n) for n in names)
    if len(joined) <= MAX_SUBSET:
        return "_" + joined
    digest = hashlib.sha1("\n".join(sorted(names)).encode()).hexdigest()[:8]
    return f"_{len(names)}models-{digest}"


def zoo_stem(patterns, name=None) -> str:
    """The ``<what>`` of a zoo run's files (``<what>_zoo_<conditions>``): ``--name``, else
    the patterns it was given, so a rerun finds its CSV again: ``'timm:*'`` -> ``timm``,
    ``'timm:*convnext*'`` -> ``timm_convnext``; past 48 characters, their count and a hash."""
    if name:
        return stem(name)
    parts = []
    for p in patterns:
        text = "".join(ch if ch.isalnum() or ch in "-+" else "_" for ch in str(p).replace("\\", "/").split("/")[-1])
        parts.append("_".join(t for t in text.split("_") if t) or "models")
    joined = "-".join(parts)
    if len(joined) <= MAX_SUBSET:
        return joined
    digest = hashlib.sha1("\n".join(sorted(patterns)).encode()).hexdigest()[:8]
    return f"{len(parts)}patterns-{digest}"
