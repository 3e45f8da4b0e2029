"""AIS of a conditional energy E(x | y): ``model_kwargs`` reach every model call, and the
per-chain rows of the conditioning follow their chains (also when chains die)."""

import math

import pytest
import torch

from torchebm.core import BaseModel
from torchebm.core.errors import ConfigurationError
from torchebm.samplers import AnnealedImportanceSampling, annealed_importance_sampling

F64 = torch.float64
MU = torch.tensor([[0.0, 0.0], [3.0, -1.0]], dtype=F64)
SCALE = torch.tensor([0.5, 2.0], dtype=F64)


class _ConditionalGaussian(BaseModel):
    r"""$E(x \mid y) = \|x - \mu_y\|^2 / (2 s_y^2)$: $\log Z(y) = \log(2\pi s_y^2)$ in 2-D."""

    def __init__(self):
        super().__init__(dtype=F64)

    def forward(self, x, y):
        return 0.5 * (x - MU[y]).square().sum(1) / SCALE[y] ** 2


def _log_z(label: int) -> float:
    return math.log(2 * math.pi * float(SCALE[label]) ** 2)


@pytest.mark.parametrize("transition", ["hmc", "mala"])
@pytest.mark.parametrize("label", [0, 1])
def test_ais_of_a_conditional_energy_estimates_log_z_of_that_condition(transition, label):
    # log Z(0) = 0.45, log Z(1) = 3.22: an estimate that ignored y would miss one by > 2.7
    y = torch.full((400,), label)
    r = annealed_importance_sampling(
        _ConditionalGaussian(), 400, 2, n_intermediate=200, transition=transition,
        step_size=0.2, base_std=1.5, generator=torch.Generator().manual_seed(0),
        model_kwargs={"y": y},
    )  # fmt: skip
    assert r.standard_error < 0.065  # 3 SE < 0.2: a 5% error in Z (0.049) or worse in log Z
    assert abs(r.log_z - _log_z(label)) < 3 * r.standard_error + 0.01, (r.log_z, _log_z(label))
    # the samples are the condition's: mean mu_y within 4 standard errors
    se = float(SCALE[label]) / math.sqrt(r.effective_sample_size)
    assert (r.samples.mean(0) - MU[label]).abs().max() < 4 * se + 0.05


def test_reverse_ais_takes_the_conditioning_of_its_exact_samples():
    gen = torch.Generator().manual_seed(1)
    exact = MU[1] + SCALE[1] * torch.randn(400, 2, generator=gen, dtype=F64)
    ais = AnnealedImportanceSampling(
        _ConditionalGaussian(), n_intermediate=200, transition="hmc", step_size=0.2, base_std=1.5
    )
    r = ais.reverse(exact, generator=gen, model_kwargs={"y": torch.ones(400, dtype=torch.long)})
    assert r.direction == "reverse" and r.standard_error < 0.065
    assert abs(r.log_z - _log_z(1)) < 3 * r.standard_error + 0.01, (r.log_z, _log_z(1))


A_Y, B_Y = (-1.0, 0.0), (3.0, 0.5)  # the support [A_y, B_y] of the truncated N(0.3, 2^2)


class _ConditionalTruncated(torch.nn.Module):
    def forward(self, x, y):
        lo = torch.tensor(A_Y, dtype=x.dtype)[y]
        hi = torch.tensor(B_Y, dtype=x.dtype)[y]
        x1 = x[:, 0]
        inside = (x1 >= lo) & (x1 <= hi)
        return torch.where(inside, 0.5 * ((x1 - 0.3) / 2.0) ** 2, torch.full_like(x1, math.inf))


def _truncated_z(label: int) -> float:
    def phi(z: float) -> float:
        return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))

    return (
        2.0 * math.sqrt(2 * math.pi) * (phi((B_Y[label] - 0.3) / 2) - phi((A_Y[label] - 0.3) / 2))
    )


def test_the_per_chain_conditioning_follows_the_chains_that_stay_alive():
    # chains alternate y = 0, 1; those starting outside their support die (weight 0) and the
    # others move alone: their rows of y must go with them. With half the chains per label,
    # E[w] = (Z(0) + Z(1)) / (2 Z0); a chain moved under the other label's support would
    # leave it and the estimate would be biased (or NaN).
    y = torch.arange(8000) % 2
    ais = AnnealedImportanceSampling(
        _ConditionalTruncated(), n_intermediate=100, transition="mala", step_size=0.3,
        base_std=2.0,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    r = ais.estimate(8000, 1, dtype=F64, generator=gen, model_kwargs={"y": y})
    dead = r.log_weights == -math.inf
    assert 0 < int(dead.sum()) < 8000
    kept, label = r.samples[~dead, 0], y[~dead]
    lo, hi = torch.tensor(A_Y, dtype=F64)[label], torch.tensor(B_Y, dtype=F64)[label]
    assert bool(((kept >= lo) & (kept <= hi)).all())
    exact = math.log((_truncated_z(0) + _truncated_z(1)) / 2)
    assert r.standard_error < 0.0165  # 3 SE < 0.049: a 5% error in Z fails
    assert abs(r.log_z - exact) < 3 * r.standard_error, (r.log_z, exact, r.standard_error)


def test_a_conditional_energy_called_without_its_conditioning_is_named():
    with pytest.raises(ConfigurationError, match="refuses it"):
        annealed_importance_sampling(_ConditionalGaussian(), 10, 2, n_intermediate=5)


def test_model_kwargs_must_be_a_dict_and_the_reverse_warning_says_too_large():
    ais = AnnealedImportanceSampling(_ConditionalGaussian(), n_intermediate=2)
    with pytest.raises(TypeError, match="model_kwargs must be a dict .* got Tensor"):
        ais.estimate(10, 2, model_kwargs=torch.ones(10))
    # a degenerate reverse run (an upper bound) comes out too large, not too small
    far = AnnealedImportanceSampling(_ConditionalGaussian(), n_intermediate=2, base_mean=-30.0)
    exact = MU[0] + SCALE[0] * torch.randn(
        200, 2, generator=torch.Generator().manual_seed(0), dtype=F64
    )
    with pytest.warns(RuntimeWarning, match="log Z is likely too large"):
        far.reverse(exact, model_kwargs={"y": torch.zeros(200, dtype=torch.long)})


def test_per_chain_conditioning_that_is_not_a_tensor_follows_the_alive_chains():
    # before: only a tensor was cut to the chains of positive weight; a list of prompts kept
    # n_chains entries for the subset and the model failed (a numpy array too)
    import numpy as np

    class _ByPrompt(_ConditionalTruncated):  # y as a list of prompts or an array of labels
        def forward(self, x, y):
            labels = [len(p) - 1 for p in y] if isinstance(y, list) else np.asarray(y).tolist()
            if len(labels) != x.shape[0]:
                raise AssertionError(f"{len(labels)} conditions for {x.shape[0]} chains")
            return super().forward(x, torch.tensor(labels))

    n = 400
    y = torch.arange(n) % 2
    forms = {"tensor": y, "list": ["a" * (int(v) + 1) for v in y], "numpy": y.numpy()}
    results = {}
    for name, cond in forms.items():
        ais = AnnealedImportanceSampling(
            _ByPrompt(), n_intermediate=10, transition="mala", step_size=0.3, base_std=2.0
        )
        gen = torch.Generator().manual_seed(0)
        results[name] = ais.estimate(n, 1, dtype=F64, generator=gen, model_kwargs={"y": cond})
    dead = results["tensor"].log_weights == -math.inf
    assert 0 < int(dead.sum()) < n  # a subset of the chains moved
    for name in ("list", "numpy"):
        torch.testing.assert_close(results[name].samples, results["tensor"].samples)
        assert results[name].log_z == results["tensor"].log_z
