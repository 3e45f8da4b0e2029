r"""Recognise the elementwise analytic energies of core and evaluate their gradients.

The whole-chain and whole-trajectory kernels keep the state in registers for every step, so
they need an energy whose gradient at coordinate ``i`` depends on ``x_i`` alone:

* [`HarmonicModel`][torchebm.core.HarmonicModel]: $\nabla E = k x$;
* [`DoubleWellModel`][torchebm.core.DoubleWellModel]: $\nabla E = 4h\,x\,(x^2 - b^2)$;
* [`GaussianModel`][torchebm.core.GaussianModel] with a diagonal covariance:
  $\nabla E = (x - \mu) \odot \Sigma^{-1}_{ii}$.

The eager fallbacks evaluate the same expressions, with the same operation order as the
models' own ``gradient``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from torchebm.core import DoubleWellModel, GaussianModel, HarmonicModel
from torchebm.core.errors import ConfigurationError, ShapeError

__all__ = [
    "AnalyticSpec",
    "supports_energy",
    "analytic_spec",
    "maybe_analytic_spec",
    "eager_grad",
    "SUPPORTED_TEXT",
]

KIND_HARMONIC, KIND_DOUBLE_WELL, KIND_DIAG_GAUSSIAN = 0, 1, 2

SUPPORTED_TEXT = (
    "DoubleWellModel, HarmonicModel or GaussianModel with a diagonal covariance "
    "(from torchebm.core, not subclassed with a different energy)"
)


class _Unsupported(ConfigurationError):
    """``energy`` has no elementwise kernel (a ``ValueError`` naming the supported ones)."""


@dataclass(frozen=True)
class AnalyticSpec:
    """Parameters of an elementwise energy, ready for a kernel (``mu``/``prec`` on x's device)."""

    kind: int
    a: float = 0.0
    b2: float = 0.0
    mu: torch.Tensor | None = None
    prec: torch.Tensor | None = None


_OWN = ("forward", "gradient", "closed_form_energy", "closed_form_gradient")


def _plain(energy: Any, cls: type) -> bool:
    """``energy`` is a ``cls`` whose energy and gradient are the library's own: neither its
    class nor the instance itself (``model.gradient = ...``, which the samplers' eager path
    honours) redefines them."""
    if not isinstance(energy, cls):
        return False
    t, own = type(energy), vars(energy)
    return all(getattr(t, name) is getattr(cls, name) and name not in own for name in _OWN)


def _diagonal_precision(energy: GaussianModel) -> torch.Tensor | None:
    cov_inv = energy.cov_inv
    diag = torch.diagonal(cov_inv)
    if bool(torch.count_nonzero(cov_inv - torch.diag_embed(diag)) == 0):
        return diag
    return None


def supports_energy(energy: Any) -> bool:
    r"""Whether ``energy`` has a whole-chain kernel (see [`langevin_chain`][torchebm.cuda.langevin_chain]).

    ``True`` for [`DoubleWellModel`][torchebm.core.DoubleWellModel], [`HarmonicModel`][torchebm.core.HarmonicModel]
    and [`GaussianModel`][torchebm.core.GaussianModel] with a diagonal covariance (checked on the
    model's precision matrix; this synchronises once with the model's device).

    Args:
        energy: A model (any object; an instance of the classes above qualifies when its
            energy and gradient are the library's own, not redefined).

    Example:
        >>> from torchebm.core import GaussianModel, HarmonicModel
        >>> supports_energy(HarmonicModel())
        True
        >>> supports_energy(GaussianModel(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.5, 1.0]])))
        False
    """
    if _plain(energy, DoubleWellModel) or _plain(energy, HarmonicModel):
        return True
    if _plain(energy, GaussianModel):
        return _diagonal_precision(energy) is not None
    return False


def maybe_analytic_spec(
    energy: Any, x: torch.Tensor, work_dtype: torch.dtype
) -> AnalyticSpec | None:
    """Like `analytic_spec`, but ``None`` instead of an error for unsupported energies."""
    try:
        return analytic_spec(energy, x, work_dtype)
    except _Unsupported:
        return None


def analytic_spec(energy: Any, x: torch.Tensor, work_dtype: torch.dtype) -> AnalyticSpec:
    """The `AnalyticSpec` of ``energy`` for states like ``x`` computed in dtype ``work_dtype``.

    Raises:
        ConfigurationError: ``energy`` is not one of the supported energies (including a
            Gaussian with a non-diagonal covariance).
        ShapeError: a Gaussian energy and ``x`` is not ``(B, d)`` with the model's ``d``.
    """
    if _plain(energy, HarmonicModel):
        return AnalyticSpec(KIND_HARMONIC, a=energy.k)
    if _plain(energy, DoubleWellModel):
        # same constants as DoubleWellModel.closed_form_gradient: (4.0 * h) * x * (x**2 - b**2)
        return AnalyticSpec(KIND_DOUBLE_WELL, a=4.0 * energy.barrier_height, b2=energy.b**2)
    if _plain(energy, GaussianModel):
        prec = _diagonal_precision(energy)
        if prec is None:
            raise _Unsupported(
                "energy must be " + SUPPORTED_TEXT + "; got a GaussianModel with a non-diagonal "
                "covariance (use fused_langevin_step with energy.gradient(x) for it)"
            )
        d = energy.mean.shape[0]
        if x.ndim != 2 or x.shape[1] != d:
            raise ShapeError(
                f"x must have shape (B, {d}) for this GaussianModel, got {tuple(x.shape)}"
            )
        return AnalyticSpec(
            KIND_DIAG_GAUSSIAN,
            mu=energy.mean.detach().to(device=x.device, dtype=work_dtype).contiguous(),
            prec=prec.detach().to(device=x.device, dtype=work_dtype).contiguous(),
        )
    raise _Unsupported(
        f"energy must be {SUPPORTED_TEXT}, got {type(energy).__name__}; for other energies "
        "use fused_langevin_step with the model's gradient"
    )


def eager_grad(spec: AnalyticSpec, x: torch.Tensor) -> torch.Tensor:
    """Closed-form gradient of ``spec`` at ``x`` (a new tensor in ``x``'s dtype)."""
    if spec.kind == KIND_HARMONIC:
        return torch.mul(x, spec.a)
    if spec.kind == KIND_DOUBLE_WELL:
        g = torch.mul(x, spec.a)
        return g.mul_(torch.mul(x, x).sub_(spec.b2))
    if spec.mu is None or spec.prec is None:  # pragma: no cover - built by analytic_spec
        raise ValueError("a diagonal Gaussian spec needs mu and prec")
    return torch.sub(x, spec.mu).mul_(spec.prec)
