"""Contrastive divergence in float16: the squared-energy regulariser of energies near 300
(squares above float16's 65504) stays finite when the loss itself is representable."""

from __future__ import annotations

import torch
from _support.losses import TinyLangevin
from torch import nn

from torchebm.losses import ContrastiveDivergence

F16, F64 = torch.float16, torch.float64


class _HalfQuadratic(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0, dtype=F16))

    def forward(self, x):
        return 0.5 * self.w * x.square().sum(1)


def test_cd_loss_and_gradient_in_float16_with_energies_near_300():
    gen = torch.Generator().manual_seed(0)
    x = (17.0 + torch.rand(64, 2, generator=gen, dtype=F64)).to(F16)  # E in [289, 324]
    neg = (18.0 + torch.rand(64, 2, generator=gen, dtype=F64)).to(F16)  # E in [324, 361]
    model = _HalfQuadratic()
    loss_fn = ContrastiveDivergence(model, TinyLangevin(model), k_steps=1, dtype=F16)
    loss = loss_fn.compute_loss(x, neg)  # energy_reg_weight 0.001: the loss is about 200
    loss.backward()
    # float64 hand computation on the same (float16) inputs, w = 1
    w = torch.tensor(1.0, dtype=F64, requires_grad=True)
    e_pos = 0.5 * w * x.to(F64).square().sum(1)
    e_neg = 0.5 * w * neg.to(F64).square().sum(1)
    ref = e_pos.mean() - e_neg.mean() + 1e-3 * (e_pos.square().mean() + e_neg.square().mean())
    (grad,) = torch.autograd.grad(ref, w)
    assert loss.dtype == F16 and torch.isfinite(loss)  # it was inf
    # float16 rounds to 1e-3 relative: the energies' means (about 330) to 0.3 each
    loss, ref = float(loss.detach()), float(ref.detach())
    assert abs(loss - ref) < 2e-3 * float(e_neg.detach().mean()), (loss, ref)
    assert abs(float(model.w.grad) - float(grad)) < 2e-3 * abs(float(grad)), float(model.w.grad)


class _Quadratic(nn.Module):
    """``E = w . [x, x^2] + b``: one linear layer, so under autocast the energy is bfloat16."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[0.3, -0.2, 0.5, 0.5]]))

    def forward(self, x):
        return self.lin(torch.cat([x, x.square()], dim=1)).squeeze(-1)


def test_cd_loss_under_bfloat16_autocast_is_float32_and_close_to_the_float32_loss():
    # the energies are bfloat16 under autocast; the difference of their means was taken in
    # bfloat16 (loss 0.859375 for 0.86039) while every other loss returns float32
    torch.manual_seed(0)
    model = _Quadratic()
    gen = torch.Generator().manual_seed(1)
    x = 1.0 + torch.randn(256, 2, generator=gen)
    neg = torch.randn(256, 2, generator=gen)
    loss_fn = ContrastiveDivergence(model, TinyLangevin(model), k_steps=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn.compute_loss(x, neg)
        e_pos, e_neg = model(x).detach(), model(neg).detach()
    assert e_pos.dtype == torch.bfloat16  # what the loss gets
    e_pos, e_neg = e_pos.float(), e_neg.float()
    ref = e_pos.mean() - e_neg.mean() + 1e-3 * (e_pos.square().mean() + e_neg.square().mean())
    assert loss.dtype == torch.float32
    loss = loss.detach()
    # the float32 sums of the same energies agree to float32 rounding (bfloat16 sums
    # were off by about 2^-8 of the means)
    assert abs(float(loss) - float(ref)) < 1e-5 * max(1.0, float(e_pos.abs().mean())), (
        float(loss),
        float(ref),
    )
