"""Times given as a Python list are one time per sample, like a ``(B,)`` tensor: the list
became a ``(B,)`` tensor broadcast against the *last* dimension, so with B = D the path was
transposed silently (sample i at the times of feature j)."""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.interpolants import CosineInterpolant, LinearInterpolant

T = [0.1, 0.7]
X0 = [[0.0, 1.0], [2.0, -1.0]]
X1 = [[1.0, 3.0], [-2.0, 0.5]]


def _reference(alpha, sigma):
    """x_t[i][j] = alpha(t_i) x1[i][j] + sigma(t_i) x0[i][j], a float64 loop."""
    return torch.tensor(
        [[alpha(T[i]) * X1[i][j] + sigma(T[i]) * X0[i][j] for j in range(2)] for i in range(2)],
        dtype=torch.float64,
    )


@pytest.mark.parametrize(
    "interpolant, alpha, sigma",
    [
        (LinearInterpolant(), lambda t: t, lambda t: 1.0 - t),
        (
            CosineInterpolant(),
            lambda t: math.sin(0.5 * math.pi * t),
            lambda t: math.cos(0.5 * math.pi * t),
        ),
    ],
    ids=["linear", "cosine"],
)
def test_a_list_of_times_is_one_time_per_sample(interpolant, alpha, sigma):
    x0 = torch.tensor(X0, dtype=torch.float64)
    x1 = torch.tensor(X1, dtype=torch.float64)
    xt, _ = interpolant.interpolate(x0, x1, T)
    torch.testing.assert_close(xt, _reference(alpha, sigma), rtol=1e-12, atol=1e-12)


def test_a_list_of_the_wrong_length_is_a_shape_error():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"t must have shape \(B,\) with B=2.*\(3,\)"):
        LinearInterpolant().interpolate(x, x, [0.1, 0.2, 0.3])
