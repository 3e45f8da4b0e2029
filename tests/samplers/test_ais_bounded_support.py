"""AIS with a target of bounded support (E = +inf outside): -inf log-weights are weight 0."""

import math

import pytest
import torch

from torchebm.core.errors import NonFiniteError
from torchebm.samplers import AnnealedImportanceSampling

F64 = torch.float64
M, S, A, B = 0.3, 2.0, -1.0, 3.0  # N(M, S^2) truncated to [A, B], unnormalised


class _TruncatedGaussian(torch.nn.Module):
    def forward(self, x):
        x1 = x[:, 0]
        inside = (x1 >= A) & (x1 <= B)
        return torch.where(inside, 0.5 * ((x1 - M) / S) ** 2, torch.full_like(x1, math.inf))


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


LOG_Z = math.log(S * math.sqrt(2 * math.pi) * (_phi((B - M) / S) - _phi((A - M) / S)))


@pytest.mark.parametrize("transition", ["hmc", "mala"])
def test_ais_log_z_of_a_truncated_gaussian_counts_minus_inf_weights_as_zero(transition):
    # base N(0, 2^2): about a third of the chains start outside [A, B] (log-weight -inf);
    # this raised NonFiniteError("log_weights ...") or stopped HMC at the infinite energy
    ais = AnnealedImportanceSampling(
        _TruncatedGaussian(), n_intermediate=100, transition=transition, step_size=0.3,
        base_std=2.0,
    )  # fmt: skip
    r = ais.estimate(4000, 1, dtype=F64, generator=torch.Generator().manual_seed(0))
    w = r.log_weights
    dead = w == -math.inf
    assert 600 < int(dead.sum()) < 2000 and not bool(w.isnan().any())
    # the chains of positive weight never accepted a proposal of infinite energy
    kept = r.samples[~dead, 0]
    assert bool(((kept >= A) & (kept <= B)).all())
    # zero weights count in the mean and the ESS (float64 hand computation over all chains)
    log_z0 = 0.5 * math.log(2 * math.pi * 4.0)
    wl = [float(v) for v in w]
    top = max(wl)
    ew = [math.exp(v - top) for v in wl]  # exp(-inf) = 0
    assert r.log_z == pytest.approx(log_z0 + top + math.log(sum(ew) / len(ew)), abs=1e-12)
    ess = sum(ew) ** 2 / sum(e * e for e in ew)
    assert r.effective_sample_size == pytest.approx(ess, rel=1e-12)
    assert r.effective_sample_size < int((~dead).sum())
    # 3 SE < 0.041: a 5% error in Z (0.049 in log Z) fails
    assert r.standard_error < 0.0135
    assert abs(r.log_z - LOG_Z) < 3 * r.standard_error, (r.log_z, LOG_Z, r.standard_error)


def test_ais_raises_when_every_log_weight_is_minus_inf_and_on_nan():
    class FarSupport(torch.nn.Module):
        def forward(self, x):
            inside = (x[:, 0] > 50.0) & (x[:, 0] < 51.0)
            return torch.where(inside, x[:, 0], torch.full_like(x[:, 0], math.inf))

    ais = AnnealedImportanceSampling(FarSupport(), n_intermediate=5, transition="mala")
    with pytest.raises(NonFiniteError, match=r"-inf \(weight 0\) in all 8 chains"):
        ais.estimate(8, 1, dtype=F64, generator=torch.Generator().manual_seed(0))

    class NaNOutside(_TruncatedGaussian):
        def forward(self, x):
            e = super().forward(x)
            return torch.where(torch.isinf(e), torch.full_like(e, math.nan), e)

    ais = AnnealedImportanceSampling(NaNOutside(), n_intermediate=5, transition="mala")
    with pytest.raises(NonFiniteError, match="log_weights contains NaN.*model.s energy was NaN"):
        ais.estimate(64, 1, dtype=F64, generator=torch.Generator().manual_seed(0))
