"""Contract shared by every loss: finite scalar, gradients reach every parameter, placement,
state_dict round trip (weights_only), repr and the public API."""

from __future__ import annotations

import io

import pytest
import torch
from _support.registry import LOSSES, LossEnergy
from torch import nn

import torchebm.losses as losses
from torchebm.core import BaseLoss, CosineScheduler

#: name -> factory(model) -> loss: the energy-loss entries of the one registry
FACTORIES = {name: spec.factory for name, spec in LOSSES.items() if spec.contract}
Energy = LossEnergy


def _scalar(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.fixture(params=list(FACTORIES), ids=list(FACTORIES))
def built(request):
    torch.manual_seed(0)
    model = Energy()
    return model, FACTORIES[request.param](model), request.param


def test_is_a_base_loss_and_repr(built):
    _, loss_fn, _ = built
    assert isinstance(loss_fn, BaseLoss) and isinstance(loss_fn, nn.Module)
    assert type(loss_fn).__name__ in repr(loss_fn)


def test_finite_scalar_and_gradients_reach_every_parameter(built):
    model, loss_fn, key = built
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    loss = _scalar(loss_fn(x, generator=torch.Generator().manual_seed(2)))
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_placement_follows_to(built):
    model, loss_fn, key = built
    loss_fn.double()
    assert loss_fn.dtype == torch.float64
    loss = _scalar(loss_fn(torch.randn(8, 2)))
    assert loss.dtype == torch.float64


def test_state_dict_round_trip_weights_only(built):
    model, loss_fn, key = built
    loss_fn(torch.randn(8, 2))
    blob = io.BytesIO()
    torch.save(loss_fn.state_dict(), blob)
    blob.seek(0)
    state = torch.load(blob, weights_only=True)
    fresh = FACTORIES[key](Energy())
    fresh.load_state_dict(state)
    for (k, a), (_, b) in zip(loss_fn.state_dict().items(), fresh.state_dict().items()):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b, msg=k)


def test_scheduler_state_travels_in_state_dict():
    model = Energy()
    dsm = losses.DenoisingScoreMatching(model, noise_scale=CosineScheduler(1.0, 0.1, 10))
    for _ in range(4):
        dsm.step_schedulers()
    fresh = losses.DenoisingScoreMatching(Energy(), noise_scale=CosineScheduler(1.0, 0.1, 10))
    fresh.load_state_dict(dsm.state_dict())
    assert fresh.noise_scale == pytest.approx(dsm.noise_scale) and fresh.noise_scale < 1.0


def test_public_api():
    expected = {
        "ContrastiveDivergence",
        "PersistentContrastiveDivergence",
        "ParallelTemperingCD",
        "ScoreMatching",
        "DenoisingScoreMatching",
        "SlicedScoreMatching",
    }
    assert expected <= set(losses.__all__)
    for name in losses.__all__:
        assert getattr(losses, name) is not None
    assert isinstance(losses.__version__, str)


def test_flow_objectives_are_re_exported_from_flows():
    import torchebm.flows as flows
    import torchebm.interpolants as interpolants
    import torchebm.losses.loss_utils as loss_utils

    for name in (
        "EquilibriumMatchingLoss",
        "EnergyMatchingLoss",
        "mean_flat",
        "trimmed_mean",
        "compute_flow_weight",
        "compute_eqm_ct",
        "dispersive_loss",
    ):
        assert getattr(losses, name) is getattr(flows, name)
    assert losses.get_interpolant is interpolants.get_interpolant
    for name in loss_utils.__all__:  # the seed's module path keeps working
        assert getattr(loss_utils, name) is getattr(losses, name)
    assert issubclass(losses.EquilibriumMatchingLoss, BaseLoss)
    assert issubclass(losses.EnergyMatchingLoss, BaseLoss)


def test_equilibrium_matching_through_losses_trains():
    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(2, 2)

        def forward(self, x, t):
            return self.net(x)

    field = Field()
    loss = losses.EquilibriumMatchingLoss(field)(
        torch.randn(16, 2), generator=torch.Generator().manual_seed(0)
    )
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in field.parameters())
