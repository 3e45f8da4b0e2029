r"""Compatibility module for torchebm 0.8.9's ``torchebm.cuda.fused_langevin``.

New code imports from `torchebm.cuda`: ``fused_langevin_step`` is the same function, and
``doublewell_langevin_chain`` is [`torchebm.cuda.langevin_chain`][torchebm.cuda.langevin_chain] with a
[`DoubleWellModel`][torchebm.core.DoubleWellModel] (kept with one ``DeprecationWarning``).
``python -m torchebm.cuda.fused_langevin`` runs the self-check of ``python -m torchebm.cuda``.
"""

from __future__ import annotations

import sys

import torch

from torchebm.core import DoubleWellModel, warn_once
from torchebm.core.errors import ConfigurationError
from torchebm.cuda._chain import langevin_chain
from torchebm.cuda._langevin import fused_langevin_step

__all__ = ["fused_langevin_step", "doublewell_langevin_chain"]


def doublewell_langevin_chain(
    x: torch.Tensor,
    n_steps: int,
    step_size: float,
    noise_scale: float = 1.0,
    barrier_height: float = 2.0,
    b: float = 1.0,
    seed: int | None = None,
) -> torch.Tensor:
    r"""Deprecated: ``langevin_chain(x, DoubleWellModel(barrier_height, b), ..., out=x)``.

    Runs ``n_steps`` Langevin steps of $E(x) = h\sum_i (x_i^2 - b^2)^2$ in place on ``x``
    (which must be contiguous) and returns it, as 0.8.9 did; a chain that diverges raises
    `NonFiniteError` (0.8.9 returned the NaN values without a word; ``x`` holds them).

    Args:
        x: Chains (a contiguous tensor), updated in place.
        n_steps: Number of Langevin steps.
        step_size: Step size $\eta$.
        noise_scale: Noise multiplier.
        barrier_height: $h$.
        b: Well position $b$.
        seed: Seed of the kernel's random stream (``None``: drawn from the global RNG).

    Example:
        >>> x = torch.zeros(4, 2)
        >>> doublewell_langevin_chain(x, 10, 0.01, seed=0) is x  # doctest: +SKIP
        True
    """
    warn_once(
        "torchebm.cuda.fused_langevin.doublewell_langevin_chain",
        "doublewell_langevin_chain is deprecated; use torchebm.cuda.langevin_chain(x, "
        "DoubleWellModel(barrier_height, b), n_steps, step_size, noise_scale, seed=seed, out=x)",
    )
    if isinstance(x, torch.Tensor) and not x.is_contiguous():  # it is langevin_chain's out
        raise ConfigurationError(
            "x must be contiguous (doublewell_langevin_chain updates it in place), got a "
            f"non-contiguous tensor of shape {tuple(x.shape)}; pass x.contiguous()"
        )
    model = DoubleWellModel(barrier_height=barrier_height, b=b)
    return langevin_chain(x, model, n_steps, step_size, noise_scale, seed=seed, out=x)


if __name__ == "__main__":  # pragma: no cover
    from torchebm.cuda._selfcheck import main

    sys.exit(main())
