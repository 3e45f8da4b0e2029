r"""Energy models: the `BaseModel` contract and analytic energies with closed-form gradients
(Booth, Himmelblau and Styblinski-Tang are the benchmark landscapes of torchebm 0.8.x)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from torchebm.core._module import TorchEBMModule
from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    check_energies,
    check_finite,
    check_positive,
)

__all__ = [
    "BaseModel",
    "GaussianModel",
    "DoubleWellModel",
    "HarmonicModel",
    "RastriginModel",
    "AckleyModel",
    "RosenbrockModel",
    "BoothModel",
    "HimmelblauModel",
    "StyblinskiTangModel",
]


class BaseModel(TorchEBMModule, ABC):
    r"""Base class of energy models $E_\theta(x)$ (unnormalised $-\log p$).

    Subclasses implement `forward`: ``x`` ``(B, *event_shape)`` -> energies ``(B,)``;
    `gradient` returns $\nabla_x E(x)$ shaped like ``x``. ``dtype``/``device``: those of
    the buffers and parameters the model creates (default ``float32``, CPU).

    Example:
        >>> class Quadratic(BaseModel):
        ...     def forward(self, x):
        ...         return 0.5 * (x ** 2).sum(-1)
        >>> Quadratic().gradient(torch.ones(3, 2)).shape
        torch.Size([3, 2])
    """

    #: compute the autograd gradient in float32 even for half-precision inputs
    force_fp32_gradient: bool = False

    def __init__(self, dtype: torch.dtype = torch.float32, *args: Any, **kwargs: Any):
        kwargs["dtype"] = dtype
        super().__init__(*args, **kwargs)

    @abstractmethod
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """Energy of each sample: ``(B, *event_shape) -> (B,)``."""

    def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        r"""$\nabla_x E(x)$ by one autograd call, detached, with the shape and dtype of ``x``.

        The one path samplers, integrators and losses use: ``self(x)`` (hooks, compile and
        FSDP run) differentiated once, also under ``torch.no_grad()``/``torch.inference_mode()``.
        A model knowing its gradient in closed form overrides it with the same contract (the
        analytic models here, `MLPEnergy`: their closed forms run no forward hooks).

        Args:
            x: Input of shape ``(B, *event_shape)`` (a 1-D ``(d,)`` input is treated as one sample).
            model_kwargs: Conditioning forwarded as ``forward(x, **model_kwargs)``.

        Raises:
            TypeError, ShapeError: ``x`` not a floating tensor, or 0-d; ``forward`` not ``(B,)``.
            RuntimeError: the energy does not depend differentiably on ``x``."""
        x, squeeze = _as_batch(x, floating=True)  # a named error for a list, a scalar, int
        in_dtype = x.dtype
        if x.device != self.device and _has_tensors(self):
            x = x.to(self.device)
        low = self.force_fp32_gradient and in_dtype in (torch.float16, torch.bfloat16)
        work_dtype = torch.float32 if low else in_dtype
        with torch.inference_mode(False), torch.enable_grad():  # a copy of an inference x
            xg = x.to(work_dtype, copy=x.is_inference()).detach().requires_grad_(True)
            with self.autocast_context():
                energy = self(xg, **model_kwargs) if model_kwargs else self(xg)
            check_energies(f"{type(self).__name__}.forward", energy, xg.shape[0])
            grad = energy_gradient(energy, xg, f"{type(self).__name__}.forward")
        grad = grad if grad.dtype == in_dtype else grad.to(in_dtype)
        return grad.squeeze(0) if squeeze else grad

    def gradient_function(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x -> gradient(x)`` (unconditioned, batched ``x``), resolved once per ``sample()`` run
        (the model must not change during it): per-run set-up such as `MLPEnergy`'s plan."""
        return self.gradient


def energy_gradient(energy: torch.Tensor, x: torch.Tensor, owner: str) -> torch.Tensor:
    """``d energy.sum() / d x``, or a ``RuntimeError`` naming ``owner`` if x is not in the graph."""
    grad = torch.autograd.grad(energy.sum(), x, allow_unused=True)[0] if energy.grad_fn else None
    if grad is None:  # no graph, or one of parameters only: autograd's message names neither
        raise RuntimeError(
            f"{owner} does not depend differentiably on x, so its gradient cannot be taken; an "
            "energy constant where it is finite (a uniform density on its support) must keep "
            "x in its graph, e.g. torch.where(inside, 0 * x.sum(-1), inf)"
        )
    return grad


def _has_tensors(module: torch.nn.Module) -> bool:
    names = (n for n, _ in module.named_buffers() if not n.endswith("_torchebm_probe"))
    return next(module.parameters(), None) is not None or next(names, None) is not None


def _as_batch(x: torch.Tensor, floating: bool = False) -> tuple[torch.Tensor, bool]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():  # a gradient cast back to int64 is garbage
        raise TypeError(f"x must have a floating-point dtype for a gradient, got {x.dtype}")
    if x.ndim == 0:
        raise ShapeError("x must have at least 1 dimension (d,) or (B, d), got a scalar")
    return (x.unsqueeze(0), True) if x.ndim == 1 else (x, False)


class _AnalyticModel(BaseModel):
    """Analytic energy: a subclass implements `closed_form_energy` and `closed_form_gradient`
    (a pair: redefine both). A ``forward`` redefined (subclass or instance) gets autograd; a
    forward hook does not (the closed-form gradient never calls ``forward``)."""

    def __init__(self, dtype: torch.dtype = torch.float32, device: Any = None):
        super().__init__(dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xb, _ = _as_batch(x)
        return self.closed_form_energy(xb)

    def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        """Closed-form $\\nabla_x E(x)$ (no autograd), same shape and dtype as ``x``."""
        if type(self).forward is not _AnalyticModel.forward or "forward" in vars(self):
            return super().gradient(x, model_kwargs)
        if model_kwargs:
            raise TypeError(f"{type(self).__name__} takes no conditioning (model_kwargs)")
        xb, squeeze = _as_batch(x, floating=True)
        g = self.closed_form_gradient(xb.detach())  # detached, as BaseModel.gradient's
        return g.squeeze(0) if squeeze else g

    def gradient_function(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """`closed_form_gradient` on batched ``x`` (the autograd path for a new energy)."""
        own = type(self).forward is _AnalyticModel.forward and "forward" not in vars(self)
        return self.closed_form_gradient if own else self.gradient

    def closed_form_energy(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Energies `(B,)` of a batch `x` `(B, ..., d)` (`forward` batches and checks `x`)."""
        raise NotImplementedError

    def closed_form_gradient(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """$\nabla_x$ `closed_form_energy(x)`, shaped like the batch `x` (no autograd)."""
        raise NotImplementedError


def _sum_event(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).sum(dim=1)  # (0, ...) -> (0,): an empty batch has no energies


def _finite(name: str, value: Any) -> float:
    """`check_finite`, also accepting a one-element tensor."""
    one = isinstance(value, torch.Tensor) and value.numel() == 1
    return check_finite(name, float(value) if one else value)


def _show(t: torch.Tensor) -> str:
    return " ".join(str(t).split())  # the repr on one line


def _finite_tensor(name: str, value: torch.Tensor) -> torch.Tensor:
    """``value`` as CPU float64 if every entry is finite, else ``ConfigurationError``."""
    if not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
    v64 = value.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(v64).all()):
        raise ConfigurationError(f"{name} must be finite, got {_show(value)}")
    return v64


class GaussianModel(_AnalyticModel):
    r"""Multivariate Gaussian energy $E(x) = \tfrac12 (x-\mu)^\top \Sigma^{-1} (x-\mu)$.

    ``mean`` and ``cov`` may be assigned (``model.cov = new_cov``): the value is validated as
    here and the precision ``cov_inv`` recomputed. An in-place change (``model.cov.copy_``)
    or ``torch.func.functional_call`` with ``cov`` is not seen (pass ``cov_inv``, which the
    energy reads). The state dict holds ``mean`` and ``cov_inv``, as torchebm 0.8.9's:
    ``load_state_dict`` derives ``cov`` from the loaded precision, so checkpoints load.

    Args:
        mean: Mean $\mu$, shape ``(d,)``, finite.
        cov: Covariance $\Sigma$, shape ``(d, d)``, finite, symmetric positive definite.
        dtype: Dtype of the buffers (inputs are cast to it). Default ``float32``.
        device: Device of the buffers.

    Raises:
        ShapeError: ``mean`` is not 1-D, ``cov`` not square, or their sizes differ.
        ConfigurationError: ``mean`` or ``cov`` holds NaN/inf, ``cov`` is not symmetric or
            not positive definite.

    Example:
        >>> m = GaussianModel(torch.zeros(2), torch.eye(2))
        >>> m(torch.tensor([[1.0, 1.0]]))
        tensor([1.])
    """

    mean: torch.Tensor
    cov: torch.Tensor
    cov_inv: torch.Tensor

    def __init__(
        self,
        mean: torch.Tensor,
        cov: torch.Tensor,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        super().__init__(dtype=dtype, device=device)
        self._set_moments(mean, cov)
        self.register_load_state_dict_post_hook(_cov_from_loaded_precision)

    def __setstate__(self, state: dict) -> None:
        """Unpickling; a model pickled whole by torchebm 0.8.9 has no ``cov``: derived here."""
        super().__setstate__(state)
        if getattr(self, "cov", None) is None:  # ... and no hook deriving it on later loads
            self.register_load_state_dict_post_hook(_cov_from_loaded_precision)
            _cov_from_loaded_precision(self, None)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "mean" or name == "cov":  # validated, and cov_inv recomputed
            self._set_moments(*((value, self.cov) if name == "mean" else (self.mean, value)))
        else:
            super().__setattr__(name, value)

    def _set_moments(self, mean: Any, cov: Any) -> None:
        mean, cov = (v if isinstance(v, torch.Tensor) else torch.tensor(v) for v in (mean, cov))
        if mean.ndim != 1:
            raise ShapeError(f"mean must be a 1-D tensor, got shape {tuple(mean.shape)}")
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
            raise ShapeError(f"cov must be a square 2-D tensor, got shape {tuple(cov.shape)}")
        if cov.shape[0] != mean.shape[0]:
            got = f"mean has {mean.shape[0]}, cov is {tuple(cov.shape)}"
            raise ShapeError(f"mean and cov dimensions differ: {got}")
        _finite_tensor("mean", mean)
        d = (cov64 := _finite_tensor("cov", cov)).diagonal().abs().sqrt()  # asymmetry relative
        if ((cov64 - cov64.T).abs() > 1e-5 * torch.outer(d, d)).any():  # to sqrt(c_ii c_jj)
            raise ConfigurationError(f"cov must be symmetric, got {_show(cov)}")
        chol, info = torch.linalg.cholesky_ex(cov64)
        if int(info) != 0:
            bad = f"{_show(cov)} (it is singular or indefinite)"
            raise ConfigurationError(f"cov must be positive definite, got {bad}")
        inv = torch.cholesky_inverse(chol)  # column-major; x @ inv is ~1.6x faster row-major
        for name, value in (("mean", mean), ("cov", cov), ("cov_inv", inv)):  # cov: derived
            buf = value.detach().to(self._torchebm_probe, copy=True).contiguous()  # not shared
            self.register_buffer(name, buf, persistent=name != "cov")

    def _check(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, prec = self.mean, self.cov_inv  # x on the buffers' device/dtype, mean, precision
        if x.ndim != 2 or x.shape[-1] != mean.shape[0]:
            got = tuple(x.shape)
            raise ShapeError(f"GaussianModel expects x of shape (B, {mean.shape[0]}), got {got}")
        same = x.dtype == prec.dtype and x.device == prec.device
        return (x if same else x.to(prec.device, prec.dtype)), mean, prec

    def closed_form_energy(self, x: torch.Tensor) -> torch.Tensor:
        x, mean, prec = self._check(x)
        d = x - mean
        return torch.mm(d, prec).mul_(d).sum(-1).mul_(0.5)  # in place on its own temporaries

    def closed_form_gradient(
        self, x: torch.Tensor, mean: Any = None, prec: Any = None
    ) -> torch.Tensor:
        r"""$(x - \mu)\,\Sigma^{-1}$; ``mean``/``prec``: tensors to use instead of the buffers."""
        mean, prec = (self.mean, self.cov_inv) if mean is None else (mean, prec)
        g = torch.mm(self._check(x)[0] - mean, prec)
        return g if g.dtype == x.dtype else g.to(x.dtype)

    def gradient_function(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The closed form with the buffers, their dtype and device read once (one ``sample()``)."""
        if (fn := super().gradient_function()) != self.closed_form_gradient:
            return fn  # the autograd path for a redefined forward
        mean, prec, d = self.mean, self.cov_inv, self.mean.shape[0]
        dtype, device = prec.dtype, prec.device

        def gradient(x: torch.Tensor) -> torch.Tensor:  # `_check`'s tests, then (x - mu) P
            if x.ndim == 2 and x.shape[1] == d and x.dtype == dtype and x.device == device:
                return torch.mm(x - mean, prec)
            return self.closed_form_gradient(x, mean, prec)

        return gradient


def _cov_from_loaded_precision(model: GaussianModel, incompatible_keys: Any) -> None:
    """After ``load_state_dict``: ``cov`` (not saved, as in 0.8.9) from the loaded ``cov_inv``."""
    model._set_moments(model.mean, torch.linalg.inv(model.cov_inv.detach().double()))


class DoubleWellModel(_AnalyticModel):
    r"""Double-well energy $E(x) = h \sum_i (x_i^2 - b^2)^2$ (minima at $\pm b$).

    Args:
        barrier_height: $h$; the barrier between the wells (at $x_i = 0$) is $h b^4$ per coordinate.
        b: Position of the minima (finite)."""

    def __init__(
        self,
        barrier_height: float = 2.0,
        b: float = 1.0,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        super().__init__(dtype=dtype, device=device)
        self.barrier_height = check_positive("barrier_height", barrier_height)
        self.b = _finite("b", b)

    def closed_form_energy(self, x):
        return self.barrier_height * _sum_event((x**2 - self.b**2) ** 2)

    def closed_form_gradient(self, x):
        # (4 h x) (x^2 - b^2): two allocations, as torchebm.cuda's analytic fallback computes it
        g = torch.mul(x, 4.0 * self.barrier_height)
        return g.mul_(torch.mul(x, x).sub_(self.b**2))


class HarmonicModel(_AnalyticModel):
    r"""Harmonic (isotropic quadratic) energy $E(x) = \tfrac{k}{2} \sum_i x_i^2$.

    Args:
        k: Spring constant (> 0); the stationary density is $N(0, I/k)$."""

    def __init__(self, k: float = 1.0, dtype: torch.dtype = torch.float32, device: Any = None):
        super().__init__(dtype=dtype, device=device)
        self.k = check_positive("k", k)

    def closed_form_energy(self, x):
        return 0.5 * self.k * _sum_event(x**2)

    def closed_form_gradient(self, x):
        return self.k * x


class RastriginModel(_AnalyticModel):
    r"""Rastrigin energy $E(x) = a n + \sum_i (x_i^2 - a \cos 2\pi x_i)$.

    Args:
        a: Amplitude of the cosine term (> 0)."""

    def __init__(self, a: float = 10.0, dtype: torch.dtype = torch.float32, device: Any = None):
        super().__init__(dtype=dtype, device=device)
        self.a = check_positive("a", a)

    def closed_form_energy(self, x):
        n = math.prod(x.shape[1:])
        return self.a * n + _sum_event(x**2 - self.a * torch.cos(2 * math.pi * x))

    def closed_form_gradient(self, x):
        return 2 * x + 2 * math.pi * self.a * torch.sin(2 * math.pi * x)


class AckleyModel(_AnalyticModel):
    r"""Ackley energy $-a e^{-b\sqrt{\overline{x^2}}} - e^{\overline{\cos c x}} + a + e$.

    Means run over all event dimensions.

    Args:
        a: Depth of the exponential well (> 0).
        b: Radial decay rate (> 0).
        c: Angular frequency of the cosine term (> 0)."""

    def __init__(
        self,
        a: float = 20.0,
        b: float = 0.2,
        c: float = 2 * math.pi,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        super().__init__(dtype=dtype, device=device)
        self.a, self.b = check_positive("a", a), check_positive("b", b)
        self.c = check_positive("c", c)

    def closed_form_energy(self, x):
        x = x.flatten(1)
        e1 = -self.a * torch.exp(-self.b * torch.sqrt((x**2).mean(-1)))
        return e1 - torch.exp(torch.cos(self.c * x).mean(-1)) + self.a + math.e

    def closed_form_gradient(self, x):
        shape, x = x.shape, x.flatten(1)
        n, r = x.shape[1], torch.sqrt((x**2).mean(-1, keepdim=True))
        # d/dx of -a exp(-b r): a b exp(-b r) * x / (n r); the limit at r = 0 is 0.
        safe_r = torch.where(r > 0, r, torch.ones_like(r))
        g1 = self.a * self.b * torch.exp(-self.b * r) * x / (n * safe_r)
        g1 = torch.where(r > 0, g1, torch.zeros_like(x))
        e = torch.exp(torch.cos(self.c * x).mean(-1, keepdim=True))
        return (g1 + e * self.c * torch.sin(self.c * x) / n).reshape(shape)


class RosenbrockModel(_AnalyticModel):
    r"""Rosenbrock energy $\sum_{i<n} (a - x_i)^2 + b (x_{i+1} - x_i^2)^2$ over the last dim.

    Args:
        a: Position of the minimum, $(a, a^2, \dots)$ (finite).
        b: Curvature of the valley (> 0)."""

    def __init__(
        self,
        a: float = 1.0,
        b: float = 100.0,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        super().__init__(dtype=dtype, device=device)
        self.a, self.b = _finite("a", a), check_positive("b", b)

    def _check(self, x):
        if x.shape[-1] < 2:
            raise ShapeError(
                f"RosenbrockModel needs at least 2 dimensions in the last axis, got {tuple(x.shape)}"
            )

    def closed_form_energy(self, x):
        self._check(x)
        xi, xn = x[..., :-1], x[..., 1:]
        return _sum_event((self.a - xi) ** 2 + self.b * (xn - xi**2) ** 2)

    def closed_form_gradient(self, x):
        self._check(x)
        xi, xn = x[..., :-1], x[..., 1:]
        inner = xn - xi**2
        g = torch.zeros_like(x)
        g[..., :-1] = -2 * (self.a - xi) - 4 * self.b * xi * inner
        g[..., 1:] += 2 * self.b * inner
        return g


def _two_d(name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape[-1] != 2:
        raise ShapeError(f"{name} is two-dimensional: x must have last dim 2, got {tuple(x.shape)}")
    return x[..., 0], x[..., 1]


class BoothModel(_AnalyticModel):
    r"""Booth energy $E(x) = (x_1 + 2x_2 - 7)^2 + (2x_1 + x_2 - 5)^2$ on $\mathbb{R}^2$.

    Convex, single minimum $E = 0$ at $(1, 3)$. ``x``: ``(B, 2)`` or ``(2,)``.

    Example:
        >>> BoothModel()(torch.tensor([[1.0, 3.0]]))
        tensor([0.])

    References:
        Jamil & Yang, "A literature survey of benchmark functions for global
        optimisation problems", 2013."""

    def closed_form_energy(self, x):
        x1, x2 = _two_d("BoothModel", x)
        return _sum_event(((x1 + 2 * x2 - 7) ** 2 + (2 * x1 + x2 - 5) ** 2).unsqueeze(-1))

    def closed_form_gradient(self, x):
        x1, x2 = _two_d("BoothModel", x)
        a, b = x1 + 2 * x2 - 7, 2 * x1 + x2 - 5
        return torch.stack((2 * a + 4 * b, 4 * a + 2 * b), dim=-1)


class HimmelblauModel(_AnalyticModel):
    r"""Himmelblau energy $E(x) = (x_1^2 + x_2 - 11)^2 + (x_1 + x_2^2 - 7)^2$ on $\mathbb{R}^2$.

    Four minima with $E = 0$, among them $(3, 2)$. ``x``: ``(B, 2)`` or ``(2,)``.

    Example:
        >>> HimmelblauModel()(torch.tensor([[3.0, 2.0]]))
        tensor([0.])

    References:
        Himmelblau, "Applied Nonlinear Programming", 1972."""

    def closed_form_energy(self, x):
        x1, x2 = _two_d("HimmelblauModel", x)
        return _sum_event(((x1**2 + x2 - 11) ** 2 + (x1 + x2**2 - 7) ** 2).unsqueeze(-1))

    def closed_form_gradient(self, x):
        x1, x2 = _two_d("HimmelblauModel", x)
        a, b = x1**2 + x2 - 11, x1 + x2**2 - 7
        return torch.stack((4 * x1 * a + 2 * b, 2 * a + 4 * x2 * b), dim=-1)


class StyblinskiTangModel(_AnalyticModel):
    r"""Styblinski-Tang energy $E(x) = \tfrac12 \sum_i (x_i^4 - 16 x_i^2 + 5 x_i)$.

    Separable; each coordinate has its minimum at $x_i \approx -2.903534$
    ($E \approx -39.16617\,d$). ``x``: ``(B, ..., d)`` or ``(d,)``.

    Example:
        >>> StyblinskiTangModel()(torch.zeros(1, 3))
        tensor([0.])

    References:
        Styblinski & Tang, "Experiments in nonconvex optimization: stochastic
        approximation with function smoothing and simulated annealing", 1990."""

    def closed_form_energy(self, x):
        return _sum_event(0.5 * (x**4 - 16 * x**2 + 5 * x))

    def closed_form_gradient(self, x):
        return 2 * x**3 - 16 * x + 2.5


# ``gradient`` implementations that return the shape of ``x`` by construction: samplers call
# them without re-checking the shape (a subclass overriding ``gradient`` is checked again)
BaseModel.gradient._returns_input_shape = True  # type: ignore[attr-defined]
_AnalyticModel.gradient._returns_input_shape = True  # type: ignore[attr-defined]
