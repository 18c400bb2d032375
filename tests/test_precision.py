"""Precision as the device runs it (issue #21): float32 products at FP32 unless TF32 is
enabled, float32 convolutions at cuDNN's TF32 default, float16/bfloat16 at the tensor rate."""

import pytest

from archcost.devices import by_key
from archcost.roofline.precision import engine_of, rate_column, rates_for, tf32_flags


def rate(op, dtype, device, tf32="torch-default"):
    peak = by_key(device)
    return peak.peak_flops(rate_column(op, dtype, peak.tflops, tf32))


def test_resnet50_fc_at_batch_256_on_an_a100_is_bounded_at_fp32():
    # ResNet-50's fc: 2048 -> 1000 at batch 256, 2 FLOPs per MAC; A100 FP32: 19.5 TFLOP/s (datasheet).
    flops = 2 * 256 * 2048 * 1000
    ms = flops / rate("linear", "float32", "a100-80gb") * 1e3
    assert ms == pytest.approx(flops / 19.5e12 * 1e3)
    assert round(ms, 4) == 0.0538
    # with --tf32 on it is the tensor-core rate, 156 TFLOP/s: 8x faster
    assert flops / rate("linear", "float32", "a100-80gb", "on") == pytest.approx(flops / 156e12)


def test_a_float32_conv_is_bounded_at_tf32_and_off_turns_it_back():
    assert rate("conv2d", "float32", "a100-80gb") == 156e12
    assert rate("conv2d", "float32", "a100-80gb", "off") == 19.5e12
    assert rate("conv2d", "float32", "h100-sxm") == 494.5e12


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("op", ["linear", "conv2d", "bmm", "scaled_dot_product_attention"])
def test_half_precision_runs_at_the_dense_tensor_rate(op, dtype):
    assert rate(op, dtype, "a100-80gb") == 312e12  # A100 dense FP16/BF16 tensor, FP32 accumulate
    assert rate(op, dtype, "h100-sxm") == 989.5e12  # H100 SXM: 1979 with sparsity, dense = half


def test_gpus_without_tf32_fall_back_to_fp32():
    assert rate("conv2d", "float32", "v100-sxm2") == 15.7e12
    assert rate("linear", "float32", "t4", "on") == 8.1e12


def test_engines_and_flags():
    assert [engine_of(o) for o in ("conv2d", "conv_transpose2d", "_convolution", "addmm", "bmm", "relu")] == \
        ["conv", "conv", "conv", "matmul", "matmul", "other"]
    assert tf32_flags() == {"matmul": False, "conv": True}  # torch.backends defaults
    assert tf32_flags("on") == {"matmul": True, "conv": True}
    with pytest.raises(ValueError):
        tf32_flags("maybe")
    assert rates_for(by_key("a100-80gb").tflops, "float32") == {"conv": "tf32", "matmul": "float32",
                                                                  "other": "float32"}


def test_torch_defaults_are_the_ones_assumed():
    import torch

    assert torch.backends.cuda.matmul.allow_tf32 is tf32_flags()["matmul"]
    assert torch.backends.cudnn.allow_tf32 is tf32_flags()["conv"]


def test_vgg16_fc6_crosses_the_ridge_at_fp32_not_tf32():
    # classifier.0: 25088 -> 4096, float32. Intensity at batch b: 2*b*25088*4096 FLOPs over
    # 4 bytes x (weights 25088*4096 + bias 4096 + input b*25088 + output b*4096).
    from archcost.roofline.bounds import ridge_batch

    a100 = by_key("a100-80gb")
    fixed, per_image, macs = 4 * (25088 * 4096 + 4096), 4 * (25088 + 4096), 25088 * 4096
    fp32 = ridge_batch(macs, fixed, per_image, 19.5e12 / 2039e9)
    tf32 = ridge_batch(macs, fixed, per_image, 156e12 / 2039e9)
    assert rate_column("linear", "float32", a100.tflops) == "float32"
    assert fp32 < 25 and tf32 > 150  # the issue: ~20, not ~160
