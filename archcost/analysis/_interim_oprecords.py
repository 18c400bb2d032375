"""TEMPORARY stand-in for the counting engine's per-operator records (issue #12), used only
while ``PassResult`` has no ``ops``: a TorchDispatchMode over a forward on meta tensors
records, per ATen operator, the innermost module, the bytes of its distinct operand
storages and outputs, and MACs from torch.utils.flop_counter's ATen formulas (FLOPs / 2;
batch norm and other ops without a formula count 0 here). Removed when the engine lands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


@dataclass
class OpRecord:
    module: str
    op: str
    macs: int
    bytes_read: int
    bytes_written: int
    inplace: bool


class _Mode(TorchDispatchMode):
    def __init__(self, stack, records):
        super().__init__()
        self.stack, self.records = stack, records
        from torch.utils.flop_counter import flop_registry

        self.flops = flop_registry

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func._schema.is_mutable is False and any(a.alias_info for a in func._schema.returns) and \
                not any(a.alias_info.is_write for a in func._schema.returns if a.alias_info):
            return out  # a view
        ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not outs:
            return out
        packet = func._overloadpacket
        rule = self.flops.get(packet)
        macs = 0
        if rule is not None:
            try:
                macs = int(rule(*args, **kwargs, out_val=out)) // 2
            except TypeError:
                macs = 0
        name = packet.__name__.replace("aten.", "")
        if "batch_norm" in name:  # fvcore's inference rule: 1 per element, 2 with affine
            macs = ins[0].numel() * (2 if len(args) > 1 and args[1] is not None else 1)
        elif name == "_adaptive_avg_pool2d":  # fvcore: 1 per input element
            macs = ins[0].numel()
        in_ids = {id(t.untyped_storage()) for t in ins}
        inplace = any(id(t.untyped_storage()) in in_ids for t in outs)
        read = sum(t.numel() * t.element_size() for t in {id(t.untyped_storage()): t for t in ins}.values())
        written = sum(t.numel() * t.element_size() for t in outs)
        name = packet.__name__.replace("aten.", "")
        self.records.append(OpRecord(self.stack[-1] if self.stack else "", name, macs, read, written, inplace))
        return out


def op_records(model, inputs) -> List[OpRecord]:
    from .engine import module_hooks

    stack: List[str] = []
    records: List[OpRecord] = []
    with module_hooks(model, lambda n, a: stack.append(n), lambda n, o: stack.pop()), torch.no_grad(), \
            _Mode(stack, records):
        model(*inputs)
    return records


def for_analysis(model, input_size, batch_size, dtype) -> List[OpRecord]:
    """Records for a zoo name / file:builder / module, as ``analyze`` would build it (meta)."""
    from .analyze import DTYPES, _build, _make_inputs, _resolve, input_shapes

    dt = DTYPES[dtype] if isinstance(dtype, str) else dtype
    name, spec, builder, module = _resolve(model, {})
    shapes = input_shapes(input_size, spec.input_size if spec else None, batch_size)
    if module is None:
        module = _build(builder, "meta", dt)
    dev = next((p.device for p in module.parameters()), torch.device("meta"))
    return op_records(module, _make_inputs(shapes, dev, dt))
