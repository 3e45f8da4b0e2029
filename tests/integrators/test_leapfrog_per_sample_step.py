"""Leapfrog with a per-sample step size ``(B,)`` and a tensor mass against a numpy
kick-drift-kick loop: $p \\mathrel{-}= \\tfrac h2 \\nabla U(x)$, $x \\mathrel{+}= h M^{-1} p$,
$p \\mathrel{-}= \\tfrac h2 \\nabla U(x)$, on $U(x) = \\tfrac12 \\sum_d k_d x_d^2$."""

import numpy as np
import pytest
import torch

from torchebm.integrators import LeapfrogIntegrator

K = np.array([1.0, 3.0, 0.5])


@pytest.mark.parametrize("grad_enabled", [False, True], ids=["in_place", "out_of_place"])
def test_per_sample_step_with_a_tensor_mass_is_the_kick_drift_kick_loop(grad_enabled):
    rng = np.random.default_rng(4)
    x0, p0 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    h = np.array([0.05, 0.1, 0.2, 0.3])
    mass = np.array([0.5, 2.0, 1.5])
    x, p = x0.copy(), p0.copy()
    for _ in range(5):
        p = p - 0.5 * h[:, None] * K * x
        x = x + h[:, None] * p / mass
        p = p - 0.5 * h[:, None] * K * x
    k = torch.from_numpy(K)
    with torch.set_grad_enabled(grad_enabled):
        out = LeapfrogIntegrator().integrate(
            {"x": torch.from_numpy(x0), "p": torch.from_numpy(p0)},
            torch.from_numpy(h),
            5,
            mass=torch.from_numpy(mass),
            gradient=lambda x, t: k * x,
        )
    np.testing.assert_allclose(out.x.detach().numpy(), x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.p.detach().numpy(), p, rtol=0, atol=1e-12)
