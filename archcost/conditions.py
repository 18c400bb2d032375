"""A run's conditions: input, batch, dtype, device and the passes asked for, as one typed
value (``RunConditions``) that ``analyze()`` builds from its keywords and hands to the passes.
Also the names the options accept (dtypes, engines) and the input-size and device parsers."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch

from archcost.errors import AnalysisError

InputSize = Union[int, Sequence[int], Sequence[Sequence[int]], None]

ENGINES = ("auto", "meta", "cpu", "fvcore")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}

# Error texts that mean "this input does not fit this network", not "meta cannot run it".

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")

MEMORY_ON = ("auto", "meta")  # RunConditions.memory_on


@dataclass(frozen=True)
class RunConditions:
    """Everything about one run except the model: what input, on what device, in what
    precision, and which passes. ``dtype`` is the compute dtype (the weights' dtype unless
    ``amp``: then float32 weights under ``torch.autocast(dtype)``)."""

    input_size: InputSize = None
    batch_size: int = 1
    dtype: torch.dtype = torch.float32
    engine: str = "auto"
    device: str = "cpu"
    memory: bool = True
    optimizer: str = "sgd"
    channels_last: bool = False
    amp: bool = False
    latency: bool = False
    layer_latency: bool = False
    repeats: int = 20
    warmup: int = 5
    time_budget_s: Optional[float] = None  # latency: time to a budget (at most ``repeats``)
    inputs: Optional[Sequence] = None
    input_kwargs: Optional[dict] = None
    record_ops: bool = False
    train: bool = False
    freeze: Tuple[str, ...] = ()
    checkpoint: Tuple[str, ...] = ()
    # Where the memory passes run on CPU: "auto" (meta tensors, with each kernel's scratch
    # measured on this CPU; real CPU tensors for ops whose fused kernel differs on meta:
    # attention, recurrent layers) or "meta" (meta tensors only, no kernel scratch: fast,
    # for a zoo; attention and recurrent layers then hold what meta's math decomposition holds).
    memory_on: str = "auto"

    @property
    def weight_dtype(self) -> torch.dtype:
        return torch.float32 if self.amp else self.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "") + (" (amp)" if self.amp else "")

    def checked(self) -> "RunConditions":
        """The conditions with names resolved (dtype string -> torch.dtype, device 'auto'),
        or an ``AnalysisError`` naming the value that is wrong and what would work."""
        dtype = self.dtype
        if isinstance(dtype, str):
            if dtype not in DTYPES:
                raise AnalysisError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
            dtype = DTYPES[dtype]
        if isinstance(dtype, torch.dtype) and dtype not in DTYPES.values():
            raise AnalysisError(f"dtype {dtype} is not one archcost runs a model in: use one of "
                                f"{', '.join(DTYPES)} (integer inputs such as token ids go in inputs=[...])")
        if not isinstance(dtype, torch.dtype):
            raise AnalysisError(f"dtype must be a torch.dtype or one of {', '.join(DTYPES)}, got {dtype!r}")
        for key, least in (("repeats", 1), ("warmup", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise AnalysisError(f"{key} must be an integer >= {least}, got {value!r}")
        budget = self.time_budget_s
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not 0 < budget < float("inf")):
            raise AnalysisError(f"time_budget_s must be a positive number of seconds, got {budget!r}")
        inputs = self.inputs
        if isinstance(inputs, torch.Tensor):
            inputs = (inputs,)  # one example tensor: the forward's one positional argument
        if inputs is not None and not isinstance(inputs, (list, tuple)):
            raise AnalysisError(f"inputs must be a list of the forward's positional arguments (tensors, or "
                                f"dicts/lists/tuples of tensors), got {type(inputs).__name__} {inputs!r:.40}")
        if inputs is not None and not len(inputs):
            raise AnalysisError("inputs is empty: give the forward's positional arguments (tensors, or "
                                "dicts/lists/tuples of tensors)")
        if self.input_kwargs is not None and not isinstance(self.input_kwargs, dict):
            raise AnalysisError(f"input_kwargs must be a dict of the forward's keyword arguments, got "
                                f"{type(self.input_kwargs).__name__}")
        if self.engine not in ENGINES:
            raise AnalysisError(f"unknown engine {self.engine!r}: use one of {', '.join(ENGINES)}")
        if self.optimizer not in OPTIMIZERS:
            raise AnalysisError(f"unknown optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        if self.memory_on not in MEMORY_ON:
            raise AnalysisError(f"unknown memory_on {self.memory_on!r}: use one of {', '.join(MEMORY_ON)}")
        if self.memory_on == "meta" and (self.amp or self.latency or self.layer_latency
                                         or resolve_device(self.device) != "cpu"):
            raise AnalysisError("memory_on='meta' measures memory on meta tensors standing for the CPU: not with "
                                "latency, amp or a GPU device (use memory_on='auto')")
        if self.amp and dtype == torch.float32:
            raise AnalysisError("amp needs a lower precision: add --dtype float16 or --dtype bfloat16")
        return dataclasses.replace(self, dtype=dtype, inputs=inputs, device=resolve_device(self.device),
                                   freeze=tuple(self.freeze), checkpoint=tuple(self.checkpoint))

    @property
    def real(self) -> bool:
        """Whether the memory and timing passes need real tensors (not meta)."""
        return self.device != "cpu" or self.amp or self.latency or self.layer_latency


FIELDS = tuple(f.name for f in dataclasses.fields(RunConditions))


def unknown_keyword(name: str, allowed: Sequence[str], where: str = "analyze()") -> TypeError:
    """The TypeError Python raises for an unexpected keyword, with the closest name."""
    close = difflib.get_close_matches(name, list(allowed), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return TypeError(f"{where} got an unexpected keyword argument {name!r}{hint}")


def parse_input_size(text: str) -> Tuple[int, ...]:
    """'224' -> (224,), '3x224x224' -> (3, 224, 224); raises ValueError with a hint."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"input size {text!r} is not N or CxHxW (e.g. 224 or 3x224x224)") from None
    if any(d <= 0 for d in dims):
        raise ValueError(f"input size {text!r} has a dimension <= 0; sizes must be positive")
    return dims

def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise AnalysisError("--device cuda, but torch sees no CUDA GPU here "
                            f"(torch {torch.__version__}); use --device cpu or auto")
    if device not in ("cpu", "cuda", "meta"):
        raise AnalysisError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device
