"""Annealed importance sampling against exact log Z (Gaussian) and quadrature log Z (double well)."""

import math

import pytest
import torch

from torchebm.core import DoubleWellModel, GaussianModel
from torchebm.core.errors import ConfigurationError, ShapeError
from torchebm.samplers import AnnealedImportanceSampling, annealed_importance_sampling

F64 = torch.float64
MEAN = torch.tensor([1.0, -1.0, 0.5], dtype=F64)
CHOL = torch.tensor([[1.0, 0.0, 0.0], [0.4, 0.8, 0.0], [-0.3, 0.2, 0.6]], dtype=F64)
COV = CHOL @ CHOL.T
EXACT = 1.5 * math.log(2 * math.pi) + 0.5 * math.log(float(torch.linalg.det(COV)))


def _gaussian():
    return GaussianModel(MEAN, COV, dtype=F64)


@pytest.mark.parametrize("transition", ["hmc", "mala"])
def test_ais_lands_within_3_se_of_the_exact_gaussian_log_z(transition):
    ais = AnnealedImportanceSampling(
        _gaussian(), n_intermediate=200, transition=transition, step_size=0.3, base_std=2.0
    )
    r = ais.estimate(400, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert r.direction == "forward" and r.log_weights.shape == (400,)
    assert r.samples.shape == (400, 3)
    assert 0.5 < r.acceptance_rate <= 1.0
    assert r.standard_error < 0.03  # 3 SE is below a 5% error of log Z (2.02)
    assert abs(r.log_z - EXACT) < 3 * r.standard_error, (r.log_z, EXACT, r.standard_error)


def test_ais_error_shrinks_as_the_number_of_temperatures_grows():
    gen = torch.Generator().manual_seed(1)
    var, err = [], []
    for k in (5, 50, 500):
        r = annealed_importance_sampling(
            _gaussian(), 300, 3, n_intermediate=k, transition="mala", step_size=0.3,
            base_std=2.0, dtype=F64, generator=gen,
        )  # fmt: skip
        var.append(float(r.log_weights.var()))
        # the mean log weight is a lower bound; its gap to log Z is the KL of the path
        err.append(EXACT - (r.log_z - math.log(r.log_weights.exp().mean()) + r.log_weights.mean()))
    assert var[0] > 5 * var[1] > 25 * var[2], var
    assert err[0] > err[1] > err[2] > 0, err


def _double_well_log_z_2d(h: float, b: float) -> float:
    """log Z of h * sum_i (x_i^2 - b^2)^2 in 2-D: the energy is separable, so Z = Z_1^2 with
    Z_1 a 1-D integral, here by the trapezoidal rule on [-4, 4] (the integrand is below
    e^-400 at the ends; 2^16 panels of a smooth integrand: error far below 1e-9)."""
    x = torch.linspace(-4.0, 4.0, 2**16 + 1, dtype=F64)
    z1 = torch.trapezoid(torch.exp(-h * (x**2 - b**2) ** 2), x)
    return 2.0 * math.log(float(z1))


def test_ais_matches_the_quadrature_log_z_of_the_2d_double_well():
    model = DoubleWellModel(barrier_height=2.0, b=1.0, dtype=F64)
    log_z = _double_well_log_z_2d(2.0, 1.0)
    ais = AnnealedImportanceSampling(model, n_intermediate=200, step_size=0.1, base_std=1.5)
    r = ais.estimate(400, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    assert r.standard_error < 0.03
    assert abs(r.log_z - log_z) < 3 * r.standard_error, (r.log_z, log_z)


def test_reverse_ais_from_exact_samples_sandwiches_log_z():
    gen = torch.Generator().manual_seed(3)
    ais = AnnealedImportanceSampling(
        _gaussian(), n_intermediate=20, transition="hmc", step_size=0.3, base_std=2.0
    )
    exact = MEAN + torch.randn(400, 3, generator=gen, dtype=F64) @ CHOL.T
    up = ais.reverse(exact, generator=gen)
    lo = ais.estimate(400, 3, dtype=F64, generator=gen)
    assert up.direction == "reverse"
    assert abs(up.log_z - EXACT) < 3 * up.standard_error
    # with few temperatures both bounds are loose, on the right sides of log Z
    mean_lo = lo.log_weights.mean() + 1.5 * math.log(2 * math.pi * 4.0)
    mean_up = -up.log_weights.mean() + 1.5 * math.log(2 * math.pi * 4.0)
    assert mean_lo < EXACT < mean_up


def test_unadjusted_langevin_transition_runs_and_is_close():
    r = annealed_importance_sampling(
        _gaussian(), 200, 3, n_intermediate=100, transition="langevin", step_size=0.02,
        base_std=2.0, dtype=F64, generator=torch.Generator().manual_seed(4),
    )  # fmt: skip
    assert r.acceptance_rate is None
    assert abs(r.log_z - EXACT) < 0.3  # biased by O(step_size): a loose check only


def test_ais_is_reproducible_with_a_generator_and_validates_input():
    def run(seed):
        return annealed_importance_sampling(
            _gaussian(), 16, 3, n_intermediate=10, dtype=F64,
            generator=torch.Generator().manual_seed(seed),
        ).log_weights  # fmt: skip

    assert torch.equal(run(5), run(5))
    with pytest.raises(ConfigurationError, match="n_intermediate"):
        AnnealedImportanceSampling(_gaussian(), n_intermediate=0)
    with pytest.raises(ConfigurationError, match="transition"):
        AnnealedImportanceSampling(_gaussian(), transition="gibbs")
    with pytest.raises(ConfigurationError, match="schedule"):
        AnnealedImportanceSampling(_gaussian(), schedule=[0.0, 0.7, 0.5, 1.0])
    with pytest.raises(TypeError, match="callable"):
        AnnealedImportanceSampling(3.0)
    with pytest.raises(ShapeError, match="base_mean"):
        AnnealedImportanceSampling(_gaussian(), base_mean=torch.zeros(2)).estimate(4, 3)
    with pytest.raises(ConfigurationError, match="dim"):
        AnnealedImportanceSampling(_gaussian()).estimate(4, 0)


class _MisshapedGradient(torch.nn.Module):
    """E(x) = 2 |x|^2 whose own ``gradient`` returns ``(B, 1)`` instead of ``(B, D)``."""

    def forward(self, x):
        return 2.0 * x.flatten(1).square().sum(1)

    def gradient(self, x, model_kwargs=None):
        return 4.0 * x.flatten(1).sum(1, keepdim=True)


class _ShapedGradient(_MisshapedGradient):
    def gradient(self, x, model_kwargs=None):
        return 4.0 * x


@pytest.mark.parametrize("transition", ["mala", "hmc", "langevin"])
def test_ais_rejects_a_model_gradient_not_shaped_like_x(transition):
    # a (B, 1) gradient broadcast against the (B, D) base gradient ran silently with the
    # wrong dynamics; the samplers reject the same model with a ShapeError
    ais = AnnealedImportanceSampling(_MisshapedGradient(), n_intermediate=5, transition=transition)
    with pytest.raises(
        ShapeError, match=r"model\.gradient\(x\).*shaped like x \(4, 3\), got \(4, 1\)"
    ):
        ais.estimate(4, 3, generator=torch.Generator().manual_seed(0))
    # the energy's own (correct) gradient is used as given: E = 2|x|^2 on (2, 2) events
    r = AnnealedImportanceSampling(
        _ShapedGradient(), n_intermediate=100, transition=transition, step_size=0.05
    )
    r = r.estimate(400, (2, 2), dtype=F64, generator=torch.Generator().manual_seed(1))
    exact = 2.0 * math.log(2 * math.pi * 0.25)  # D/2 log(2 pi var), var = 1/4, D = 4
    bias = 0.2 if transition == "langevin" else 0.0  # unadjusted: an O(step) bias
    assert abs(r.log_z - exact) < 4 * r.standard_error + bias, (r.log_z, exact)


def test_ais_chains_follow_the_model_dtype_like_the_samplers():
    # estimate() defaulted to float32 chains and crashed inside a float64 model ("mat1 and
    # mat2 must have the same dtype"); the samplers follow the parameters' dtype
    from torchebm.core import BaseModel

    class Float64Quadratic(BaseModel):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1, dtype=torch.float64)

        def forward(self, x):
            return self.lin(x).squeeze(-1) + 0.5 * x.square().sum(1)

    model = Float64Quadratic()
    ais = AnnealedImportanceSampling(model, n_intermediate=10)
    gen = torch.Generator().manual_seed(0)
    assert ais.estimate(16, 2, generator=gen).samples.dtype == torch.float64
    assert annealed_importance_sampling(model, 16, 2, n_intermediate=5).samples.dtype == (
        torch.float64
    )
    # a parameter-free model built in float64 too, and an explicit dtype still wins
    gauss = GaussianModel(torch.zeros(2), torch.eye(2), dtype=torch.float64)
    assert AnnealedImportanceSampling(gauss, n_intermediate=5).estimate(8, 2).samples.dtype == (
        torch.float64
    )
    explicit = AnnealedImportanceSampling(gauss, n_intermediate=5).estimate(
        8, 2, dtype=torch.float32
    )
    assert explicit.samples.dtype == torch.float32
    # a plain callable has no placement: float32
    plain = AnnealedImportanceSampling(lambda x: 0.5 * x.square().sum(1), n_intermediate=5)
    assert plain.estimate(8, 2).samples.dtype == torch.float32


def test_a_degenerate_weight_distribution_warns_instead_of_a_tight_error_bar():
    # one base step (n_intermediate=1) to a target N(50, 0.1^2 I): one chain carries every
    # weight; the estimate was 2e5 nats off with standard_error 1.0 (its maximum), silently
    class Far(torch.nn.Module):
        def forward(self, x):
            return 50.0 * (x - 50.0).square().sum(1)

    ais = AnnealedImportanceSampling(Far(), n_intermediate=1)
    with pytest.warns(RuntimeWarning, match="effective sample size of the weights is 1 of 2000"):
        r = ais.estimate(2000, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert r.standard_error <= 1.0 + 1e-9 and r.effective_sample_size < 1.5
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        ais.estimate(10, 2, generator=3)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        ais.reverse(torch.zeros(10, 2), generator="abc")


@pytest.mark.parametrize("transition", ["mala", "hmc", "langevin"])
def test_an_energy_without_a_graph_in_x_is_refused_with_the_way_out(transition):
    # the uniform density on the unit disc written with constants: autograd's "element 0 of
    # tensors does not require grad"; the named error's form of it gives log Z = log pi
    def constant(x):
        return torch.where(x.norm(dim=1) <= 1, torch.zeros(len(x), dtype=x.dtype), math.inf)

    class Parametrised(torch.nn.Module):  # a graph, of its parameter only
        def __init__(self):
            super().__init__()
            self.level = torch.nn.Parameter(torch.zeros((), dtype=F64))

        def forward(self, x):
            return torch.where(x.norm(dim=1) <= 1, self.level.expand(len(x)), math.inf)

    for energy in (constant, Parametrised()):
        ais = AnnealedImportanceSampling(energy, n_intermediate=5, transition=transition)
        with pytest.raises(RuntimeError, match=r"not depend differentiably.*0 \* x.sum\(-1\)"):
            ais.estimate(200, 2, dtype=F64)  # (10 chains: all outside the disc 0.7 % of draws)

    def in_graph(x):
        return torch.where(x.norm(dim=1) <= 1, 0 * x.sum(-1), math.inf)

    r = AnnealedImportanceSampling(in_graph, n_intermediate=100, step_size=0.3).estimate(
        2000, 2, dtype=F64, generator=torch.Generator().manual_seed(0)
    )
    assert abs(r.log_z - math.log(math.pi)) < 4 * r.standard_error < 0.2


@pytest.mark.parametrize("dtype", [torch.int32, "float32"])
def test_ais_names_a_dtype_that_is_not_a_floating_torch_dtype(dtype):
    # torch.int32 failed inside normal_ ("not implemented for 'Int'"), a string inside randn
    with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype"):
        annealed_importance_sampling(_gaussian(), 8, 3, n_intermediate=3, dtype=dtype)


def test_ais_repr_names_its_settings():
    # it printed as <... object at 0x...>
    text = repr(AnnealedImportanceSampling(GaussianModel(torch.zeros(2), torch.eye(2)),
                                           n_intermediate=7, transition="langevin"))  # fmt: skip
    assert text.startswith("AnnealedImportanceSampling(model=GaussianModel, n_intermediate=7, "
                           "transition='langevin', step_size=0.1")  # fmt: skip
    # two settings with different estimates print differently (schedule, base_mean)
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    assert repr(AnnealedImportanceSampling(model)) != repr(
        AnnealedImportanceSampling(model, schedule="linear", base_mean=3.0)
    )
