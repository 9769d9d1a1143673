"""The hand-written batched linear layer and ELU equal what they replace, gradients included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from evosim.train import ops


@pytest.mark.parametrize("p,k,n", [(16, 6, 12), (16, 12, 2), (16, 2, 12), (5, 3, 8), (4, 9, 2)])
def test_bmm_in_either_orientation_is_the_product(p, k, n):
    g = torch.Generator().manual_seed(p * k * n)
    a = torch.randn(3, p, k, generator=g, dtype=torch.float64)
    b = torch.randn(3, k, n, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ops.bmm(a, b), torch.bmm(a, b), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        ops.bmm(a.mT.contiguous().mT, b), torch.bmm(a, b), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("n_out", [2, 12])
def test_batched_linear_gradients(n_out):
    g = torch.Generator().manual_seed(n_out)
    h = torch.randn(2, 10, 7, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 7, n_out, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, n_out, generator=g, dtype=torch.float64, requires_grad=True)
    out = ops.batched_linear(h, w, b)
    torch.testing.assert_close(out, torch.baddbmm(b.unsqueeze(1), h, w))
    assert torch.autograd.gradcheck(ops.batched_linear, (h, w, b))
    assert torch.autograd.gradgradcheck(ops.batched_linear, (h, w, b))


def test_batched_linear_with_inputs_shared_by_every_member():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(10, 7, generator=g, dtype=torch.float64).expand(3, 10, 7)
    w = torch.randn(3, 7, 2, generator=g, dtype=torch.float64)
    b = torch.randn(3, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ops.batched_linear(h, w, b), torch.baddbmm(b.unsqueeze(1), h, w))


def test_elu_equals_torch_elu_with_its_gradients():
    x = torch.linspace(-6, 6, 241, dtype=torch.float64).requires_grad_(True)  # includes 0
    y = ops.elu(x)
    assert torch.equal(y, F.elu(x))
    (mine,) = torch.autograd.grad(y.sum(), x)
    (theirs,) = torch.autograd.grad(F.elu(x).sum(), x)
    torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-15)
    x32 = torch.randn(1000, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    (g32,) = torch.autograd.grad(ops.elu(x32).sum(), x32)
    (r32,) = torch.autograd.grad(F.elu(x32).sum(), x32)
    torch.testing.assert_close(g32, r32)  # float32: equal to rounding
    z = torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(ops.elu, (z,))
    assert torch.autograd.gradgradcheck(ops.elu, (z,))
