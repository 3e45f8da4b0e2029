r"""AIS with the unadjusted ``"langevin"`` transition against the exact law of its chain.

The unadjusted kernel does not leave $f_\beta$ invariant, so its annealed gradient
$(1-\beta)\nabla E_0 + \beta\nabla E$ sets the law of the samples and of the log-weights.
On a Gaussian base $N(b_0, s_0^2)$ and a quadratic target $E(x) = |x - m|^2 / (2 s^2)$ each
coordinate stays Gaussian: a step $x' = (1 - \eta\lambda_\beta) x + \eta c_\beta +
\sqrt{2\eta}\,\xi$ with $\lambda_\beta = (1 - \beta) / s_0^2 + \beta / s^2$,
$c_\beta = (1 - \beta) b_0 / s_0^2 + \beta m / s^2$
maps (mean, variance) linearly, and $E[\log w] = \sum_k (\beta_k - \beta_{k-1})
E[E_0(x_{k-1}) - E(x_{k-1})]$ is a sum of Gaussian moments (a hand-written recursion,
not the library).
"""

import math

import pytest
import torch

from torchebm.samplers import AnnealedImportanceSampling

F64 = torch.float64
N_CHAINS = 20_000


def _exact(n_int, eps, n_steps, m_t, s, d, b0, s0):
    """(mean, variance) per coordinate of the final samples and E[log w] (numbers)."""
    betas = [k / n_int for k in range(n_int + 1)]  # the "linear" schedule
    mean, var, e_log_w = b0, s0**2, 0.0
    for k in range(1, n_int + 1):
        e_base = 0.5 * d * ((mean - b0) ** 2 + var) / s0**2
        e_target = 0.5 * d * ((mean - m_t) ** 2 + var) / s**2
        e_log_w += (betas[k] - betas[k - 1]) * (e_base - e_target)
        if k < n_int:  # a move at every intermediate temperature
            b = betas[k]
            lam = (1.0 - b) / s0**2 + b / s**2
            c = (1.0 - b) * b0 / s0**2 + b * m_t / s**2
            for _ in range(n_steps):
                a = 1.0 - eps * lam
                mean, var = a * mean + eps * c, a * a * var + 2.0 * eps
    return mean, var, e_log_w


# (s, m_t, step, steps per temperature, temperatures, dim, base mean, base std): a narrow
# target, where the target's gradient dominates, a wide one, where the base's does (a 5%
# error in either moves a moment by >= 5 standard errors at 20,000 chains), and a shifted,
# wider base (a base gradient that ignores base_mean moves the mean by 50 standard errors)
CASES = [
    (0.5, 2.0, 0.1, 1, 4, 2, 0.0, 1.0),
    (2.0, 1.0, 0.3, 3, 10, 8, 0.0, 1.0),
    (0.7, 2.0, 0.1, 2, 6, 2, 1.5, 1.2),
]


@pytest.mark.parametrize("case", CASES, ids=["narrow_target", "wide_target", "shifted_base"])
def test_unadjusted_langevin_ais_matches_the_exact_gaussian_chain(case):
    s, m_t, eps, n_steps, n_int, d, b0, s0 = case

    def energy(x):
        return 0.5 * (x - m_t).square().sum(1) / s**2

    ais = AnnealedImportanceSampling(
        energy, n_intermediate=n_int, transition="langevin", step_size=eps,
        n_transition_steps=n_steps, schedule="linear", base_mean=b0, base_std=s0,
    )  # fmt: skip
    r = ais.estimate(N_CHAINS, d, dtype=F64, generator=torch.Generator().manual_seed(40))
    mean, var, e_log_w = _exact(n_int, eps, n_steps, m_t, s, d, b0, s0)
    x, n = r.samples.reshape(-1), N_CHAINS * d  # coordinates are independent
    se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2.0 / n)
    se_lw = float(r.log_weights.std()) / math.sqrt(N_CHAINS)
    assert abs(float(x.mean()) - mean) < 4 * se_mean, (float(x.mean()), mean)
    assert abs(float(x.var()) - var) < 4 * se_var, (float(x.var()), var)
    assert abs(float(r.log_weights.mean()) - e_log_w) < 4 * se_lw, (r.log_weights.mean(), e_log_w)
    assert r.acceptance_rate is None
