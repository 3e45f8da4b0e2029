"""An interpolant given ``x0``/``x1`` of different shapes names them, not ``t``.

`LinearInterpolant`'s fast path checked ``t`` against ``x1`` first, so a batch-size mismatch
was reported as "t must have shape (B,) with B=6 ... got (8,)" although ``t`` matched ``x0``.
"""

from __future__ import annotations

import pytest
import torch

from torchebm.core.errors import ShapeError
from torchebm.interpolants import get_interpolant

NAMES = ["linear", "cosine", "vp", "ve"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("x1_shape", [(6, 2), (8, 3)])
def test_a_mismatched_pair_is_named(name, x1_shape):
    x0, x1, t = torch.randn(8, 2), torch.randn(*x1_shape), torch.rand(8)
    with pytest.raises(ShapeError, match=rf"x0 and x1 must have the same shape.*{x1_shape}"):
        get_interpolant(name).interpolate(x0, x1, t)


def test_a_matched_pair_takes_the_linear_path():
    g = torch.Generator().manual_seed(0)
    x0, x1, t = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g), torch.rand(8)
    xt, ut = get_interpolant("linear").interpolate(x0, x1, t)
    t64 = t.double()[:, None]
    torch.testing.assert_close(xt.double(), t64 * x1.double() + (1 - t64) * x0.double())
    torch.testing.assert_close(ut.double(), x1.double() - x0.double())
