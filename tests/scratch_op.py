"""An operator of known scratch for the tests: ``archcost_test::scratchy(x, n)`` returns
``2 * x`` and, after allocating that output, allocates ``n`` bytes and frees them before it
returns, so its scratch is ``n`` bytes by construction, on any machine. Its gradient is
``2 * grad`` (no scratch)."""

import pytest
import torch

from archcost.memory import scratch_calls as C


@torch.library.custom_op("archcost_test::scratchy", mutates_args=())
def scratchy(x: torch.Tensor, n: int) -> torch.Tensor:
    out = x * 2
    tmp = torch.empty(n, dtype=torch.uint8)
    tmp.fill_(1)  # touched, as a kernel's workspace is
    del tmp
    return out


@scratchy.register_fake
def _scratchy_fake(x, n):
    return torch.empty_like(x)


def _backward(ctx, grad):
    return grad * 2, None


scratchy.register_autograd(_backward)

SCRATCHY = torch.ops.archcost_test.scratchy.default


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test measures into its own cache folder, and forgets the process's cache."""
    monkeypatch.setenv("ARCHCOST_CACHE_DIR", str(tmp_path))
    C.forget()
    yield
    C.forget()
