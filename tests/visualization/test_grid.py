"""Grid evaluation behind the plots: exact energies, orientation, densities, validation."""

import math

import numpy as np
import pytest
import torch

from torchebm.core import GaussianModel, HarmonicModel
from torchebm.visualization import energy_grid, landscape_values, vector_field_grid


def test_energy_grid_matches_closed_form_and_orientation():
    X, Y, E = energy_grid(HarmonicModel(k=2.0), (-1.0, 2.0), (-3.0, 1.0), grid_size=7)
    assert X.shape == Y.shape == E.shape == (7, 7)
    np.testing.assert_allclose(X[0], np.linspace(-1.0, 2.0, 7))
    np.testing.assert_allclose(Y[:, 0], np.linspace(-3.0, 1.0, 7))
    np.testing.assert_allclose(E, X**2 + Y**2, rtol=1e-6, atol=1e-6)


def test_energy_grid_minimum_sits_at_the_gaussian_mean():
    mean = torch.tensor([1.0, -2.0])
    X, Y, E = energy_grid(GaussianModel(mean, torch.eye(2)), (-3, 3), (-3, 3), grid_size=61)
    i, j = np.unravel_index(np.argmin(E), E.shape)
    assert (X[i, j], Y[i, j]) == pytest.approx((1.0, -2.0), abs=1e-9)


def test_energy_grid_chunking_does_not_change_values():
    model = GaussianModel(torch.zeros(2), torch.tensor([[1.0, 0.3], [0.3, 2.0]]))
    _, _, e_one = energy_grid(model, (-2, 2), grid_size=11)
    _, _, e_chunked = energy_grid(model, (-2, 2), grid_size=11, batch_size=7)
    np.testing.assert_array_equal(e_one, e_chunked)


class _LinearEnergy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def forward(self, x):
        return self.lin(x).squeeze(-1)


def test_energy_grid_follows_a_float64_module():
    model = _LinearEnergy().double()
    net = model.lin
    X, Y, E = energy_grid(model, (-1, 1), grid_size=5)
    with torch.no_grad():
        w, b = net.weight[0].numpy(), float(net.bias)
    np.testing.assert_allclose(E, w[0] * X + w[1] * Y + b, rtol=1e-6, atol=1e-6)


def test_model_kwargs_are_forwarded():
    def model(x, scale):
        return scale * (x**2).sum(-1)

    _, _, E = energy_grid(model, (-1, 1), grid_size=3, model_kwargs={"scale": 3.0})
    assert E[0, 0] == pytest.approx(6.0)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"xlim": (1.0, -1.0)}, ValueError),
        ({"xlim": (0.0, float("inf"))}, ValueError),
        ({"xlim": "ab"}, TypeError),
        ({"grid_size": 1}, ValueError),
        ({"grid_size": 2.5}, TypeError),
    ],
)
def test_energy_grid_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        energy_grid(HarmonicModel(), **kwargs)


def test_energy_grid_rejects_models_with_the_wrong_output_shape():
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        energy_grid(lambda x: x.sum(-1, keepdim=True), (-1, 1), grid_size=4)


def test_vector_field_grid_linear_field_and_time():
    A = torch.tensor([[0.0, -1.0], [2.0, 0.5]])
    X, Y, U, V = vector_field_grid(lambda x: x @ A.T, (-1, 1), grid_size=5)
    np.testing.assert_allclose(U, -Y, atol=1e-6)
    np.testing.assert_allclose(V, 2 * X + 0.5 * Y, atol=1e-6)
    _, _, U2, _ = vector_field_grid(
        lambda x, t: (t[:, None] * x, None), (-1, 1), grid_size=5, t=0.25
    )
    np.testing.assert_allclose(U2, 0.25 * X, atol=1e-6)


def test_density_is_normalised_and_matches_the_gaussian():
    cov = torch.tensor([[1.0, 0.5], [0.5, 2.0]])
    X, Y, E = energy_grid(GaussianModel(torch.zeros(2), cov), (-9, 9), grid_size=401)
    p = landscape_values(E, X, Y, "density")
    cell = (X[0, 1] - X[0, 0]) * (Y[1, 0] - Y[0, 0])
    assert p.sum() * cell == pytest.approx(1.0, rel=1e-9)
    peak = 1.0 / (2 * math.pi * math.sqrt(float(torch.det(cov))))
    assert p.max() == pytest.approx(peak, rel=2e-3)
    np.testing.assert_allclose(landscape_values(E, X, Y, "log_density"), np.log(p), atol=1e-9)


def test_clip_limits_the_shown_range():
    X, Y, E = energy_grid(HarmonicModel(k=10.0), (-3, 3), grid_size=31)
    clipped = landscape_values(E, X, Y, "energy", clip=5.0)
    assert clipped.max() == pytest.approx(E.min() + 5.0)
    np.testing.assert_array_equal(clipped[E < 5.0], E[E < 5.0])
    logp = landscape_values(E, X, Y, "log_density", clip=4.0)
    assert logp.min() == pytest.approx(logp.max() - 4.0)
    with pytest.raises(ValueError, match="clip"):
        landscape_values(E, X, Y, "energy", clip=-1.0)


def test_landscape_values_reports_non_finite_energies():
    X, Y = np.meshgrid(np.linspace(0, 1, 3), np.linspace(0, 1, 3))
    E = np.zeros((3, 3))
    E[1, 1] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        landscape_values(E, X, Y, "density")
    with pytest.raises(ValueError, match="kind"):
        landscape_values(np.zeros((3, 3)), X, Y, "surface")


def test_density_integrates_to_one_over_the_window_when_mass_reaches_its_edges():
    # the density was e^{-E} over the Riemann sum of all n^2 nodes times dx dy, i.e. over a
    # window one cell wider than the plotted one: a flat energy on [-1, 1]^2 gave 1/9
    # (n = 3) or 0.2025 (n = 10) instead of the uniform density 1/4
    X, Y = np.meshgrid(np.linspace(-1, 1, 10), np.linspace(-1, 1, 3))
    np.testing.assert_allclose(landscape_values(np.zeros(X.shape), X, Y, "density"), 0.25)
    # E(x, y) = x on [0, 2] x [0, 1]: p = e^{-x} / (1 - e^{-2}), the trapezoidal error
    # ~ h^2/12 = 1.4e-4 of it (4 % off before)
    X, Y = np.meshgrid(np.linspace(0, 2, 50), np.linspace(0, 1, 30))
    exact = np.exp(-X) / (1 - math.exp(-2))
    np.testing.assert_allclose(landscape_values(X, X, Y, "density"), exact, rtol=3e-4)
    logp = landscape_values(X, X, Y, "log_density")
    np.testing.assert_allclose(logp, np.log(exact), atol=3e-4)


class _LabelEnergy(torch.nn.Module):
    """``E(x, y) = |x - c_y|^2 / 2`` with a centre per label."""

    def forward(self, x, y):
        centres = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=x.dtype)
        return 0.5 * (x - centres[y]).square().sum(-1)


def test_energy_grid_splits_per_point_conditioning_with_the_points():
    # the points were chunked (batch_size) but not the conditioning: a per-point y of
    # grid_size**2 rows failed once the grid needed two chunks, and one label was refused
    n = 5
    labels = (torch.arange(n * n) % 2).long()
    X, Y, E = energy_grid(_LabelEnergy(), (-1, 1), grid_size=n, model_kwargs={"y": labels},
                          batch_size=7)  # fmt: skip
    pts = torch.tensor(np.stack([X.ravel(), Y.ravel()], axis=1))
    want = _LabelEnergy()(pts, labels).numpy().reshape(X.shape)
    np.testing.assert_allclose(E, want, rtol=1e-6)
    # a 0-d tensor (one label; or a scale the model broadcasts) passes to every call as it is
    _, _, Es = energy_grid(lambda x, s: (x / s).square().sum(-1), (-1, 1), grid_size=n,
                           model_kwargs={"s": torch.tensor(2.0)}, batch_size=7)  # fmt: skip
    np.testing.assert_allclose(Es, (pts / 2.0).square().sum(-1).numpy().reshape(X.shape))
    _, _, E1 = energy_grid(_LabelEnergy(), (-1, 1), grid_size=n, model_kwargs={"y": torch.tensor(1)},
                           batch_size=7)  # fmt: skip
    want1 = _LabelEnergy()(pts, torch.ones(n * n, dtype=torch.long)).numpy().reshape(X.shape)
    np.testing.assert_allclose(E1, want1, rtol=1e-6)


def test_energy_grid_runs_the_model_without_autograd():
    # a helper inserted under the @torch.no_grad() line took the decorator from energy_grid
    seen = []
    energy_grid(lambda x: seen.append(torch.is_grad_enabled()) or x.square().sum(-1), grid_size=4)
    assert seen == [False]
