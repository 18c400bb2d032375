"""The sqrt(n) reproduction on small networks: what each checkpoint set recomputes."""

import math

from archcost.count.build import build
from archcost.count.engine import module_records
from archcost.reproduce.checkpointing import checkpointing_claims, depth_exponent, sqrt_n_checkpointing


def _resnet(stages):
    from archcost.zoo.resnet import Bottleneck, ResNet

    return lambda: ResNet(Bottleneck, stages)


def test_resnet_chain_rows():
    """A ResNet chain (1, 1, 6, 1): 9 bottlenecks; sqrt(9) = 3: stage 3's six blocks in two
    runs of three, the other stages one run each (5 segments). A bottleneck ends in a ReLU
    that saves its output, so checkpointing recomputes every block whole: every block and
    the sqrt(n) runs both recompute the blocks' forward MACs: the forward less the stem's
    convolution and batch norm and the classifier."""
    import torch
    from archcost.memory.plan_profile import forward_macs

    rows = sqrt_n_checkpointing(batch=2, models=[("chain", "resnet-chain", _resnet((1, 1, 6, 1)))], size=64)
    by = {r["checkpoint"]: r for r in rows}
    assert by["blocks"]["blocks"] == 9 and by["blocks"]["segments"] == 9
    assert by["sqrt-n"]["segments"] == 1 + 1 + math.ceil(6 / 3) + 1
    model = build(_resnet((1, 1, 6, 1)), "meta", torch.float32)
    x = (torch.empty(2, 3, 64, 64, device="meta"),)
    total = forward_macs(model, x)
    assert by["none"]["macs"] == total and by["none"]["recompute_macs"] == 0
    stem = 2 * 64 * 3 * 7 * 7 * 32 * 32  # conv1: batch x out ch x in ch x 7 x 7 x 32 x 32 outputs
    fc = 2 * 2048 * 1000
    bn1 = 5 * 2 * 64 * 32 * 32  # train-mode batch norm: 5 MACs an element (count/rules.py)
    # the global average pool runs as aten.mean, which has no MAC rule at the ATen level
    # (fvcore's pooling rule applies to the adaptive_avg_pool2d call, named by NamingMode)
    assert by["blocks"]["recompute_macs"] == by["sqrt-n"]["recompute_macs"] == total - stem - fc - bn1
    assert by["none"]["activation_bytes"] > by["blocks"]["activation_bytes"]


def test_claims_read_the_rows():
    rows = [{"variant": f"{m}, {c}", "family": f, "checkpoint": c, "blocks": n, "activation_bytes": mem,
             "ratio_macs": 1.0 if c != "none" else 0.0, "recompute_macs": 10, "macs": 10}
            for m, f, n in (("resnet152", "resnet", 50), ("densenet201", "densenet", 98))
            for c, mem in (("none", 100), ("sqrt-n", 10))]
    rows += [{"variant": f"c{n}, {c}", "family": "resnet-chain", "checkpoint": c, "blocks": n,
              "activation_bytes": n ** p, "ratio_macs": 1.0, "recompute_macs": 1, "macs": 1}
             for n in (16, 64) for c, p in (("none", 1.0), ("sqrt-n", 0.5), ("blocks", 1.0))]
    assert depth_exponent(rows, "resnet-chain", "sqrt-n") == 0.5
    out = checkpointing_claims(lambda name: {r["variant"]: r for r in rows})
    assert [c[3] for c in out] == [1.0, 0.5, 1.0]
    assert out[1][6].startswith("holds")
