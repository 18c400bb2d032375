"""analyze(module, ...) hands the user's module back bit for bit, whatever the options."""

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import archcost
from archcost.analysis import AnalysisError
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).relu().mean((2, 3)))


def make_net(train, frozen_conv, bn_eval):
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # non-trivial statistics, so an update or a reset shows
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.num_batches_tracked.fill_(7)
    net.train(train)
    if bn_eval:
        net.bn.eval()
    net.conv.weight.requires_grad_(not frozen_conv)
    net.fc.weight.grad = torch.ones_like(net.fc.weight)
    net.fc.register_forward_hook(lambda m, i, o: None)
    net.register_forward_pre_hook(lambda m, i: None)
    return net


def state(net):
    """Everything a user could observe: tensors bit for bit (bytes, dtype, device,
    strides, storage address), object identity, flags, modes, hooks."""
    tensors = {}
    for kind, items in (("p", net.named_parameters()), ("b", net.named_buffers())):
        for name, t in items:
            raw = t.detach().contiguous().view(-1).view(torch.uint8).clone()
            tensors[kind + name] = (id(t), t.dtype, t.device, t.stride(), t.data_ptr(), t.requires_grad,
                                    raw, None if t.grad is None else t.grad.clone())
    modes = {n: m.training for n, m in net.named_modules()}
    hooks = {n: (list(m._forward_hooks), list(m._forward_pre_hooks), list(m._backward_hooks))
             for n, m in net.named_modules()}
    return tensors, modes, hooks


def assert_same(before, after):
    tb, mb, hb = before
    ta, ma, ha = after
    assert mb == ma and hb == ha
    assert tb.keys() == ta.keys()
    for k in tb:
        b, a = tb[k], ta[k]
        assert b[:6] == a[:6], k
        assert torch.equal(b[6], a[6]), k  # the same bytes
        assert (b[7] is None) == (a[7] is None) and (b[7] is None or torch.equal(b[7], a[7])), k


@settings(max_examples=30, deadline=None)
@given(train=st.booleans(), frozen=st.booleans(), bn_eval=st.booleans(), memory=st.booleans(),
       latency=st.sampled_from(["none", "model", "layers"]), channels_last=st.booleans(),
       dtype=st.sampled_from(["float32", "float16", "bfloat16"]), amp=st.booleans(),
       engine=st.sampled_from(["auto", "meta", "cpu", "fvcore"]), optimizer=st.sampled_from(["sgd", "adam"]),
       batch=st.integers(1, 3))
def test_module_comes_back_bit_for_bit(train, frozen, bn_eval, memory, latency, channels_last, dtype, amp,
                                       engine, optimizer, batch):
    net = make_net(train, frozen, bn_eval)
    before = state(net)
    if amp and dtype == "float32":
        with pytest.raises(AnalysisError):
            archcost.analyze(net, input_size=(3, 6, 6), dtype=dtype, amp=amp)
        assert_same(before, state(net))
        return
    a = archcost.analyze(net, input_size=(3, 6, 6), batch_size=batch, dtype=dtype, amp=amp, engine=engine,
                         memory=memory, optimizer=optimizer, channels_last=channels_last,
                         latency=latency == "model", layer_latency=latency == "layers", repeats=2, warmup=0)
    assert_same(before, state(net))
    # and the counts are the architecture's, whatever the options
    assert a.row["params"] == 3 * 4 * 3 * 3 + 4 + 2 * 4 + 4 * 5 + 5
    assert a.row["macs"] == batch * (6 * 6 * 4 * 3 * 3 * 3 + 2 * 6 * 6 * 4 + 4 * 5)


def test_restored_after_a_failure():
    net = make_net(True, False, False)
    before = state(net)
    with pytest.raises(AnalysisError):
        archcost.analyze(net, input_size=(5, 6, 6), dtype="float16", channels_last=True)  # wrong channels
    assert_same(before, state(net))


def test_float16_on_a_users_module_counts_float16_bytes():
    net = make_net(False, False, False)
    a = archcost.analyze(net, input_size=(3, 6, 6), dtype="float16", memory=False)
    n_params = 3 * 4 * 3 * 3 + 4 + 2 * 4 + 4 * 5 + 5
    assert a.row["param_bytes"] == 2 * n_params
    assert net.conv.weight.dtype == torch.float32


def test_channels_last_keeps_the_users_weights_contiguous():
    net = make_net(False, False, False)
    stride = net.conv.weight.stride()
    archcost.analyze(net, input_size=(3, 6, 6), channels_last=True, memory=True)
    assert net.conv.weight.stride() == stride == (3 * 3 * 3, 3 * 3, 3, 1)


def test_latency_keeps_train_mode():
    net = make_net(True, False, False)
    archcost.analyze(net, input_size=(3, 6, 6), latency=True, repeats=2, warmup=0)
    assert net.training and net.bn.training


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_training_step_leaves_the_users_weights_and_grads_as_they_were(optimizer):
    """--train steps a real optimizer on a module passed in: values and gradients come back."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 10))
    net[0].weight.grad = torch.ones_like(net[0].weight)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grad = net[0].weight.grad.clone()
    archcost.analyze(net, input_size=(3, 16, 16), train=True, optimizer=optimizer)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(net[0].weight.grad, grad) and net[5].weight.grad is None
