r"""`GeneralisedLeapfrogIntegrator.integrate` warns once per call when its fixed-point
solves did not converge, as `BackwardEulerMaruyamaIntegrator.integrate` does; before, it
returned the truncated iterates with only `converged` False.

With ``force = -x`` and ``velocity = c x + p`` the position solve is the Picard map
$x' \leftarrow x + \tfrac h2 (v_0 + c x' + p_{1/2})$, of contraction $h c / 2$: with
$h = 1$ a chain of $c = 0.1$ converges in 8 iterations ($0.05^8$), one of $c = 6$ (factor
3) does not.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from torchebm.integrators import GeneralisedLeapfrogIntegrator
from torchebm.integrators._checked import checked_inputs

F64 = torch.float64


def _call(integ, c, n_steps=4, method="integrate"):
    st = {"x": torch.ones(3, 1, dtype=F64), "p": torch.zeros(3, 1, dtype=F64)}
    c = torch.tensor(c, dtype=F64)[:, None]
    fields = {"force": lambda x, p, t: -x, "velocity": lambda x, p, t: c * x + p}
    if method == "step":
        return integ.step(st, 1.0, **fields)
    return integ.integrate(st, 1.0, n_steps, **fields)


def test_integrate_warns_once_per_call_naming_the_chains_and_the_settings():
    integ = GeneralisedLeapfrogIntegrator()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _call(integ, [0.1, 6.0, 6.0])  # every one of the 4 steps fails in 2 chains
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert out.converged.tolist() == [True, False, False]
    assert len(messages) == 1, messages
    msg = messages[0]
    assert msg.startswith("GeneralisedLeapfrogIntegrator.integrate:")
    assert "did not converge in 2 of 3 chains" in msg
    assert "solver_max_iter (now 8)" in msg and "solver_tol (now 1e-06)" in msg
    assert "GeneralisedLeapfrogIntegrator(solver_max_iter=32" in msg
    assert caught[0].filename == __file__  # attributed to the caller's line


def test_converged_solves_step_calls_and_checked_inputs_are_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bool(_call(GeneralisedLeapfrogIntegrator(), [0.1, 0.1, 0.2]).converged.all())
        # step(): a sampler's per-step path, reported by its caller (no host read here)
        assert not bool(
            _call(GeneralisedLeapfrogIntegrator(), [6.0] * 3, method="step").converged.any()
        )
        with checked_inputs():  # a sampler's loop: RMHMC rejects and reports these itself
            assert not bool(_call(GeneralisedLeapfrogIntegrator(), [6.0] * 3).converged.any())


def test_more_iterations_as_the_warning_says_remove_it():
    integ = GeneralisedLeapfrogIntegrator(solver_max_iter=32, solver_check_every=1)
    with pytest.warns(RuntimeWarning, match="did not converge in 1 of 3 chains"):
        _call(GeneralisedLeapfrogIntegrator(), [0.1, 0.1, 1.0])  # factor 0.5: 0.5^8 > 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bool(_call(integ, [0.1, 0.1, 1.0]).converged.all())  # 0.5^32 < 1e-6
