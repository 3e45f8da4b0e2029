r"""The synthetic 2-D datasets: ``torch.utils.data.Dataset`` views of the ``make_*`` generators.

Every dataset also takes ``device`` (of the data; default CPU), ``dtype`` (floating; default
``float32``), ``seed`` (of a private generator: the global RNG is untouched) and the
keyword-only ``generator`` (a ``torch.Generator`` to draw from instead of ``seed``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch

from torchebm.core._module import forward_kwargs
from torchebm.core.errors import check_int
from torchebm.datasets._base import HOOK_GENERATOR, BaseSyntheticDataset
from torchebm.datasets._functional import (
    eight_centres,
    make_checkerboard,
    make_circle,
    make_eight_gaussians,
    make_gaussian_mixture,
    make_grid,
    make_pinwheel,
    make_swiss_roll,
    make_two_moons,
    make_two_spirals,
)

__all__ = [
    "GaussianMixtureDataset",
    "EightGaussiansDataset",
    "TwoMoonsDataset",
    "SwissRollDataset",
    "CircleDataset",
    "CheckerboardDataset",
    "PinwheelDataset",
    "GridDataset",
    "TwoSpiralsDataset",
]

_F32 = torch.float32


class _MakerDataset(BaseSyntheticDataset):
    """A dataset whose points are ``_maker(self.<_size>, **{p: self.p for p in _params})``.

    A subclass constructor declares its public signature and passes its ``locals()``: the
    maker's parameters ``_params`` are stored as attributes, and the arguments of
    `BaseSyntheticDataset` (``n_samples``, ``device``, ``dtype``, ``seed``, ``generator``)
    are passed on to it, with ``overrides`` replacing some (``n_samples`` of a grid).
    """

    _maker: ClassVar[Callable[..., torch.Tensor]]
    _params: ClassVar[tuple[str, ...]] = ()
    _size: ClassVar[str] = "n_samples"  # the attribute passed as the maker's first argument

    def __init__(self, arguments: Mapping[str, Any], **overrides: Any):
        for p in self._params:
            setattr(self, p, arguments[p])
        super().__init__(**forward_kwargs(arguments, BaseSyntheticDataset.__init__, **overrides))

    def generate_data(self, generator: torch.Generator | None) -> torch.Tensor:
        kwargs = {p: getattr(self, p) for p in self._params}
        size = getattr(self, self._size)
        return type(self)._maker(size, **kwargs, generator=generator, dtype=torch.float64)

    def _generate_data(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """torchebm 0.8.9's hook, for a subclass's ``super()._generate_data()``: this dataset's
        points (with this version's ``make_*`` defaults) from ``generator``, else from the
        generator of the overriding hook that is running, else the global RNG (a hook
        without a generator, 0.8.9's, runs seeded from ``seed`` on a forked RNG state: see
        `generate_data`)."""
        return self.generate_data(generator if generator is not None else HOOK_GENERATOR.get())

    def extra_repr(self) -> dict[str, Any]:
        names = self._params if self._size == "n_samples" else (self._size, *self._params)
        return {p: getattr(self, p) for p in names}


class GaussianMixtureDataset(_MakerDataset):
    r"""Mixture of ``n_components`` isotropic Gaussians with centres on a circle.

    See [`make_gaussian_mixture`][torchebm.datasets.make_gaussian_mixture]. Centre ``k`` at angle $2\pi k/K$ on a circle of
    ``radius``; samples split evenly, shuffled.

    Args:
        n_samples: Number of points (>= 1).
        n_components: Number of components (>= 1).
        std: Standard deviation of each component (>= 0).
        radius: Radius of the circle of centres (>= 0).
        device: Device of the data (default CPU).
        dtype: Floating dtype of the data (default ``float32``).
        seed: Seed of a private generator (reproducible data; the global RNG is untouched).
        generator: A ``torch.Generator`` to draw from instead (not together with ``seed``).

    Raises:
        ValueError: ``n_samples`` or ``n_components`` < 1, ``std`` or ``radius`` negative.

    Example:
        >>> ds = GaussianMixtureDataset(n_samples=500, n_components=4, std=0.1, seed=123)
        >>> ds.get_data().shape
        torch.Size([500, 2])
    """

    _maker = staticmethod(make_gaussian_mixture)
    _params = ("n_components", "std", "radius")

    def __init__(
        self,
        n_samples: int = 2000,
        n_components: int = 8,
        std: float = 0.05,
        radius: float = 1.0,
        device: Any = None,
        dtype: torch.dtype = _F32,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__(locals())


class EightGaussiansDataset(_MakerDataset):
    r"""Eight Gaussians on a circle of radius ``scale`` (the FFJORD toy set).

    See [`make_eight_gaussians`][torchebm.datasets.make_eight_gaussians].

    Args:
        n_samples: Number of points (>= 1).
        std: Standard deviation of each component (>= 0; validated, unlike the reference).
        scale: Distance of the centres from the origin (>= 0).
        device: Device of the data (default CPU).
        dtype: Floating dtype of the data (default ``float32``).
        seed: Seed of a private generator (reproducible data; the global RNG is untouched).
        generator: A ``torch.Generator`` to draw from instead (not together with ``seed``).

    Example:
        >>> EightGaussiansDataset(n_samples=800, seed=0)[0].shape
        torch.Size([2])
    """

    _maker = staticmethod(make_eight_gaussians)
    _params = ("std", "scale")
    scale: float  # set from the constructor's argument (`_MakerDataset`)

    @property
    def n_components(self) -> int:
        """The number of components, 8 (torchebm 0.8.9's attribute; read-only)."""
        return 8

    @property
    def centers_torch(self) -> torch.Tensor:
        """The centres `(8, 2)`, float32 on the CPU, scaled in float32 as torchebm 0.8.9's
        attribute (read-only)."""
        return eight_centres(1.0).to(torch.float32) * self.scale

    def __init__(
        self,
        n_samples: int = 2000,
        std: float = 0.02,
        scale: float = 2.0,
        device: Any = None,
        dtype: torch.dtype = _F32,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__(locals())


class TwoMoonsDataset(_MakerDataset):
    r"""Two interleaving half circles. See [`make_two_moons`][torchebm.datasets.make_two_moons].

    Shuffled by default (the reference stored the outer moon first, so any prefix or a
    non-shuffling ``DataLoader`` saw one moon only); ``shuffle=False`` keeps that order.

    Args:
        n_samples: Number of points (>= 1).
        noise: Standard deviation of the Gaussian noise (>= 0).
        shuffle: Shuffle the points.
        device: Device of the data (default CPU).
        dtype: Floating dtype of the data (default ``float32``).
        seed: Seed of a private generator (reproducible data; the global RNG is untouched).
        generator: A ``torch.Generator`` to draw from instead (not together with ``seed``).

    Example:
        >>> from torch.utils.data import DataLoader
        >>> ds = TwoMoonsDataset(n_samples=3000, noise=0.05, seed=42)
        >>> next(iter(DataLoader(ds, batch_size=128, shuffle=True))).shape
        torch.Size([128, 2])
    """

    _maker = staticmethod(make_two_moons)
    _params = ("noise", "shuffle")
    _settings_089 = {"shuffle": False}  # 0.8.9 stored the outer moon first

    def __init__(
        self,
        n_samples: int = 2000,
        noise: float = 0.05,
        device: Any = None,
        dtype: torch.dtype = _F32,
        seed: int | None = None,
        *,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
    ):
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
        super().__init__(locals())


class SwissRollDataset(_MakerDataset):
    r"""2-D Swiss roll, centred and scaled. See [`make_swiss_roll`][torchebm.datasets.make_swiss_roll].

    Args:
        n_samples: Number of points (>= 1).
        noise: Standard deviation of the Gaussian noise, in raw spiral units (>= 0).
        arclength: Number of turns of the spiral (> 0).
        device: Device of the data (default CPU).
        dtype: Floating dtype of the data (default ``float32``).
        seed: Seed of a private generator (reproducible data; the global RNG is untouched).
        generator: A ``torch.Generator`` to draw from instead (not together with ``seed``).

    Example:
        >>> len(SwissRollDataset(n_samples=100, seed=0))
        100
    """

    _maker = staticmethod(make_swiss_roll)
    _params = ("noise", "arclength")

    def __init__(
        self,
        n_samples: int = 2000,
        noise: float = 0.05,
        arclength: float = 3.0,
        device: Any = None,
        dtype: torch.dtype = _F32,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__(locals())


class CircleDataset(_MakerDataset):
    r"""Noisy circle of radius ``radius``. See [`make_circle`][torchebm.datasets.make_circle].

    Args:
        n_samples: Number of points (>= 1).
        noise: Standard deviation of the Gaussian noise (>= 0).
        radius: Radius (>= 0).
        device: Device of the data (default CPU).
        dtype: Floating dtype of the data (default ``float32``).
        seed: Seed of a private generator (reproducible data; the global RNG is untouched).
        generator: A ``torch.Generator`` to draw from instead (not together with ``seed``).

    Example:
        >>> CircleDataset(n_samples=100, seed=0).get_data().shape
        torch.Size([100, 2])
    """

    _maker = staticmethod(make_circle)
    _params = ("noise", "radius")

    def __init__(
        self,
        n_samples: int = 2000,
        noise: float = 0.05,
        radius: float = 1.0,
        device: Any = None,
        dtype: torch.dtype = _F32,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__(locals())


class CheckerboardDataset(_MakerDataset):
    r"""Uniform points on the black cells of a checkerboard on $[-L, L]^2$.

    See [`make_checkerboard`][torchebm.datasets.make_checkerboard].

    Args:
        n_samples: Number of points (>= 1).
        range_limit: Half side ``L`` (> 0, < 2**52).
        noise: Standard deviation of the Gaussian noise (>= 0).
        device: Device of the data (default CPU).
        dtype: Floating dtype of the data (default ``float32``).
        seed: Seed of a private generator (reproducible data; the global RNG is untouched).
        generator: A ``torch.Generator`` to draw from instead (not together with ``seed``).

    Example:
        >>> CheckerboardDataset(n_samples=100, seed=0).get_data().shape
        torch.Size([100, 2])
    """

    _maker = staticmethod(make_checkerboard)
    _params = ("range_limit", "noise")

    def __init__(
        self,
        n_samples: int = 2000,
        range_limit: float = 4.0,
        noise: float = 0.01,
        device: Any = None,
        dtype: torch.dtype = _F32,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__(locals())


class PinwheelDataset(_MakerDataset):
    r"""Pinwheel with ``n_classes`` curved arms. See [`make_pinwheel`][torchebm.datasets.make_pinwheel].

    Args:
        n_samples: Number of points (>= 1).
        n_classes: Number of arms (>= 1).
        noise: Standard deviation of the isotropic Gaussian noise (>= 0).
        radial_scale: Arm length (> 0).
        angular_scale: Angular spread of an arm (>= 0).
        spiral_scale: Twist of the arms (radians).
        device: Device of the data (default CPU).
        dtype: Floating dtype of the data (default ``float32``).
        seed: Seed of a private generator (reproducible data; the global RNG is untouched).
        generator: A ``torch.Generator`` to draw from instead (not together with ``seed``).

    Example:
        >>> PinwheelDataset(n_samples=100, n_classes=3, seed=0).get_data().shape
        torch.Size([100, 2])
    """

    _maker = staticmethod(make_pinwheel)
    _params = ("n_classes", "noise", "radial_scale", "angular_scale", "spiral_scale")

    def __init__(
        self,
        n_samples: int = 2000,
        n_classes: int = 5,
        noise: float = 0.05,
        radial_scale: float = 2.0,
        angular_scale: float = 0.1,
        spiral_scale: float = 5.0,
        device: Any = None,
        dtype: torch.dtype = _F32,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__(locals())


class GridDataset(_MakerDataset):
    r"""Regular ``n x n`` grid on $[-L, L]^2$ with optional jitter. See [`make_grid`][torchebm.datasets.make_grid].

    There is no ``n_samples`` argument: the dataset has ``n_samples_per_dim ** 2`` points.

    Args:
        n_samples_per_dim: Points per axis (>= 1).
        range_limit: Half side ``L`` (>= 0).
        noise: Standard deviation of the jitter (>= 0).
        device: Device of the data (default CPU).
        dtype: Floating dtype of the data (default ``float32``).
        seed: Seed of a private generator (reproducible data; the global RNG is untouched).
        generator: A ``torch.Generator`` to draw from instead (not together with ``seed``).

    Example:
        >>> len(GridDataset(n_samples_per_dim=5, seed=0))
        25
    """

    _maker = staticmethod(make_grid)
    _params = ("range_limit", "noise")
    _size = "n_samples_per_dim"

    def __init__(
        self,
        n_samples_per_dim: int = 10,
        range_limit: float = 1.0,
        noise: float = 0.01,
        device: Any = None,
        dtype: torch.dtype = _F32,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        self.n_samples_per_dim = check_int("n_samples_per_dim", n_samples_per_dim, minimum=1)
        super().__init__(locals(), n_samples=self.n_samples_per_dim**2)


class TwoSpiralsDataset(_MakerDataset):
    r"""Two interleaved spirals, point-symmetric about the origin. See [`make_two_spirals`][torchebm.datasets.make_two_spirals].

    Args:
        n_samples: Number of points (>= 1).
        noise: Standard deviation of the Gaussian noise (>= 0).
        n_turns: Turns of each arm (> 0).
        radius: Outer radius (> 0).
        device: Device of the data (default CPU).
        dtype: Floating dtype of the data (default ``float32``).
        seed: Seed of a private generator (reproducible data; the global RNG is untouched).
        generator: A ``torch.Generator`` to draw from instead (not together with ``seed``).

    Example:
        >>> TwoSpiralsDataset(n_samples=100, seed=0).get_data().shape
        torch.Size([100, 2])
    """

    _maker = staticmethod(make_two_spirals)
    _params = ("noise", "n_turns", "radius")

    def __init__(
        self,
        n_samples: int = 2000,
        noise: float = 0.1,
        n_turns: float = 1.5,
        radius: float = 3.0,
        device: Any = None,
        dtype: torch.dtype = _F32,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__(locals())
