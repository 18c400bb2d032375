"""Models named by the libraries people use: ``timm:NAME``, ``torchvision:NAME`` (``tv:NAME``)
and ``hf:TYPE`` / ``hf:path/to/config.json``, beside zoo names and ``file.py:builder``.

Nothing is downloaded: timm builds with ``pretrained=False``, torchvision with
``weights=None`` and ``weights_backbone=None`` (the weights enum is read only for its
documented input size), Hugging Face from a configuration (a model type's defaults through
``AutoConfig.for_model``, or a local ``config.json``) through ``AutoModel.from_config``.
The default input comes from the library:

- timm: the model's ``pretrained_cfg["input_size"]`` (C, H, W);
- torchvision: a ViT's own ``image_size``; otherwise the default weights' documented
  evaluation transform (``crop_size``; segmentation: ``resize_size``); video models take
  clips of ``VIDEO_FRAMES`` frames; detection and optical-flow models document no single
  size and need ``--input-size``;
- Hugging Face: ``pixel_values`` of the config's ``num_channels`` x ``image_size`` for
  image models; token ids for text models, ``DEFAULT_SEQ_LEN`` tokens (or ``seq_len``)
  capped by the config's maximum positions.

Token ids are ``torch.randint(vocab_size)`` from a generator seeded with 0, shape
(batch, seq_len); an encoder-decoder also gets ``decoder_input_ids`` of the same shape
(passed at its position, the parameters between given as None). No attention mask is
passed: the models build the all-ones mask themselves, as for unpadded sequences.
A missing library is one line naming the extra to install (``pip install 'archcost[timm]'``).
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import importlib.util
import inspect
import pathlib
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .custom import BuilderError

# Library prefixes of a model name; ``tv`` is short for ``torchvision``.
PREFIXES = {"timm": "timm", "torchvision": "torchvision", "tv": "torchvision", "hf": "hf"}
EXTRAS = {"timm": "timm", "torchvision": "torchvision", "hf": "hf"}  # pyproject optional-dependencies
PACKAGES = {"timm": "timm", "torchvision": "torchvision", "hf": "transformers"}

# Token length of a text model when none is given: 128, the sequence length of BERT's GLUE
# fine-tuning runs (Devlin et al. 2019, appendix A.3) and a common default of tokenizers'
# padding in benchmarks; capped by the model's maximum positions.
DEFAULT_SEQ_LEN = 128
# torchvision's video classifiers are trained and evaluated on clips of 16 frames
# (references/video_classification: --clip-len 16).
VIDEO_FRAMES = 16
TOKEN_SEED = 0


class SourceError(BuilderError):
    """A library model that cannot be named, built or fed: one line, exit 2."""


class MissingLibrary(SourceError):
    """The library behind a prefix is not installed (or does not import)."""


@dataclass(frozen=True)
class TokenInput:
    """A text model's input: integer token ids, (batch, seq_len), seeded.

    It stands where an image model's default (C, H, W) stands (``Source.input_size``), and
    the input-size rule asks it for the inputs: ``shapes(input_size, batch_size)`` gives
    the example inputs, an ``input_size`` of N (or ``--seq-len N``) being N tokens."""

    vocab_size: int
    max_seq_len: Optional[int] = None
    decoder_position: Optional[int] = None  # encoder-decoder: decoder_input_ids' positional index
    ref: str = ""

    def seq_len(self, seq_len: Optional[int] = None) -> int:
        """The token length used: ``seq_len`` (checked against the model's maximum) or the default."""
        if seq_len is None:
            return min(DEFAULT_SEQ_LEN, self.max_seq_len or DEFAULT_SEQ_LEN)
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise SourceError(f"a token length must be a positive integer, got {seq_len!r}")
        if self.max_seq_len and seq_len > self.max_seq_len:
            raise SourceError(f"{seq_len} tokens is longer than {self.ref or 'the model'} takes ({self.max_seq_len} "
                              "positions in its config): give --seq-len of at most that")
        return seq_len

    def shapes(self, input_size=None, batch_size: int = 1) -> list:
        """The positional inputs: ids of shape (batch, N) for ``input_size`` N, (N,) or None
        (the default length); an encoder-decoder's decoder ids too, at their position."""
        import torch

        if input_size is None:
            length = None
        elif isinstance(input_size, int) and not isinstance(input_size, bool):
            length = input_size
        elif isinstance(input_size, (tuple, list)) and len(input_size) == 1 and isinstance(input_size[0], int):
            length = input_size[0]
        else:
            raise SourceError(f"{self.ref or 'a text model'} takes token ids: give --seq-len N (or --input-size N) "
                              f"for N tokens, not {input_size!r}")
        length = self.seq_len(length)
        gen = torch.Generator().manual_seed(TOKEN_SEED)
        ids = torch.randint(0, self.vocab_size, (batch_size, length), generator=gen)
        if self.decoder_position is None:
            return [ids]
        return [ids] + [None] * (self.decoder_position - 1) + [ids.clone()]

    def describe(self) -> str:
        return f"token ids, {self.seq_len()} by default (--seq-len)"


@dataclass(frozen=True)
class SeqLen:
    """A run's ``--seq-len``: the token length for text models; ``other`` (the run's
    ``--input-size``, or None for each model's default) for the models that take images."""

    tokens: int
    other: object = None


def token_shapes(input_size, default, batch_size: int):
    """The rule's token part: (inputs, None) when ``default`` is a text model's
    :class:`TokenInput`; otherwise (None, the input size that applies to an image model)."""
    if isinstance(input_size, SeqLen):
        input_size = input_size.tokens if isinstance(default, TokenInput) else input_size.other
    if isinstance(default, TokenInput):
        return default.shapes(input_size, batch_size), None
    return None, input_size


@dataclass(frozen=True)
class Source:
    """A model from a library: how to build it (no weights) and what it takes by default.

    ``input_size``: the per-sample image size (C, H, W) (video: C, T, H, W), like a zoo
    model's ``ModelSpec.input_size``; a :class:`TokenInput` for text models; None for
    models that document no size (``input_note`` says so)."""

    ref: str  # canonical name: timm:NAME, torchvision:NAME, hf:TYPE or hf:PATH
    library: str  # timm | torchvision | hf
    name: str
    family: str
    builder: Callable = field(repr=False, compare=False)
    input_size: object = None
    input_note: str = ""  # where the default input comes from
    config: object = field(default=None, repr=False, compare=False)  # hf: the transformers config

    @property
    def tokens(self) -> bool:
        return isinstance(self.input_size, TokenInput)

    def token_inputs(self, batch_size: int = 1, seq_len: Optional[int] = None):
        """(positional inputs, keyword inputs) of a token model: seeded integer ids."""
        if not self.tokens:
            raise SourceError(f"{self.ref} takes {self.input_note or 'images'}, not tokens")
        return tuple(self.input_size.shapes(seq_len, batch_size)), {}

    def build(self, **kwargs):
        return self.builder(**kwargs)


def is_source(ref) -> bool:
    """Whether ``ref`` names a library model (``timm:``, ``torchvision:``, ``tv:``, ``hf:``)."""
    prefix, sep, rest = str(ref).partition(":")
    return bool(sep) and prefix.lower() in PREFIXES and bool(rest)


def split(ref: str) -> Tuple[str, str]:
    prefix, _, rest = str(ref).partition(":")
    return PREFIXES[prefix.lower()], rest


def load_library(library: str):
    """Import a source's library, or one line naming the extra to install."""
    package = PACKAGES[library]
    extra = EXTRAS[library]
    if importlib.util.find_spec(package) is None:
        raise MissingLibrary(f"{library}: models need the {package} package, which is not installed: "
                             f"pip install 'archcost[{extra}]'")
    _check_torchvision(library)
    try:
        return importlib.import_module(package)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MissingLibrary(f"{package} is installed but failed to import ({type(exc).__name__}: {first}): "
                             f"reinstall it, pip install --force-reinstall 'archcost[{extra}]'") from None


def _check_torchvision(library: str) -> None:
    """timm and transformers import torchvision when it is installed: a torchvision built for
    another torch (a CUDA wheel beside a CPU torch) fails there, so say that, not 'timm failed'."""
    if importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401
    except Exception as exc:
        import torch

        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        version = _dist_version("torchvision")
        raise MissingLibrary(
            f"torchvision {version} does not import with torch {torch.__version__} ({first})"
            + (f", and {PACKAGES[library]} imports it" if library != "torchvision" else "")
            + ": install the torchvision built for this torch (for a CPU torch: pip install torchvision "
              "--index-url https://download.pytorch.org/whl/cpu)") from None


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


# --- listing -------------------------------------------------------------------------------


def list_sources(pattern: str) -> List[str]:
    """Canonical names matching ``prefix:PATTERN`` (shell wildcards, case-insensitive),
    sorted naturally; an exact name is one entry (checked to exist)."""
    library, rest = split(pattern)
    if not any(ch in rest for ch in "*?["):
        return [resolve(pattern).ref]
    prefix = "torchvision" if library == "torchvision" else library
    names = _names(library)
    low = rest.lower()
    return [f"{prefix}:{n}" for n in sorted((n for n in names if fnmatch.fnmatchcase(n.lower(), low)),
                                            key=_natural_key)]


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _names(library: str) -> List[str]:
    if library == "timm":
        return list(load_library("timm").list_models())
    if library == "torchvision":
        load_library("torchvision")
        from torchvision.models import list_models

        return list(list_models())
    load_library("hf")
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    return list(MODEL_MAPPING_NAMES)


def family(ref: str) -> str:
    """The family a library model belongs to (timm/torchvision: its module; hf: model type)."""
    library, rest = split(ref)
    if library == "timm":
        return _timm_modules().get(rest, "timm")
    if library == "torchvision":
        return _tv_modules().get(rest, "torchvision")
    return resolve(ref).family


@functools.lru_cache(maxsize=None)
def _timm_modules() -> Dict[str, str]:
    timm = load_library("timm")
    return {m: mod for mod in timm.list_modules() for m in timm.list_models(module=mod)}


@functools.lru_cache(maxsize=None)
def _tv_modules() -> Dict[str, str]:
    load_library("torchvision")
    import torchvision.models as tm
    from torchvision.models import list_models

    out = {}
    for sub in ("video", "segmentation", "detection", "optical_flow", "quantization"):
        for n in list_models(module=getattr(tm, sub)):
            out[n] = sub
    for n in list_models(module=tm):
        out.setdefault(n, n.rstrip("0123456789_").split("_")[0] or "torchvision")
    return out


# --- resolving -----------------------------------------------------------------------------


def resolve(ref: str) -> Source:
    """The :class:`Source` of a ``timm:``, ``torchvision:``/``tv:`` or ``hf:`` name."""
    if not is_source(ref):
        raise SourceError(f"{ref!r} is not a library model: use timm:NAME, torchvision:NAME (tv:NAME) or "
                          "hf:TYPE / hf:path/config.json")
    library, rest = split(ref)
    if any(ch in rest for ch in "*?["):
        raise SourceError(f"{ref!r} is a pattern; this needs one model (`archcost list '{ref}'` shows the matches)")
    return {"timm": _timm, "torchvision": _torchvision, "hf": _hf}[library](rest)


def _close(name: str, names: List[str], ref: str, what: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"`archcost list '{ref}:*'` lists them"
    return f"unknown {what} {name!r}: {hint}"


def _timm(name: str) -> Source:
    timm = load_library("timm")
    from timm.models import get_arch_name, is_model

    arch = get_arch_name(name)
    if not is_model(arch):
        raise SourceError(_close(name, timm.list_models(), "timm", "timm model"))
    cfg = timm.get_pretrained_cfg(name, allow_unregistered=False) if "." in name else timm.get_pretrained_cfg(arch)
    size = tuple(cfg.input_size) if cfg is not None and cfg.input_size else None
    note = "timm pretrained_cfg['input_size']" if size else ""
    if size is None:
        size, note = (3, 224, 224), "timm gives no input_size for it: 3x224x224, timm's default"

    def build(**kwargs):
        # pretrained=False: random initialisation, nothing downloaded.
        return timm.create_model(name, pretrained=False, **kwargs)

    return Source(f"timm:{name}", "timm", name, _timm_modules().get(arch, "timm"), build, size, note)


def _torchvision(name: str) -> Source:
    load_library("torchvision")
    from torchvision.models import get_model, get_model_builder, get_model_weights, list_models

    if name not in list_models():
        raise SourceError(_close(name, list_models(), "torchvision", "torchvision model"))
    fam = _tv_modules().get(name, "torchvision")
    fn = get_model_builder(name)

    def build(**kwargs):  # random initialisation: no weights, nor a backbone's (detection would download them)
        if "weights_backbone" in inspect.signature(fn).parameters:
            kwargs.setdefault("weights_backbone", None)
        return get_model(name, weights=None, **kwargs)

    size, note = _tv_input(name, fam, fn, get_model_weights)
    return Source(f"torchvision:{name}", "torchvision", name, fam, build, size, note)


def _tv_input(name, fam, fn, get_model_weights):
    """torchvision's documented input size for ``name`` built with weights=None."""
    if fam in ("detection", "optical_flow"):
        return None, (f"torchvision documents no single input size for {fam.replace('_', ' ')} models: "
                      "give --input-size")
    try:
        weights = list(get_model_weights(name))
    except Exception:
        weights = []
    vit = _tv_vit_size(name)
    if vit:
        return (3, vit, vit), "torchvision ViT's image_size (weights=None)"
    for w in weights:  # the first (IMAGENET1K_V1-style) weights document the architecture's size
        kw = getattr(w.transforms, "keywords", {}) or {}
        size = kw.get("crop_size") or kw.get("resize_size")
        if size is None:
            continue
        hw = tuple(size) if isinstance(size, (tuple, list)) else (size,)
        h, w_ = (hw[0], hw[0]) if len(hw) == 1 else hw[:2]
        what = "crop_size" if kw.get("crop_size") else "resize_size"
        if fam == "video":
            return (3, VIDEO_FRAMES, h, w_), (f"torchvision weights' {what} {h}x{w_}, clips of "
                                              f"{VIDEO_FRAMES} frames")
        return (3, h, w_), f"torchvision {w} transforms' {what}"
    return None, f"torchvision documents no input size for {name}: give --input-size"


def _tv_vit_size(name: str) -> Optional[int]:
    """A torchvision ViT built with weights=None fixes its image size (224), whatever the
    default weights' size (vit_h_14's are 518): read it from the model built on meta."""
    if not name.startswith("vit_"):
        return None
    import torch
    from torchvision.models import get_model

    with torch.device("meta"):
        return getattr(get_model(name, weights=None), "image_size", None)


def _hf(spec: str) -> Source:
    load_library("hf")
    from transformers import AutoConfig

    path = pathlib.Path(spec)
    if spec.endswith(".json") or "/" in spec or path.exists():
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise SourceError(f"hf:{spec}: no such config file (name a local config.json, or a model type "
                              "like hf:bert)")
        try:
            config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SourceError(f"hf:{spec} is not a transformers config.json: {first}") from None
        ref = f"hf:{spec}"
    else:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        if spec not in CONFIG_MAPPING:
            raise SourceError(_close(spec, list(CONFIG_MAPPING.keys()), "hf", "Hugging Face model type"))
        config = AutoConfig.for_model(spec)
        ref = f"hf:{spec}"
    return hf_source(config, ref)


def _decoder_position(cls) -> int:
    """Where ``decoder_input_ids`` stands among the forward's positional parameters."""
    import inspect

    names = [p for p in inspect.signature(cls.forward).parameters if p != "self"]
    if "decoder_input_ids" not in names:
        raise SourceError(f"{cls.__name__} is an encoder-decoder without decoder_input_ids: use the Python API")
    return names.index("decoder_input_ids")


def hf_source(config, ref: Optional[str] = None, auto_class: str = "AutoModel") -> Source:
    """A :class:`Source` for a transformers config object (tests pass small configs;
    ``auto_class`` e.g. ``AutoModelForCausalLM`` for the language-model head)."""
    import transformers

    auto = getattr(transformers, auto_class)
    model_type = getattr(config, "model_type", "") or type(config).__name__
    ref = ref or f"hf:{model_type}"
    try:
        cls = auto._model_mapping[type(config)]
    except Exception:
        raise SourceError(f"{ref}: transformers has no {auto_class} for model type {model_type!r}") from None

    def build(**kwargs):
        return auto.from_config(config, **kwargs)

    main = getattr(cls, "main_input_name", "input_ids")
    text = getattr(config, "get_text_config", lambda: config)()
    if main == "input_ids":
        vocab = getattr(text, "vocab_size", None)
        if not vocab:
            raise SourceError(f"{ref}: its config gives no vocab_size to draw token ids from")
        longest = next((getattr(text, k) for k in ("max_position_embeddings", "n_positions", "max_seq_len",
                                                    "seq_length") if isinstance(getattr(text, k, None), int)), None)
        tokens = TokenInput(vocab, longest, _decoder_position(cls) if getattr(config, "is_encoder_decoder", False)
                            else None, ref)
        return Source(ref, "hf", ref[3:], model_type, build, tokens, tokens.describe(), config)
    if main == "pixel_values":
        vision = getattr(config, "vision_config", config)
        size = getattr(vision, "image_size", None)
        channels = getattr(vision, "num_channels", 3)
        if isinstance(size, (tuple, list)):
            h, w = size[:2]
        elif isinstance(size, dict):
            h, w = size.get("height", 224), size.get("width", 224)
        else:
            h = w = size
        if not h:
            raise SourceError(f"{ref}: its config gives no image_size: give --input-size")
        return Source(ref, "hf", ref[3:], model_type, build, (int(channels), int(h), int(w)),
                      "Hugging Face config's num_channels x image_size", config=config)
    raise SourceError(f"{ref}: {cls.__name__} takes {main!r}; archcost feeds token ids (input_ids) and images "
                      "(pixel_values): for other inputs use the Python API, analyze(model, inputs=[...])")


# --- any model reference ---------------------------------------------------------------------

_RUNNING = [None]  # the model last resolved: the one whose code runs now (named in errors)


def running_model():
    """The name of the model whose builder or forward runs now (None before any)."""
    return _RUNNING[0]


def resolve_model(model_or_name, builder_kwargs):
    """A zoo name, a library model (``timm:``, ``torchvision:``/``tv:``, ``hf:``), a
    ``file.py:builder`` / ``module:builder`` reference or an ``nn.Module``
    -> (name, spec or None, builder or None, module or None). A library model's spec is its
    :class:`Source` (``input_size``, ``family`` as a zoo spec has them)."""
    import torch.nn as nn

    from archcost.errors import AnalysisError

    if isinstance(model_or_name, nn.Module):
        _RUNNING[0] = type(model_or_name).__name__
        return type(model_or_name).__name__, None, None, model_or_name
    from archcost.zoo.custom import resolve_builder
    from archcost.zoo.registry import get_spec

    name = str(model_or_name)
    _RUNNING[0] = name
    if is_source(name):
        source = resolve(name)
        return name, source, lambda: source.builder(**builder_kwargs), None
    if ":" in name:
        builder = resolve_builder(name)
        return name, None, lambda: builder(**builder_kwargs), None
    try:
        spec = get_spec(name)
    except KeyError as exc:
        raise AnalysisError(exc.args[0]) from None
    return name, spec, lambda: spec.builder(**builder_kwargs), None
