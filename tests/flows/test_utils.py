"""Loss utilities of torchebm.flows against closed forms."""

import math

import pytest
import torch
from _support.flow_objectives import LinearField, check_batch_loss

from torchebm.flows import (
    EquilibriumMatchingLoss,
    compute_eqm_ct,
    compute_flow_weight,
    dispersive_loss,
    get_interpolant,
    mean_flat,
    trimmed_mean,
)
from torchebm.interpolants import LinearInterpolant


def test_mean_flat():
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(mean_flat(x), torch.tensor([5.5, 17.5]))


def test_trimmed_mean_drops_largest():
    v = torch.tensor([5.0, 1.0, 100.0, 2.0, 3.0, 4.0, 50.0, 0.0, 6.0, 7.0])
    assert trimmed_mean(v, 0.0).item() == pytest.approx(v.mean().item())
    assert trimmed_mean(v, 0.2).item() == pytest.approx(3.5)  # drops 100 and 50
    assert trimmed_mean(v, 0.05).item() == pytest.approx(v.mean().item())  # int(0.5) = 0
    for bad in (1.0, -0.1, 2):
        with pytest.raises(ValueError, match="trim_fraction"):
            trimmed_mean(v, bad)


def test_flow_weight_and_ct():
    t = torch.tensor([0.0, 0.5, 0.8, 0.9, 1.0])
    assert torch.allclose(compute_flow_weight(t, 0.8), torch.tensor([1.0, 1.0, 1.0, 0.5, 0.0]))
    assert torch.equal(compute_flow_weight(t, 1.0), torch.ones(5))
    assert torch.allclose(compute_eqm_ct(t), torch.tensor([4.0, 4.0, 4.0, 2.0, 0.0]))
    assert torch.allclose(compute_eqm_ct(t, 0.5, 2.0), torch.tensor([2.0, 2.0, 0.8, 0.4, 0.0]))


def test_dispersive_loss_closed_form():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    d = 2.0 / 2  # squared distance / feature dim
    expected = math.log((2 + 2 * math.exp(-d)) / 4)
    assert dispersive_loss(a).item() == pytest.approx(expected, rel=1e-6)
    assert dispersive_loss(torch.zeros(5, 3, 2)).item() == pytest.approx(0.0, abs=1e-7)
    spread = torch.randn(100, 8, generator=torch.Generator().manual_seed(0)) * 3
    big = torch.cat([spread, spread])  # 200 rows takes the cdist branch
    assert dispersive_loss(spread).item() < dispersive_loss(spread * 0.1).item()
    assert torch.isfinite(dispersive_loss(big))


def _dispersive_reference(z: torch.Tensor) -> torch.Tensor:
    f = z.reshape(z.shape[0], -1)
    d = (f[:, None] - f[None]).square().sum(-1) / f.shape[1]
    return torch.logsumexp(-d.reshape(-1), 0) - math.log(f.shape[0] ** 2)


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_dispersive_loss_large_batches_are_translation_invariant(offset):
    # B > 64 used cdist's |a|^2 + |b|^2 - 2ab: at offset 1000 the loss was -0.1947 instead
    # of -0.1782 (9 %) and the gradient 30 % off
    base = torch.randn(128, 64, generator=torch.Generator().manual_seed(0)) * 0.3
    exact = base.double().requires_grad_()
    _dispersive_reference(exact).backward()
    z = (base + offset).requires_grad_()
    loss = dispersive_loss(z)
    loss.backward()
    assert loss.item() == pytest.approx(_dispersive_reference(exact).item(), rel=1e-5)
    assert (z.grad.double() - exact.grad).norm() <= 1e-3 * exact.grad.norm()
    # both sides of the 64-row threshold agree with the exact value (float32 rounding)
    assert dispersive_loss(base[:64] + offset).item() == pytest.approx(
        _dispersive_reference(base[:64].double()).item(), rel=1e-5
    )


@pytest.mark.parametrize("b", [32, 128])
def test_dispersive_loss_huge_scales_give_the_limit_not_nan(b):
    # the cdist branch returned NaN at scale 1e20 (inf - inf in the expansion)
    z = (torch.randn(b, 16, generator=torch.Generator().manual_seed(1)) * 1e20).requires_grad_()
    loss = dispersive_loss(z)
    loss.backward()
    assert loss.item() == pytest.approx(-math.log(b), rel=1e-6)  # only the diagonal survives
    assert torch.isfinite(z.grad).all()


def test_dispersive_loss_of_float16_representations_matches_float64():
    """B <= 64 (direct differences) ran in the input dtype: in float16 the sum of D = 65536
    squares overflowed (d = inf for pairs at d = 2: loss -log B = -2.08 instead of -1.41),
    and a difference beyond 65504 (scale 1e4) gave NaN gradients where float64's are 0."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 4, 128, 128, generator=g).half()
    ref = _dispersive_reference(z.double()).item()
    # each d_ij (<= 3 where e^-d matters) rounded to float16, then a float16 logsumexp
    eps = torch.finfo(torch.float16).eps
    assert abs(dispersive_loss(z).item() - ref) <= 4 * eps * (3 + abs(ref))
    far = (torch.randn(8, 16, generator=g) * 1e4).half().requires_grad_()
    dispersive_loss(far).backward()
    exact = far.detach().double().requires_grad_()
    _dispersive_reference(exact).backward()
    assert torch.isfinite(far.grad).all()
    assert (far.grad.double() - exact.grad).abs().max() <= 1e-6


def test_get_interpolant_reexport():
    assert isinstance(get_interpolant("linear"), LinearInterpolant)


@pytest.mark.parametrize("prediction", ["velocity", "noise"])
@pytest.mark.parametrize("weighted", [False, True])
def test_eqm_batch_loss_is_the_mean_of_the_per_sample_losses(prediction, weighted):
    torch.manual_seed(0)
    loss_fn = EquilibriumMatchingLoss(
        LinearField(3),
        prediction=prediction,
        time_invariant=prediction == "velocity",
        loss_weight_fn=(lambda t: 1.0 + t) if weighted else None,
        dtype=torch.float64,
    )
    check_batch_loss(loss_fn, weighted)
