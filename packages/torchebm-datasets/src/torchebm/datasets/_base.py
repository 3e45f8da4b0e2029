r"""``BaseSyntheticDataset``: eager, seeded, device-resident synthetic datasets."""

from __future__ import annotations

import numbers
import operator
import warnings
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch.utils.data import Dataset

from torchebm.core.errors import check_generator, check_int
from torchebm.datasets._functional import _check_device, _check_dtype

__all__ = ["BaseSyntheticDataset"]


class BaseSyntheticDataset(Dataset, ABC):
    r"""Base class of the synthetic datasets: points generated once, held as one tensor.

    The data are drawn in ``__init__`` by `_generate_data` and kept on ``device`` in
    ``dtype`` (a ``DataLoader`` then yields tensors already on that device).

    Randomness: with ``seed`` the points come from a private ``torch.Generator`` seeded with
    it; with ``generator`` they come from that generator; in both cases the global RNG is
    neither read nor reseeded (the reference implementation reseeded the global torch and
    numpy RNGs). With neither, the global RNG is used, like ``torch.randn``.

    Args:
        n_samples: Number of points (>= 1).
        device: Device of the data (default CPU).
        dtype: Floating dtype of the data (default ``float32``).
        seed: Seed of a private generator (reproducible data).
        generator: A ``torch.Generator`` to draw from (mutually exclusive with ``seed``).

    Subclasses implement ``_generate_data(generator)`` returning ``(n_samples, 2)`` points (a
    tensor, or anything ``torch.as_tensor`` accepts), drawing only from ``generator``.

    Example:
        >>> class Uniform(BaseSyntheticDataset):
        ...     def _generate_data(self, generator):
        ...         return torch.rand(self.n_samples, 2, generator=generator)
        >>> len(Uniform(10, seed=0))
        10
    """

    def __init__(
        self,
        n_samples: int = 2000,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        self.n_samples = check_int("n_samples", n_samples, minimum=1)
        self.device = _check_device(device) or torch.device("cpu")
        if dtype is None:
            dtype = torch.float32
        self.dtype = _check_dtype(dtype)
        self._set_source(seed, generator)
        self.data = self._build()

    # ------------------------------------------------------------------ randomness
    def _set_source(self, seed: Any, generator: Any) -> None:
        if seed is not None and generator is not None:
            raise ValueError("give either seed or generator, not both")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self.generator = check_generator(generator)

    def _make_generator(self) -> torch.Generator | None:
        if self.seed is not None:
            return torch.Generator().manual_seed(self.seed)
        return self.generator

    def _build(self) -> torch.Tensor:
        raw = self._generate_data(self._make_generator())
        if not isinstance(raw, torch.Tensor):
            try:
                raw = torch.as_tensor(raw)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(
                    f"{type(self).__name__}._generate_data must return a tensor or array-like, "
                    f"got {type(raw).__name__}"
                ) from exc
        if raw.ndim != 2:
            raise ValueError(
                f"{type(self).__name__}._generate_data must return points of shape (N, d), "
                f"got {tuple(raw.shape)}"
            )
        if raw.shape[0] != self.n_samples:
            warnings.warn(
                f"{type(self).__name__} generated {raw.shape[0]} points, expected {self.n_samples}",
                RuntimeWarning,
                stacklevel=3,
            )
        return raw.to(device=self.device, dtype=self.dtype)

    @abstractmethod
    def _generate_data(self, generator: torch.Generator | None) -> torch.Tensor:
        """Draw the points ``(n_samples, d)`` from ``generator`` (global RNG when ``None``)."""

    def regenerate(
        self, seed: int | None = None, *, generator: torch.Generator | None = None
    ) -> None:
        """Draw the data again.

        With ``seed`` (or ``generator``) the new source replaces the old one. Otherwise a
        seeded dataset reproduces the same points, a generator-backed one continues its
        stream, and an unseeded one draws new points from the global RNG.
        """
        if seed is not None or generator is not None:
            self._set_source(seed, generator)
        self.data = self._build()

    # ------------------------------------------------------------------ access
    def get_data(self) -> torch.Tensor:
        """All points, ``(N, 2)`` on ``device`` in ``dtype`` (the stored tensor, not a copy)."""
        return self.data

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, idx: Any) -> torch.Tensor:
        """Point ``idx`` (``(2,)``; negative indices count from the end) or a slice ``(k, 2)``."""
        if isinstance(idx, slice):
            return self.data[idx]
        try:
            i = operator.index(idx)
        except TypeError:
            raise TypeError(
                f"dataset indices must be integers or slices, got {type(idx).__name__}"
            ) from None
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for {type(self).__name__} of length {n}")
        return self.data[i]

    def _extra_repr(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        fields = {"n_samples": len(self), **self._extra_repr()}
        fields.update(device=str(self.device), dtype=str(self.dtype))
        body = ", ".join(f"{k}={v}" for k, v in fields.items())
        return f"{type(self).__name__}({body})"
