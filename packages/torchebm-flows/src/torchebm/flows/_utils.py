r"""Helper functions of the flow-based energy objectives (EqM and Energy Matching)."""

from __future__ import annotations

import math
import sys
from typing import Any

import torch
from torch import nn

from torchebm.core import renamed_kwargs
from torchebm.core.errors import ConfigurationError

__all__ = [
    "mean_flat",
    "trimmed_mean",
    "compute_flow_weight",
    "compute_eqm_ct",
    "dispersive_loss",
    "split_model_output",
    "energy_gradient",
    "source_batch",
    "weighted_mean",
]


@renamed_kwargs(tensor="t")
def mean_flat(t: torch.Tensor) -> torch.Tensor:
    """Mean over every non-batch dimension: ``(B, ...) -> (B,)``.

    Example:
        >>> mean_flat(torch.ones(3, 2, 4)).tolist()
        [1.0, 1.0, 1.0]
    """
    if t.ndim <= 1:
        return t
    # a reduction over the trailing dims directly: no reshape (and no view node in autograd)
    return t.mean(dim=1) if t.ndim == 2 else t.mean(dim=tuple(range(1, t.ndim)))


def trimmed_mean(values: torch.Tensor, trim_fraction: float) -> torch.Tensor:
    r"""Mean of ``values`` after dropping the ``int(trim_fraction * n)`` **largest** entries.

    Used by Energy Matching to ignore the highest-energy (unconverged) negatives.

    Args:
        values: 1-D tensor.
        trim_fraction: Fraction in ``[0, 1)``.

    Raises:
        ValueError: ``trim_fraction`` outside ``[0, 1)`` or ``values`` not 1-D.

    Example:
        >>> trimmed_mean(torch.tensor([1.0, 2.0, 3.0, 100.0]), 0.25).item()
        2.0
    """
    if (
        isinstance(trim_fraction, bool)
        or not isinstance(trim_fraction, (int, float))
        or not (0.0 <= float(trim_fraction) < 1.0)
    ):
        raise ConfigurationError(f"trim_fraction must be in [0, 1), got {trim_fraction!r}")
    if values.ndim != 1:
        raise ConfigurationError(f"values must be 1-D, got shape {tuple(values.shape)}")
    n = values.shape[0]
    k = int(trim_fraction * n)
    if k == 0:
        return values.mean()
    kept = torch.topk(values, n - k, largest=False, sorted=False).values
    return kept.mean()


def compute_flow_weight(t: torch.Tensor, cutoff: float = 0.8) -> torch.Tensor:
    r"""Energy-Matching flow gate $w(t) = \mathrm{clip}\big((1-t)/(1-\text{cutoff}), 0, 1\big)$.

    ``cutoff >= 1`` disables gating (ones).

    Example:
        >>> [round(v, 4) for v in compute_flow_weight(torch.tensor([0.0, 0.9, 1.0]), 0.8).tolist()]
        [1.0, 0.5, 0.0]
    """
    if cutoff >= 1.0:
        return torch.ones_like(t)
    return ((1 - t) / (1 - cutoff)).clamp(0.0, 1.0)


def compute_eqm_ct(
    t: torch.Tensor, threshold: float = 0.8, multiplier: float = 4.0
) -> torch.Tensor:
    r"""EqM gradient-magnitude schedule $c(t) = \lambda\,\min\big(1, (1-t)/(1-a)\big)$.

    Constant $\lambda$ (``multiplier``) up to ``threshold`` $a$, then decaying
    linearly to 0 at the data (t = 1). ``threshold >= 1`` gives the constant $\lambda$.

    Example:
        >>> [round(v, 4) for v in compute_eqm_ct(torch.tensor([0.0, 0.9, 1.0])).tolist()]
        [4.0, 2.0, 0.0]

    References:
        Wang & Du, "Equilibrium Matching: Generative Modeling with Implicit Energy-Based
        Models", 2025.
    """
    if threshold >= 1.0:
        return torch.full_like(t, float(multiplier))
    return torch.rsub(t, 1.0).div_(1.0 - threshold).clamp_(max=1.0).mul_(multiplier)


def dispersive_loss(z: torch.Tensor) -> torch.Tensor:
    r"""Dispersive (InfoNCE-style repulsion) regulariser on intermediate representations.

    With ``z`` flattened to ``(B, D')`` and $d_{ij} = \|z_i - z_j\|^2 / D'$ over all
    $B^2$ ordered pairs (diagonal included):
    $\log \frac{1}{B^2}\sum_{ij} e^{-d_{ij}}$ (computed with ``logsumexp``). Lower when
    the representations spread out.

    Example:
        >>> float(dispersive_loss(torch.zeros(4, 3)))
        0.0

    References:
        Wang & He, "Diffuse and Disperse: Image Generation with Representation
        Regularization", 2025.
    """
    flat = z.reshape(z.shape[0], -1)
    b, d = flat.shape
    sq = (
        (flat.unsqueeze(1) - flat.unsqueeze(0)).square().sum(-1)
        if b <= 64
        else torch.cdist(flat, flat).square()
    )
    dist = sq / d
    return torch.logsumexp(-dist.reshape(-1), dim=0) - math.log(b * b)


def split_model_output(out: Any) -> tuple[torch.Tensor, Any]:
    """``model(...)`` may return ``field`` or ``(field, activations)``; return both parts."""
    if isinstance(out, (tuple, list)):
        if len(out) == 0:
            raise ConfigurationError("model returned an empty tuple")
        return out[0], (out[1] if len(out) > 1 else None)
    return out, None


def energy_gradient(
    model: nn.Module | Any,
    x: torch.Tensor,
    model_kwargs: dict,
    *,
    create_graph: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Return ``(V(x), grad_x V(x))`` for a scalar potential ``model(x, **kw) -> (B,)``.

    ``x`` must require grad. With ``create_graph=True`` the gradient is differentiable
    w.r.t. the model parameters (training through $\nabla_x V$).
    """
    energy = model(x, **model_kwargs) if model_kwargs else model(x)
    if energy.ndim != 1 or energy.shape[0] != x.shape[0]:
        raise ConfigurationError(
            f"the potential must return energies of shape (B,) = ({x.shape[0]},), got "
            f"{tuple(energy.shape)}"
        )
    (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=create_graph)
    return energy, grad


def source_batch(
    x1: torch.Tensor, x0: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """The source (noise) batch of a flow objective: the caller's ``x0``, checked to have
    the shape of the data ``x1`` and moved to its device and dtype, or standard normal
    noise drawn from ``generator`` when ``x0`` is ``None``.

    Raises:
        ValueError: ``x0`` is not a tensor shaped like ``x1``.

    Example:
        >>> source_batch(torch.zeros(4, 2), None, torch.Generator().manual_seed(0)).shape
        torch.Size([4, 2])
    """
    if x0 is None:
        return torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    if not isinstance(x0, torch.Tensor) or x0.shape != x1.shape:
        raise ConfigurationError(
            f"x0 must have the shape of x {tuple(x1.shape)}, got "
            f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}"
        )
    return x0.to(device=x1.device, dtype=x1.dtype)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    r"""Batch mean of per-sample ``values`` ``(B,)``, weighted by a coupling's ``weights``:
    $\sum_i w_i v_i / \max(\sum_i w_i, 10^{-12})$, or the plain mean when ``weights`` is
    ``None``.

    Example:
        >>> weighted_mean(torch.tensor([1.0, 3.0]), torch.tensor([3.0, 1.0])).item()
        1.5
    """
    if weights is None:
        return values.mean()
    weights = weights.to(values.dtype)
    return (weights * values).sum() / weights.sum().clamp(min=1e-12)


def _has_dtensor_params(module: Any) -> bool:
    """True when ``module`` holds FSDP2/DTensor parameters.

    Importing ``torch.distributed.tensor`` costs seconds; a DTensor parameter can only exist
    once it has been imported, so only look when it already is.
    """
    if not isinstance(module, nn.Module):
        return False
    dt_mod = sys.modules.get("torch.distributed.tensor")
    dtensor = getattr(dt_mod, "DTensor", None) if dt_mod is not None else None
    if dtensor is None:
        return False
    return any(isinstance(p, dtensor) for p in module.parameters())
