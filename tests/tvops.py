"""Test helper: torchvision's wheel here is a CUDA build whose C++ ops do not load; define
``torchvision::nms`` in Python (greedy NMS, as the C++ kernel does) so that detection models run."""
import sys
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
import torch  # noqa: E402
import torchvision  # noqa: E402
import torchvision.extension  # noqa: E402

if not torchvision.extension._has_ops():
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

    def _nms(boxes, scores, thr):
        order = scores.argsort(descending=True)
        keep = []
        suppressed = torch.zeros(len(boxes), dtype=torch.bool)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for i in order.tolist():
            if suppressed[i]:
                continue
            keep.append(i)
            lt = torch.maximum(boxes[i, :2], boxes[:, :2])
            rb = torch.minimum(boxes[i, 2:], boxes[:, 2:])
            inter = (rb - lt).clamp(min=0).prod(1)
            suppressed |= inter / (area[i] + area - inter) > thr
        return torch.tensor(keep, dtype=torch.long)

    lib.impl("nms", _nms, "CPU")
    torchvision.extension._has_ops = lambda: True
    import torchvision.ops.boxes as _boxes
    _boxes._assert_has_ops = lambda: None
