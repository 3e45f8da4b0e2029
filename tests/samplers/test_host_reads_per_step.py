"""Host reads (device syncs on a GPU) that grew with the number of steps where the algorithm
needs none: FlowSampler's adaptive solves re-checked the grid every recorded interval, AIS
read its acceptance rate back at every temperature. Counted on CPU by wrapping the reads."""

from __future__ import annotations

import torch

from torchebm.core import GaussianModel
from torchebm.integrators import _base_runge_kutta
from torchebm.samplers import AnnealedImportanceSampling, FlowSampler


def test_adaptive_flow_sampling_checks_its_grid_once_per_call(monkeypatch):
    calls = []
    real = _base_runge_kutta._monotone_grid
    monkeypatch.setattr(
        _base_runge_kutta, "_monotone_grid", lambda t, *a: calls.append(1) or real(t, *a)
    )
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    sampler = FlowSampler(lambda x, t: -x)  # dopri5, adaptive: one solve per recorded interval
    out = sampler.sample(x=x, n_steps=20, return_trajectory=True)
    assert out.shape == (8, 20, 2)
    assert calls == []  # the sampler checks its grid before the loop, not the solves in it
    # the result is the ODE's: x(t) = x0 exp(-t) at t = k / 20
    want = x[:, None, :] * torch.exp(-torch.arange(1, 21) / 20.0)[None, :, None]
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)


def _float_reads(monkeypatch, n_intermediate):
    count = [0]
    real = torch.Tensor.__float__

    def counting(self):
        count[0] += 1
        return real(self)

    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "__float__", counting)
        ais = AnnealedImportanceSampling(
            GaussianModel(torch.zeros(2), torch.eye(2)), n_intermediate=n_intermediate,
            transition="mala",
        )  # fmt: skip
        ais.estimate(16, 2, generator=torch.Generator().manual_seed(0))
    return count[0]


def test_ais_reads_its_acceptance_once_per_estimate(monkeypatch):
    assert _float_reads(monkeypatch, 5) == _float_reads(monkeypatch, 15)
