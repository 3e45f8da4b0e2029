"""The figures of the ``torchebm demo`` quality table, checked against numpy references.

A stand-in demo (no training: it returns fixed samples and a linear energy) goes through
`run_demo`, so every figure the driver prints can be recomputed here independently: the
energy distance and the multi-scale MMD of each row, the Gaussian-fit row's moments, the
held-out NLL under $e^{-E}/Z$ on the printed box (closed form) and the Gaussian-fit NLL
beside it.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
import torch

from torchebm.cli import _demos
from torchebm.cli._demos import DEMOS, DemoContext, DemoOutput, DemoSpec, run_demo
from torchebm.cli._progress import Progress

N = 1000  # held-out points and model samples of the stand-in run (the tests' default)


def _linear_energy(x: torch.Tensor) -> torch.Tensor:
    """$E(x) = x_1$: on $[-h, h]^2$, $Z = 2h \\cdot 2\\sinh h$."""
    return x[:, 0]


def _standin(seen: dict):
    def run(demo: DemoContext) -> DemoOutput:
        seen["demo"] = demo
        init, label = demo.start(spread=0.5)
        samples = demo.batch(demo.n_samples) + 0.1 * demo.noise(demo.n_samples)
        seen["samples"], seen["init"] = samples.clone(), init.clone()
        return DemoOutput(samples, init, label, _linear_energy, "stand-in", history={"loss": [1.0]})

    return run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One `run_demo` of the stand-in on two_moons: its result, its text, what it saw."""
    seen: dict = {}
    rows: list = []
    mp = pytest.MonkeyPatch()
    try:
        mp.setitem(DEMOS, "standin", DemoSpec("stand-in", _standin(seen), "two_moons", 5, "steps"))
        real_scores = _demos._scores

        def spy(x, test):
            rows.append((x.detach().double().numpy().copy(), test.detach().double().numpy()))
            return real_scores(x, test)

        mp.setattr(_demos, "_scores", spy)
        out = io.StringIO()
        png = tmp_path_factory.mktemp("demo") / "standin.png"
        res = run_demo("standin", n_samples=N, out=str(png), quiet=True, stream=out, seed=11)
    finally:
        mp.undo()
    return res, out.getvalue(), seen, rows


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased: 2 E|X - Y| - E|X - X'| - E|Y - Y'| with i != j in the within-sample means."""
    dxy, dxx, dyy = (np.sqrt(_sq_dists(a, b)) for a, b in ((x, y), (x, x), (y, y)))
    n, m = len(x), len(y)
    return 2 * dxy.mean() - dxx.sum() / (n * (n - 1)) - dyy.sum() / (m * (m - 1))


def _mmd2(x: np.ndarray, y: np.ndarray, scales: list[float]) -> float:
    """Unbiased MMD^2 with the kernel mean_l exp(-|a - b|^2 / (2 l^2))."""
    n, m = len(x), len(y)

    def k(a, b):
        d2 = _sq_dists(a, b)
        return sum(np.exp(-d2 / (2 * s * s)) for s in scales) / len(scales)

    kxx, kyy = k(x, x), k(y, y)
    within = (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (
        m * (m - 1)
    )
    return within - 2 * k(x, y).mean()


def test_table_rows_are_energy_distance_and_multi_scale_mmd_to_held_out_data(report):
    res, _, seen, rows = report
    test = rows[0][1]
    assert test.shape == (N, 2)
    # bandwidths (0.05, 0.1, 0.2, 0.5, 1) x the RMS per-feature standard deviation of test
    s = math.sqrt(np.var(test, axis=0, ddof=1).mean())
    scales = [f * s for f in (0.05, 0.1, 0.2, 0.5, 1.0)]
    samples, init = seen["samples"].double().numpy(), seen["init"].double().numpy()
    for key, x in (("", samples), ("_init", init)):
        assert res["energy_distance" + key] == pytest.approx(_energy_distance(x, test), rel=1e-9)
        assert res["mmd" + key] == pytest.approx(_mmd2(x, test, scales), rel=1e-9, abs=1e-12)
    ref = rows[3][0]
    assert res["energy_distance_data"] == pytest.approx(_energy_distance(ref, test), rel=1e-9)


def _whitened(gauss: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``gauss`` in the coordinates where N(mean, covariance) of ``ref`` is N(0, I)."""
    chol = np.linalg.cholesky(np.cov(ref.T))
    return np.linalg.solve(chol, (gauss - ref.mean(0)).T).T


def _assert_standard_normal(z: np.ndarray) -> None:
    n = len(z)
    # each entry of z^T z / n: mean delta_ij, standard error sqrt(2 / n) (diagonal) or 1 / sqrt(n)
    np.testing.assert_allclose(z.T @ z / n, np.eye(2), rtol=0, atol=4 * math.sqrt(2 / n))
    assert np.all(np.abs(z.mean(0)) < 4 / math.sqrt(n))
    # mean squared Mahalanobis norm: chi^2_2 has mean 2 and standard deviation 2
    assert abs((z**2).sum(1).mean() - 2) < 4 * 2 / math.sqrt(n)


def test_gaussian_fit_row_has_the_data_mean_and_covariance(report):
    # rows: model samples, initial noise, Gaussian fit, data vs. data (the sample it is fit to)
    _, _, _, rows = report
    _assert_standard_normal(_whitened(rows[2][0], rows[3][0]))


def test_gaussian_fit_draws_from_the_fitted_normal():
    # 40 000 draws: a 5 % error in a standard deviation or in the mean of two_moons
    # (whitened shift 0.05) is beyond 4 standard errors
    import torchebm.datasets as D

    ref = D.make_two_moons(40000, generator=torch.Generator().manual_seed(8))
    gauss = _demos._gaussian_fit(ref, torch.Generator().manual_seed(9))
    assert gauss.shape == ref.shape and gauss.dtype == ref.dtype
    _assert_standard_normal(_whitened(gauss.double().numpy(), ref.double().numpy()))


def test_held_out_nll_is_the_closed_form_on_the_training_box(report):
    res, text, seen, rows = report
    test = rows[0][1]
    # the box is where the demos train and sample: 1.5 x the largest |coordinate| of the
    # training data (the cd demo clamps its chains to the same square)
    h = 1.5 * float(seen["demo"].train.abs().max())
    # log Z by the trapezoidal rule on 257 x 257 points (spacing d = 2h / 256): exact in x_2,
    # and for e^{-x_1} the rule gives the integral 2 sinh(h) times (d / 2) coth(d / 2)
    d = 2 * h / 256
    log_z = math.log(2 * h) + math.log(2 * math.sinh(h)) + math.log(d / 2 / math.tanh(d / 2))
    assert res["nll"] == pytest.approx(test[:, 0].mean() + log_z, abs=1e-5)
    line = next(line for line in text.splitlines() if "held-out NLL" in line)
    assert f"{res['nll']:.4f}" in line and f"[-{h:.1f}, {h:.1f}]^2" in line
    # the Gaussian fit printed beside it: N(mean, covariance) of the reference sample
    ref = rows[3][0]
    mu, cov = ref.mean(0), np.cov(ref.T)
    d = test - mu
    maha = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    want = float(np.mean(0.5 * maha) + 0.5 * math.log(np.linalg.det(2 * math.pi * cov)))
    printed = float(re.search(r"Gaussian fit (-?\d+\.\d+)", line).group(1))
    assert printed == pytest.approx(want, abs=6e-5)


class _Stop(Exception):
    """Raised by a stand-in demo once it has recorded what it was given."""


def test_steps_option_reaches_the_demo(report, tmp_path):
    _, text, seen, _ = report
    assert seen["demo"].steps == 5 and "5 steps" in text  # the spec's default
    got: dict = {}

    def record(demo: DemoContext) -> DemoOutput:
        got["steps"] = demo.steps
        raise _Stop

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(DEMOS, "standin", DemoSpec("stand-in", record, "circle", 5, "steps"))
        with pytest.raises(_Stop):
            run_demo("standin", steps=7, n_samples=10, out=str(tmp_path), stream=io.StringIO())
    assert got["steps"] == 7


def _context(train: torch.Tensor, n_samples: int, seed: int) -> DemoContext:
    return DemoContext(
        train,
        train[:10],
        1,
        n_samples,
        torch.device("cpu"),
        torch.Generator().manual_seed(seed),
        lambda total, desc: Progress(total, desc, enabled=False),
        lambda msg: None,
    )


def test_starting_noise_has_the_documented_spread():
    n = 20000
    gen = torch.Generator().manual_seed(5)
    train = torch.randn(n, 2, generator=gen) * torch.tensor([1.0, 3.0]) + 2.0
    demo = _context(train, n, 6)
    x, label = demo.start()
    assert label == "N(0, I) noise"
    scale = 2.0 * float(train.std())
    y, label = demo.start(spread=2.0)
    assert label == f"N(0, {scale:.2f}^2 I) noise"
    # per-coordinate standard deviations: standard error sigma / sqrt(2 n)
    for pts, sd in ((x, 1.0), (y, scale)):
        assert torch.all((pts.std(0) / sd - 1).abs() < 4 / math.sqrt(2 * n))
        assert torch.all(pts.mean(0).abs() < 4 * sd / math.sqrt(n))


def test_batches_draw_uniformly_from_the_whole_training_set():
    n = 20000
    train = torch.arange(2 * n, dtype=torch.float32).reshape(n, 2)
    idx = _context(train, 10, 7).batch(n)[:, 0] / 2
    upper = (idx >= n / 2).float().mean().item()
    assert abs(upper - 0.5) < 4 * math.sqrt(0.25 / n)
    assert idx.max().item() > n - 50 and idx.min().item() < 50


@pytest.mark.parametrize("name", ["eqm", "cd", "hmc"])
def test_each_demo_note_names_the_sampler_settings_it_ran(name):
    """The printed notes are made from the run's own values: the steps given to the chains
    and the sampler's step size (one training step, 16 chains)."""
    train = torch.randn(512, 2, generator=torch.Generator().manual_seed(0))
    ran: dict = {}
    real = _demos._chains_from_noise

    def spy(demo, sampler, n_steps, spread=None):
        ran.update(sampler=sampler, n_steps=n_steps)
        return real(demo, sampler, n_steps, spread)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_demos, "_chains_from_noise", spy)
        out = DEMOS[name].run(_context(train, 16, seed=3))
    text = " ".join(out.notes)
    assert f"{ran['n_steps']} steps" in text
    assert f"step_size={ran['sampler'].step_size}" in text


def test_a_demo_whose_samples_are_worse_than_its_noise_says_so(tmp_path, monkeypatch):
    # `torchebm demo eqm --dataset two_moons` printed energy distance 1.77 against 0.21 for
    # the noise it started from, without a word
    def far(demo: DemoContext) -> DemoOutput:
        init, label = demo.start(spread=0.5)
        samples = demo.batch(demo.n_samples) + 10.0
        return DemoOutput(samples, init, label, None, "far", history={"loss": [1.0]})

    monkeypatch.setitem(DEMOS, "far", DemoSpec("far", far, "two_moons", 5, "steps"))
    out = io.StringIO()
    res = run_demo("far", n_samples=200, out=str(tmp_path / "far.png"), quiet=True, stream=out)
    assert res["energy_distance"] > res["energy_distance_init"]
    assert "warning: the model samples are further from the data than the noise" in out.getvalue()
    assert "did not learn two_moons" in out.getvalue()
