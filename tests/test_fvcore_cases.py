"""fvcore's own test networks, counted by archcost.

The networks of fvcore's ``tests/test_flop_count.py`` and ``tests/test_jit_model_analysis.py``
(facebookresearch/fvcore), re-created here from their layer shapes. Each case asserts

1. the count fvcore's test states, written as the formula of the architecture
   (one fused multiply-add = 1 MAC; fvcore calls these "flops"), total and, where fvcore's
   test checks them, per module (``a.layers``: names as in ``named_modules()``, ``(model)``
   for the root);
2. equality with a live ``fvcore.nn.FlopCountAnalysis`` on the same module (total and
   ``by_module()``), except where archcost deliberately counts more; there the exact
   difference is asserted by formula and the reason named.

Not re-created: fvcore's API-only checks (warnings, ``copy()``, canonical names). Batch norm
modules in training mode are skipped: archcost analyses a model in eval mode by design.
"""

import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import archcost
from archcost.count import rules as ops
# --- helpers -----------------------------------------------------------------------------

def count(model, *inputs, meta=True):
    """archcost's analysis of ``model`` on ``inputs`` (real CPU tensors, as given); with
    ``meta``, also of a shape-only copy on the meta device (how archcost counts the models
    it builds), which must give the same counts per module and per operator. (A module
    without parameters or buffers runs where archcost puts it, on CPU: no meta copy.)"""
    a = archcost.analyze(model, inputs=list(inputs), memory=False)
    if meta and next(iter(list(model.parameters()) + list(model.buffers())), None) is not None:
        shadow = copy.deepcopy(model).to("meta")
        b = archcost.analyze(shadow, inputs=[x.to("meta") for x in inputs], memory=False)
        assert b.row["engine"] == "meta"
        assert layer_macs(b) == layer_macs(a)
        assert b.by_operator.to_dict("records") == a.by_operator.to_dict("records")
    return a


def layer_macs(a) -> dict:
    """{module name: macs}, '' for the root (fvcore's by_module keys)."""
    return {("" if r.layer == "(model)" else r.layer): int(r.macs) for r in a.layers.itertuples()}


def layer_col(a, col) -> dict:
    return {("" if r.layer == "(model)" else r.layer): getattr(r, col) for r in a.layers.itertuples()}


def uncounted(a) -> dict:
    bo = a.by_operator
    return {r.operator: int(r.calls_uncounted) for r in bo.itertuples() if r.calls_uncounted}


def fvcore_of(model, *inputs, mode="owner"):
    """A live fvcore analysis of the same module (eval mode, as archcost runs it)."""
    from fvcore.nn import FlopCountAnalysis

    model.eval()
    fca = FlopCountAnalysis(model, inputs if len(inputs) != 1 else inputs[0]).ancestor_mode(mode)
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    fca.tracer_warnings("none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fca.total()  # trace once, inside the filter
    return fca


def assert_equals_fvcore(a, fca, extra=0, extra_by_module=None):
    """archcost's total and every module's MACs equal fvcore's, plus ``extra`` where
    archcost deliberately counts more (``extra_by_module``: per module)."""
    extra_by_module = extra_by_module or {}
    assert a.row["macs"] == fca.total() + extra
    theirs = fca.by_module()
    ours = layer_macs(a)
    for name, macs in ours.items():
        assert macs == theirs.get(name, 0) + extra_by_module.get(name, 0), name
    assert {n for n, m in theirs.items() if m} <= set(ours)


class Holder(nn.Module):
    """One layer under the attribute name fvcore's single-layer nets give it."""

    def __init__(self, attr, layer):
        super().__init__()
        self.attr = attr
        self.add_module(attr, layer)

    def forward(self, x):
        return getattr(self, self.attr)(x)


class Fn(nn.Module):
    """A network whose forward is one function call on its inputs."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        # an empty buffer: archcost runs a module where its tensors are (the meta copy on meta)
        self.register_buffer("where", torch.zeros(0), persistent=False)

    def forward(self, *xs):
        return self.fn(*xs)


# --- tests/test_flop_count.py ------------------------------------------------------------

def test_nn_linear_itself():
    """test_nn: a bare nn.Linear(8, 4) on a batch of 5."""
    batch, fin, fout = 5, 8, 4
    model, x = nn.Linear(fin, fout), torch.randn(batch, fin)
    a = count(model, x)
    assert a.row["macs"] == batch * fin * fout
    assert a.by_operator.set_index("operator").loc["linear", "macs"] == batch * fin * fout
    assert_equals_fvcore(a, fvcore_of(model, x))


@pytest.mark.parametrize("shape", [(5, 10), (5, 5, 10)], ids=["2d", "3d"])
def test_linear(shape):
    """test_linear: LinearNet(10, 20), on (5, 10) and with an extra dimension (5, 5, 10)."""
    fin, fout = 10, 20
    model, x = Holder("linear", nn.Linear(fin, fout)), torch.randn(*shape)
    rows = x.numel() // fin
    a = count(model, x)
    assert a.row["macs"] == rows * fin * fout
    assert layer_macs(a) == {"": rows * fin * fout, "linear": rows * fin * fout}
    assert_equals_fvcore(a, fvcore_of(model, x))


# (dim, batch, in, out, spatial, kernel, padding, stride, groups, transposed, output_padding)
CONV_CASES = {
    "2d": (2, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    "2d_strided": (2, 2, 10, 6, 20, 3, 1, 2, 1, False, 0),
    "grouped": (2, 5, 16, 8, 15, 5, 2, 1, 4, False, 0),
    "depthwise_like": (2, 5, 16, 8, 15, 3, 1, 1, 8, False, 0),  # groups = out channels
    "1d": (1, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    "3d": (3, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    "transposed": (2, 5, 10, 3, 15, 3, 1, 1, 1, True, 0),
    "transposed_strided": (2, 5, 10, 3, 15, 3, 1, 2, 1, True, 0),
    "transposed_output_padding": (2, 5, 10, 3, 15, 3, 1, 3, 1, True, 2),
}


@pytest.mark.parametrize("case", CONV_CASES.values(), ids=list(CONV_CASES))
def test_conv(case):
    """test_conv: fvcore counts batch x in x out x k^d x positions^d / groups, where the
    positions are the output's for a convolution and the input's for a transposed one."""
    dim, batch, cin, cout, spatial, k, pad, stride, groups, transposed, out_pad = case
    if transposed:
        cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[dim - 1]
        layer = cls(cin, cout, k, stride, pad, output_padding=out_pad, groups=groups)
        positions = spatial
    else:
        cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dim - 1]
        layer = cls(cin, cout, k, stride, pad, groups=groups)
        positions = (spatial + 2 * pad - k) // stride + 1
    model, x = Holder("conv", layer), torch.randn(batch, cin, *(spatial,) * dim)
    expected = batch * cin * cout * k ** dim * positions ** dim // groups
    assert (batch * cin * cout * k ** dim * positions ** dim) % groups == 0
    a = count(model, x)
    assert a.row["macs"] == expected
    assert layer_macs(a) == {"": expected, "conv": expected}
    assert_equals_fvcore(a, fvcore_of(model, x))


m, n, p = 20, 10, 100
MATMUL_CASES = {  # test_matmul and test_matmul_broadcast: (x shape, y shape, MACs)
    "2d": ((m, n), (n, p), m * n * p),
    "batch1": ((1, m, n), (1, n, p), m * n * p),
    "batch2x2": ((2, 2, m, n), (2, 2, n, p), 4 * m * n * p),
    "batch1_by_2d": ((1, m, n), (n, p), m * n * p),
    "batch2_by_2d": ((2, m, n), (n, p), 2 * m * n * p),
}


@pytest.mark.parametrize("case", MATMUL_CASES.values(), ids=list(MATMUL_CASES))
def test_matmul(case):
    xs, ys, expected = case
    model, x, y = Fn(torch.matmul), torch.randn(*xs), torch.randn(*ys)
    a = count(model, x, y)
    assert a.row["macs"] == expected
    assert_equals_fvcore(a, fvcore_of(model, x, y))


def test_broadcast_matmul_fvcore_undercounts():
    """Not in fvcore's tests: the broadcast the other way round, (m, n) @ (2, n, p). fvcore's
    matmul rule multiplies the first operand's size by the last dimension (m*n*p), missing the
    second operand's batch; archcost counts the 2 products the kernel makes."""
    model, x, y = Fn(torch.matmul), torch.randn(m, n), torch.randn(2, n, p)
    a = count(model, x, y)
    assert a.row["macs"] == 2 * m * n * p
    assert_equals_fvcore(a, fvcore_of(model, x, y), extra=m * n * p, extra_by_module={"": m * n * p})


def test_bmm():
    """test_bmm: (n, c, t) x (n, t, p) -> n*c*t*p."""
    bn, c, t, bp = 2, 5, 2, 12
    model, x, y = Fn(torch.bmm), torch.randn(bn, c, t), torch.randn(bn, t, bp)
    a = count(model, x, y)
    assert a.row["macs"] == bn * c * t * bp
    assert_equals_fvcore(a, fvcore_of(model, x, y))


EINSUM_CASES = {  # (equation, x shape, y shape, MACs); n, c, t, p, g = 1, 5, 2, 12, 6
    "nct,ncp->ntp": ("nct,ncp->ntp", (1, 5, 2), (1, 5, 12), 1 * 5 * 2 * 12),
    "ntg,ncg->nct": ("ntg,ncg->nct", (1, 2, 6), (1, 5, 6), 1 * 2 * 6 * 5),
    # TestFlopCountHandles.test_complicated_einsum: numpy's optimal path, one product per term
    "nc,nchw->hw": ("nc,nchw->hw", (3, 4), (3, 4, 2, 3), 3 * 4 * 2 * 3),
}


@pytest.mark.parametrize("case", EINSUM_CASES.values(), ids=list(EINSUM_CASES))
def test_einsum(case):
    eq, xs, ys, expected = case
    model, x, y = Fn(lambda a, b: torch.einsum(eq, a, b)), torch.randn(*xs), torch.randn(*ys)
    a = count(model, x, y)
    assert a.row["macs"] == expected
    assert a.by_operator.set_index("operator").loc["einsum", "macs"] == expected
    assert_equals_fvcore(a, fvcore_of(model, x, y))


def test_batchnorm1d_eval():
    """test_batchnorm, BatchNorm1d(10, affine=False).eval(): 1 per element."""
    batch, ch = 10, 10
    model, x = nn.BatchNorm1d(ch, affine=False), torch.randn(batch, ch)
    a = count(model, x)
    assert a.row["macs"] == batch * ch
    assert_equals_fvcore(a, fvcore_of(model, x))


TRAIN_BN = "fvcore's test runs this module in training mode (4 per element); archcost analyses eval mode by design"


@pytest.mark.parametrize("dims", [
    pytest.param((5, 5), marks=pytest.mark.skip(reason=TRAIN_BN), id="2d_train"),
    pytest.param((5, 5, 5), marks=pytest.mark.skip(reason=TRAIN_BN), id="3d_train"),
])
def test_batchnorm_training_mode(dims):
    batch, ch = 10, 10
    bn = (nn.BatchNorm2d if len(dims) == 2 else nn.BatchNorm3d)(ch, affine=False)
    x = torch.randn(batch, ch, *dims)
    assert count(bn.train(), x).row["macs"] == 4 * x.numel()


@pytest.mark.parametrize("dims", [(5, 5), (5, 5, 5)], ids=["2d", "3d"])
def test_batchnorm_eval_counterpart(dims):
    """The same BatchNorm2d/3d modules as archcost analyses them (eval): fvcore's eval rule,
    1 per element without affine; fvcore on the eval module agrees."""
    batch, ch = 10, 10
    bn = (nn.BatchNorm2d if len(dims) == 2 else nn.BatchNorm3d)(ch, affine=False)
    x = torch.randn(batch, ch, *dims)
    a = count(bn, x)
    assert bn.training  # the caller's mode is left as it was
    assert a.row["macs"] == batch * ch * dims[0] * dims[1] * (dims[2] if len(dims) == 3 else 1)
    assert_equals_fvcore(a, fvcore_of(bn, x))


class ThreeNet(nn.Module):
    """A 1x1 conv, global average pooling, two linear layers (fvcore's ThreeNet)."""

    def __init__(self, cin, conv_out, hidden):
        super().__init__()
        self.conv = nn.Conv2d(cin, conv_out, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear1 = nn.Linear(conv_out, hidden)
        self.linear2 = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.linear2(self.linear1(self.pool(self.conv(x)).flatten(1)))


def test_three_net_by_operator_and_by_module():
    """test_threeNet and test_flop_counter_class: conv, adaptive pooling (1 per input element)
    and two linears, by operator and by module."""
    batch, cin, cout, hw, hidden = 4, 2, 5, 10, 3
    model, x = ThreeNet(cin, cout, hidden), torch.randn(batch, cin, hw, hw)
    conv = batch * cout * cin * hw * hw
    pool = batch * cout * hw * hw  # fvcore's test: 2e-6 GFLOP, and conv // in_channels
    lin1, lin2 = batch * cout * hidden, batch * hidden * 1
    a = count(model, x)
    by_op = a.by_operator.set_index("operator")["macs"].to_dict()
    assert by_op == {"conv2d": conv, "adaptive_avg_pool2d": pool, "linear": lin1 + lin2}
    assert layer_macs(a) == {"": conv + pool + lin1 + lin2, "conv": conv, "pool": pool,
                             "linear1": lin1, "linear2": lin2}
    assert_equals_fvcore(a, fvcore_of(model, x))


class CustomNet(nn.Module):
    """fvcore's CustomNet: a linear layer (named ``conv``) and a sigmoid."""

    def __init__(self, fin, fout):
        super().__init__()
        self.conv = nn.Linear(fin, fout)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.conv(x))


def test_skip_ops_sigmoid_listed_once():
    """test_skip_ops: the sigmoid has no rule; it is listed as uncounted, called once."""
    batch, fin, fout = 10, 5, 4
    model, x = CustomNet(fin, fout), torch.rand(batch, fin)
    a = count(model, x)
    assert a.row["macs"] == batch * fin * fout
    assert uncounted(a) == {"sigmoid": 1}
    fca = fvcore_of(model, x)
    assert {k.replace("aten::", ""): v for k, v in fca.unsupported_ops().items()} == uncounted(a)
    assert_equals_fvcore(a, fca)


def test_customized_ops(monkeypatch):
    """test_customized_ops, with archcost's rule table in place of fvcore's handles: a new
    rule for sigmoid (10000, a dummy) and one replacing the linear layer's (400000)."""
    batch, fin, fout = 10, 5, 4
    model, x = CustomNet(fin, fout), torch.rand(batch, fin)
    monkeypatch.setitem(ops.ATEN_RULES, "sigmoid", lambda args, kwargs, out: 10000)
    a = count(model, x)
    by_op = a.by_operator.set_index("operator")["macs"].to_dict()
    assert by_op == {"sigmoid": 10000, "linear": batch * fin * fout}
    monkeypatch.setitem(ops.ATEN_RULES, "addmm", lambda args, kwargs, out: 400000)
    a = count(model, x)
    assert a.by_operator.set_index("operator")["macs"].to_dict() == {"linear": 400000, "sigmoid": 10000}
    assert layer_macs(a) == {"": 410000, "conv": 400000, "sigmoid": 10000}


def test_autograd_function_identity():
    """test_autograd_function: a custom autograd Function returning its input. fvcore needs
    a user handle for it (its test sets one returning a dummy 42); archcost sees the ATen
    operators beneath the function (here none: the identity does no arithmetic), so 0, and
    fvcore without the handle gives 0 too, listing the function as unsupported."""

    class Identity(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return torch.ones_like(g)

    model, x = Fn(Identity.apply), torch.rand(4, 5)
    a = count(model, x)
    assert a.row["macs"] == 0
    fca = fvcore_of(model, x)
    assert "prim::PythonOp.Identity" in fca.unsupported_ops()
    assert_equals_fvcore(a, fca)


def test_scripted_function_counted():
    """test_scripted_function: ``x @ x`` in a torch.jit.script'ed function, on x*x. fvcore
    cannot look inside (it lists prim::CallFunction as unsupported: 0); archcost counts at
    the ATen dispatch level, which the scripted code also goes through: 5*5*5 more."""

    def square(x):
        return x @ x

    class Mod(nn.Module):
        def forward(self, x):
            return torch.jit.script(square)(x * x)

    s = 5
    model, x = Mod(), torch.rand(s, s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = count(model, x)
    assert a.row["macs"] == s * s * s
    fca = fvcore_of(model, x)
    assert "prim::CallFunction" in fca.unsupported_ops()
    assert_equals_fvcore(a, fca, extra=s * s * s, extra_by_module={"": s * s * s})


# TestFlopCountHandles: one function call each, archcost on a module making that call.
def vec(x):
    """A per-channel vector (weight, bias or running statistic) beside ``x``."""
    return torch.ones(x.shape[1], device=x.device)


HANDLE_CASES = {  # (function, MACs); the input is 2x2x2x2 = 16 elements
    "batch_norm_eval_affine": (lambda x: F.batch_norm(x, vec(x), vec(x), vec(x), vec(x)), 16 * 2),
    "batch_norm_eval": (lambda x: F.batch_norm(x, vec(x), vec(x), None, None), 16 * 1),
    # training=True stated in the call itself (not the module's mode): fvcore's training rule
    "batch_norm_training_affine": (lambda x: F.batch_norm(x, vec(x), vec(x), vec(x), vec(x), True), 16 * 5),
    "group_norm_affine": (lambda x: F.group_norm(x, 2, vec(x), vec(x)), 16 * 5),
    "group_norm": (lambda x: F.group_norm(x, 2, None, None), 16 * 4),
    # bilinear: 4 per output element; the output is 2x2x4x4 (fvcore's test: 2**4 * 4 * 4)
    "upsample_bilinear": (lambda x: F.interpolate(x, None, 2, "bilinear", False), 2 * 2 * 4 * 4 * 4),
}


@pytest.mark.parametrize("case", HANDLE_CASES.values(), ids=list(HANDLE_CASES))
def test_handles(case):
    fn, expected = case
    model, x = Fn(fn), torch.rand(2, 2, 2, 2)
    a = count(model, x)
    assert a.row["macs"] == expected
    assert_equals_fvcore(a, fvcore_of(model, x))


@pytest.mark.parametrize("fn", [torch.mm, torch.matmul], ids=["mm", "matmul"])
def test_torch_mm(fn):
    """test_torch_mm: (3, 4) x (4, 5) = 60 by mm and by matmul."""
    model, x, y = Fn(fn), torch.rand(3, 4), torch.rand(4, 5)
    a = count(model, x, y)
    assert a.row["macs"] == 3 * 4 * 5
    assert_equals_fvcore(a, fvcore_of(model, x, y))


# --- tests/test_jit_model_analysis.py ----------------------------------------------------

class NestedInner(nn.Module):
    """fvcore's NestedNetInnerModule: (1, 10) reshaped to (1, 2, 5), a 1x1 Conv1d(2, 2),
    flatten, Linear(10, 10), then ``3 * y + 1``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 2, kernel_size=1, padding=0)
        self.fc = nn.Linear(10, 10)

    def forward(self, x):
        y = self.conv(x.reshape(-1, 2, 5)).flatten(1)
        return 3 * self.fc(y) + 1


class NestedNet(nn.Module):
    """fvcore's NestedNet: Conv1d(4, 4, k=3, p=1) on (1, 4, 5), flatten, Linear(20, 10), the
    inner module, squared."""

    def __init__(self):
        super().__init__()
        self.submod = NestedInner()
        self.fc = nn.Linear(20, 10)
        self.conv = nn.Conv1d(4, 4, kernel_size=3, padding=1)

    def forward(self, x):
        return self.submod(self.fc(self.conv(x).flatten(1))) ** 2


def nested_expected(prefix=""):
    """fvcore's stated per-module counts: positions x k x in x out for a conv, in x out for fc."""
    conv = 5 * 3 * 4 * 4            # length 5 kept by padding 1
    fc = 20 * 10
    inner_conv, inner_fc = 5 * 1 * 2 * 2, 10 * 10
    inner = inner_conv + inner_fc
    names = {"": conv + fc + inner, "conv": conv, "fc": fc, "submod": inner,
             "submod.conv": inner_conv, "submod.fc": inner_fc}
    if not prefix:
        return names
    return {f"{prefix}.{k}" if k else prefix: v for k, v in names.items()}


def test_nested_net_total_by_module_by_operator():
    """test_total, test_by_module, test_by_operator, test_by_module_and_operator."""
    model, x = NestedNet(), torch.randn(1, 4, 5)
    a = count(model, x)
    assert layer_macs(a) == nested_expected()
    by_op = a.by_operator.set_index("operator")["macs"].to_dict()
    by_op = {k: v for k, v in by_op.items() if v}
    assert by_op == {"conv1d": 5 * 3 * 4 * 4 + 5 * 1 * 2 * 2, "linear": 20 * 10 + 10 * 10}
    assert_equals_fvcore(a, fvcore_of(model, x))


def test_nested_net_unsupported_ops():
    """test_unsupported_ops (with fvcore's default rules): the ``3 * y``, ``+ 1`` and ``** 2``
    have no rule and are listed once each, by archcost as by fvcore."""
    model, x = NestedNet(), torch.randn(1, 4, 5)
    a = count(model, x)
    assert uncounted(a) == {"mul": 1, "add": 1, "pow": 1}
    fca = fvcore_of(model, x)
    assert {k.replace("aten::", ""): v for k, v in fca.unsupported_ops().items()} == uncounted(a)


def test_changing_handles_per_module(monkeypatch):
    """test_changing_handles: a dummy rule of 1000 per linear call lands in the right
    modules (fc, submod.fc and their ancestors); the convolutions keep their counts."""
    monkeypatch.setitem(ops.ATEN_RULES, "addmm", lambda args, kwargs, out: 1000)
    a = count(NestedNet(), torch.randn(1, 4, 5))
    want = nested_expected()
    want.update({"fc": 1000, "submod.fc": 1000, "submod": 1000 + want["submod.conv"],
                 "": 2000 + want["conv"] + want["submod.conv"]})
    assert layer_macs(a) == want


class UnusedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(10, 10), nn.Linear(10, 1)
        self.unused = nn.Linear(20, 20)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_unused_module():
    """test_unused_module: the module never called counts 0 and is the only one with 0 calls
    (the ReLU, called but costless, is not)."""
    model, x = UnusedNet(), torch.randn(1, 10)
    a = count(model, x)
    assert layer_macs(a) == {"": 10 * 10 + 10 * 1, "fc1": 10 * 10, "fc2": 10 * 1, "unused": 0, "act": 0}
    assert {k for k, c in layer_col(a, "calls").items() if c == 0} == {"unused"}
    assert_equals_fvcore(a, fvcore_of(model, x))


class RepeatedNet(nn.Module):
    def __init__(self, n1=3, n2=2):
        super().__init__()
        self.n1, self.n2 = n1, n2
        self.fc1, self.fc2 = nn.Linear(10, 10), nn.Linear(10, 10)

    def forward(self, x):
        for _ in range(self.n1):
            x = self.fc1(x)
        for _ in range(self.n2):
            x = self.fc2(x)
        return x


def test_repeated_module():
    """test_repeated_module: fc1 called 3 times, fc2 twice; each call counted."""
    model, x = RepeatedNet(), torch.randn(1, 10)
    a = count(model, x)
    assert layer_macs(a) == {"": 5 * 10 * 10, "fc1": 3 * 10 * 10, "fc2": 2 * 10 * 10}
    assert layer_col(a, "calls") == {"": 1, "fc1": 3, "fc2": 2}
    assert a.by_operator.set_index("operator").loc["linear", "macs"] == 5 * 10 * 10
    assert_equals_fvcore(a, fvcore_of(model, x))


class NonForwardInner(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x):
        return x

    def other_func(self, x):
        return self.fc(x)


class NonForwardNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.submod = NonForwardInner()
        self.fc = nn.Linear(10, 10)

    def forward(self, x):
        return self.submod.other_func(self.fc(x))


@pytest.mark.parametrize("batch", [1, 5], ids=["batch1", "batch5_as_in_test_copy"])
def test_non_forward_call(batch):
    """test_non_forward_func_call (and test_copy's batch of 5): ``submod.fc`` is called from
    ``submod.other_func``, never through ``submod``'s forward. archcost gives ``submod`` its
    children's count, as fvcore's default "owner" mode does (fvcore's test states both modes:
    "caller" gives submod 0)."""
    model, x = NonForwardNet(), torch.randn(batch, 10)
    a = count(model, x)
    fc, inner = batch * 10 * 10, batch * 10 * 1
    assert layer_macs(a) == {"": fc + inner, "submod": inner, "submod.fc": inner, "fc": fc}
    assert layer_col(a, "calls")["submod"] == 0  # fvcore: uncalled_modules() == {"submod"} (caller)
    assert_equals_fvcore(a, fvcore_of(model, x, mode="owner"))


class SharedInner(nn.Module):
    def __init__(self, submod):
        super().__init__()
        self.submod = submod

    def forward(self, x):
        return self.submod(x)


class SharedModuleNet(nn.Module):
    """One Linear(10, 10) inside two wrappers, one Linear(10, 1) under two attribute names."""

    def __init__(self):
        super().__init__()
        inner = nn.Linear(10, 10)
        self.submod1, self.submod2 = SharedInner(inner), SharedInner(inner)
        multi = nn.Linear(10, 1)
        self.multiname1 = multi
        self.multiname2 = multi

    def forward(self, x):
        x = self.submod1(x) + self.submod2(x)
        return self.multiname1(x) + self.multiname2(x)


def test_shared_module():
    """test_shared_module (fvcore's "caller" mode): a shared module is reported once, under
    its first name, with every call's count; each wrapper counts the call it made."""
    model, x = SharedModuleNet(), torch.randn(1, 10)
    a = count(model, x)
    shared, multi = 10 * 10, 10 * 1
    assert layer_macs(a) == {"": 2 * shared + 2 * multi, "submod1": shared, "submod1.submod": 2 * shared,
                             "submod2": shared, "multiname1": 2 * multi}
    assert layer_col(a, "calls") == {"": 1, "submod1": 1, "submod1.submod": 2, "submod2": 1, "multiname1": 2}
    assert_equals_fvcore(a, fvcore_of(model, x, mode="caller"))


class RecursiveScopeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x, depth: int = 3):
        return self(x, depth - 1) if depth > 0 else self.fc(x)


def test_recursive_scope():
    """test_recursive_scope: the model calls itself 3 times; its op is counted once."""
    model, x = RecursiveScopeNet(), torch.randn(1, 10)
    a = count(model, x)
    assert layer_macs(a) == {"": 10 * 1, "fc": 10 * 1}
    assert_equals_fvcore(a, fvcore_of(model, x))


def test_data_parallel():
    """test_data_parallel: NestedNet wrapped in DataParallel (on CPU: a plain call) keeps
    its counts under the ``module.`` prefix."""
    model, x = nn.DataParallel(NestedNet()).cpu(), torch.randn(1, 4, 5)
    a = count(model, x)
    want = nested_expected("module")
    want[""] = want["module"]
    assert layer_macs(a) == want
    assert_equals_fvcore(a, fvcore_of(model, x))


@pytest.mark.parametrize("mode", ["caller", "owner"])
def test_data_parallel_root_scope(mode):
    """test_data_parallel_root_scope: DataParallel(Linear(10, 10)) on (10, 10): 1000."""
    model, x = nn.DataParallel(nn.Linear(10, 10)).cpu(), torch.randn(10, 10)
    a = count(model, x)
    assert a.row["macs"] == 10 * 10 * 10
    assert_equals_fvcore(a, fvcore_of(model, x, mode=mode))


class ValueBranchNet(nn.Module):
    """fvcore's TraceWarningNet: fc1's output read as a Python number decides whether fc2 runs."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(10, 1), nn.Linear(10, 10)

    def forward(self, x):
        if self.fc1(x).item() < 0.0:
            x = self.fc2(x)
        return x + 2


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["fc2_runs", "fc2_skipped"])
def test_data_dependent_branch(sign):
    """test_disable_warnings' network (fvcore's test states no count for it): with fc1 = -sum(x)
    the branch is known from the input's sign; archcost runs the module on its real values."""
    model = ValueBranchNet()
    with torch.no_grad():
        model.fc1.weight.fill_(-1.0)
        model.fc1.bias.zero_()
    x = torch.full((1, 10), sign)
    a = count(model, x, meta=False)  # the branch needs values: no meta copy
    runs = sign > 0
    assert a.row["macs"] == 10 * 1 + (10 * 10 if runs else 0)
    assert layer_col(a, "calls")["fc2"] == (1 if runs else 0)
    assert uncounted(a) == {"add": 1}  # fvcore: "Unsupported operator aten::add encountered 1 time(s)"
    # fvcore's JIT trace drops fc1: its output leaves the graph as a Python number (.item()),
    # so nothing traced uses it and the op is pruned. fc1 does run; archcost counts it.
    fc1 = 10 * 1
    assert_equals_fvcore(a, fvcore_of(model, x), extra=fc1, extra_by_module={"": fc1, "fc1": fc1})


def test_uncalled_container():
    """test_skip_uncalled_containers_warnings: a ModuleList never called itself, whose item
    is; the list holds its item's count (Linear(3, 3) on (1, 3))."""

    class A(nn.Module):
        def __init__(self):
            super().__init__()
            self.submod = nn.ModuleList([nn.Linear(3, 3)])

        def forward(self, x):
            return self.submod[0](x) + 1

    model, x = A(), torch.rand(1, 3)
    a = count(model, x)
    assert layer_macs(a) == {"": 3 * 3, "submod": 3 * 3, "submod.0": 3 * 3}
    assert_equals_fvcore(a, fvcore_of(model, x))
