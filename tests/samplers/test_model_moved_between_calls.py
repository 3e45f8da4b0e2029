"""A model moved (``model.to``) between two ``sample()`` calls: the second call follows it.

The sampler caches its placement (the dtype/device of the first parameter of its tree); a
``.to()`` on the model alone used to leave that cache stale, so the next call built its
chains in the old dtype and the model's forward failed on them (or, with a model that casts
its input, silently sampled in the old precision).
"""

import warnings

import pytest
import torch
from _support.losses import MLPEnergy  # parameterised; samplers lack torchebm-models

from torchebm.core import GaussianModel, HarmonicModel
from torchebm.samplers import GradientDescentSampler


def test_second_sample_follows_a_model_moved_to_float64():
    torch.manual_seed(0)
    model = MLPEnergy(2, 8)
    sampler = GradientDescentSampler(model, step_size=0.01)
    x0 = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert sampler.sample(x=x0, n_steps=2).dtype == torch.float32  # model in float32
    model.to(torch.float64)
    out = sampler.sample(x=x0, n_steps=2)
    assert out.dtype == torch.float64
    # two gradient-descent steps, the gradient by autograd through forward
    x = x0.clone()
    for _ in range(2):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xg).sum(), xg)
        x = x - 0.01 * g
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


def test_a_sampler_runs_where_a_models_buffers_are():
    """A GaussianModel has no parameters, only buffers (mean, cov, cov_inv): a sampler built
    without ``device`` runs where they are, also after the model moves (found on a GPU:
    ``GaussianModel(...).to("cuda")`` under a sampler left the chains on the CPU). The dtype
    stays the sampler's (the closed form computes in the buffers' dtype), as in 0.8.9."""
    model = GaussianModel(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.5], [0.5, 2.0]]))
    sampler = GradientDescentSampler(model, step_size=0.1)
    assert (sampler.device, sampler.dtype) == (torch.device("cpu"), torch.float32)
    model.to(torch.float64)  # replaces the buffers: the sampler looks them up again
    assert (sampler.device, sampler.dtype) == (torch.device("cpu"), torch.float32)
    x0 = torch.zeros(3, 2, dtype=torch.float64)
    out = sampler.sample(x=x0, n_steps=2)
    # two gradient-descent steps on (x - mu)^T P (x - mu) / 2, by hand in float64
    mu = torch.tensor([1.0, -1.0], dtype=torch.float64)
    prec = torch.linalg.inv(torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=torch.float64))
    x = x0.clone()
    for _ in range(2):
        x = x - 0.1 * (x - mu) @ prec
    assert out.dtype == torch.float32  # the chains in the sampler's dtype
    torch.testing.assert_close(out, x.float(), rtol=1e-6, atol=1e-6)
    model.to("meta")  # another device, without a GPU
    assert (sampler.device, sampler.dtype) == (torch.device("meta"), torch.float32)


def test_a_device_the_model_is_not_on_warns_and_the_chains_follow_the_model():
    with pytest.warns(UserWarning, match=r"device='meta' differs from .*model's tensors \(cpu\)"):
        sampler = GradientDescentSampler(MLPEnergy(2, 8), step_size=0.1, device="meta")
    assert sampler.device == torch.device("cpu")
    with warnings.catch_warnings():  # a model without tensors: the chains go to `device`
        warnings.simplefilter("error")
        sampler = GradientDescentSampler(HarmonicModel(), step_size=0.1, device="meta")
    assert sampler.device == torch.device("meta")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_samplers_over_a_gaussian_model_moved_to_cuda_run_there():
    """``GaussianModel(...).to("cuda")`` under samplers built without ``device``: the chains
    run on the GPU with a CUDA generator (they ran on the CPU and rejected it). Moments
    against the closed forms: ULA's stationary variance sigma^2 / (1 - h / (2 sigma^2)) per
    axis of a diagonal Gaussian, and the exact target under HMC's Metropolis correction."""
    from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics

    mean, var = torch.tensor([1.0, -1.0]), torch.tensor([1.0, 2.0])
    model = GaussianModel(mean, torch.diag(var)).to("cuda")
    n, h = 20_000, 0.05  # sd of a sample variance ~ sqrt(2 / n) = 1%: 5% tolerance
    for sampler, target_var in (
        (LangevinDynamics(model, step_size=h), var / (1 - h / (2 * var))),
        (HamiltonianMonteCarlo(model, step_size=0.2, n_leapfrog_steps=10), var),
    ):
        g = torch.Generator(device="cuda").manual_seed(0)
        x = sampler.sample(dim=2, n_samples=n, n_steps=300, generator=g)
        assert x.is_cuda and sampler.device.type == "cuda"
        torch.testing.assert_close(x.mean(0).cpu(), mean, atol=5 * (var.max() / n) ** 0.5, rtol=0)
        torch.testing.assert_close(x.var(0).cpu(), target_var, rtol=0.05, atol=0)
