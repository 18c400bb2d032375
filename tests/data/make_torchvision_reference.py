"""Regenerate ``torchvision_reference.json``: facts about torchvision's networks.

The tests compare archcost's torchvision-named models against this file, so that
"same network as torchvision" is checked against torchvision itself, not against
archcost's own output. Run it where torchvision imports:

    python tests/data/make_torchvision_reference.py

For each model it records the state_dict signature (every key with its shape),
the parameter count, fvcore's MAC total on a 1x3x224x224 input (fvcore counts one
fused multiply-add as one "flop"), and torchvision's published weight metadata
(num_params, GFLOPS, ImageNet acc@1/acc@5) of the IMAGENET1K_V1 weights.
"""

import json
import pathlib
import warnings

import fvcore
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis
from torchvision import models

NAMES = [
    "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn",
    "vgg19_bn", "googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "densenet121", "densenet161", "densenet169", "densenet201", "resnext50_32x4d",
    "mobilenet_v2",
]


def signature(module):
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def main():
    torch.manual_seed(0)
    out = {
        "_provenance": {
            "torchvision": torchvision.__version__,
            "torch": torch.__version__,
            "fvcore": getattr(fvcore, "__version__", "unknown"),
            "input": [1, 3, 224, 224],
            "note": "fvcore_macs: FlopCountAnalysis(model.eval(), x).total() on torchvision's network",
        },
        "models": {},
    }
    for name in NAMES:
        kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
        model = models.get_model(name, **kwargs).eval()
        weights = models.get_model_weights(name).IMAGENET1K_V1  # the original recipe
        x = torch.randn(1, 3, 224, 224)
        fca = FlopCountAnalysis(model, x)
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs = fca.total()
        metrics = weights.meta["_metrics"]["ImageNet-1K"]
        entry = {
            "params": sum(p.numel() for p in model.parameters()),
            "fvcore_macs": int(macs),
            "state_dict": signature(model),
            "weights": {
                "name": str(weights),
                "num_params": weights.meta["num_params"],
                "gflops": weights.meta["_ops"],
                "acc@1": metrics["acc@1"],
                "acc@5": metrics["acc@5"],
                "recipe": weights.meta.get("recipe"),
            },
        }
        if name == "googlenet":
            aux = models.googlenet(aux_logits=True, init_weights=False)
            entry["state_dict_with_aux"] = signature(aux)
        out["models"][name] = entry
        print(name, entry["params"], entry["fvcore_macs"])
    path = pathlib.Path(__file__).with_name("torchvision_reference.json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
