r"""``BaseSyntheticDataset``: eager, seeded, device-resident synthetic datasets."""

from __future__ import annotations

import inspect
import numbers
import operator
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from torchebm.core._module import warn_user
from torchebm.core.errors import ConfigurationError, check_generator, check_int
from torchebm.datasets._functional import _check_device, _check_dtype

__all__ = ["BaseSyntheticDataset"]


class BaseSyntheticDataset(Dataset):
    r"""Base class of the synthetic datasets: points generated once, held as one tensor.

    The data are drawn in ``__init__`` by `generate_data` and kept on ``device`` in
    ``dtype`` (a ``DataLoader`` then yields tensors already on that device).

    Randomness: with ``seed`` the points come from a private ``torch.Generator`` seeded with
    it; with ``generator`` they come from that generator; in both cases the global RNG is
    neither read nor reseeded (the reference implementation reseeded the global torch and
    numpy RNGs). With neither, the global RNG is used, like ``torch.randn``.

    ``DataLoader`` workers (``num_workers > 0``, any start method) and pickles get a copy
    of the points drawn in the parent: every worker holds the same data, the loader's
    sampler decides which rows each yields, and nothing is drawn in a worker. A pickled
    ``generator`` keeps its state (`regenerate` in a copy continues the same stream,
    independently of the original). A loader with ``persistent_workers=True`` keeps its
    workers' copies across epochs, so it never sees `regenerate`: redraw per epoch with
    non-persistent workers (the default) or a new loader.

    Args:
        n_samples: Number of points (>= 1).
        device: Device of the data (default CPU).
        dtype: Floating dtype of the data (default ``float32``).
        seed: Seed of a private generator (reproducible data).
        generator: A ``torch.Generator`` to draw from (mutually exclusive with ``seed``).

    A subclass implements the public hook ``generate_data(self, generator)``, returning
    ``(n_samples, 2)`` points (a tensor, or anything ``torch.as_tensor`` accepts) drawn only
    from ``generator``, and may implement ``extra_repr()`` (its parameters, shown by
    ``repr``). A torchebm 0.8 subclass implementing ``_generate_data(self)`` instead keeps
    working (see `generate_data`); a class implementing neither raises ``TypeError`` at
    construction.

    Raises:
        TypeError: the class implements neither ``generate_data`` nor ``_generate_data``;
            ``seed`` is not an int.
        ValueError: ``n_samples < 1``; both ``seed`` and ``generator`` given.

    Example:
        >>> class Uniform(BaseSyntheticDataset):
        ...     def generate_data(self, generator):
        ...         return torch.rand(self.n_samples, 2, generator=generator)
        >>> len(Uniform(10, seed=0))
        10
    """

    #: Settings a dataset pickled by torchebm 0.8.9 lacks, with the value that version used.
    _settings_089: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        n_samples: int = 2000,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ):
        if _hook_name(type(self)) is None:
            raise TypeError(f"{type(self).__name__} must implement generate_data(self, generator)")
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
        if seed is not None and not -(2**63) <= int(seed) < 2**64:  # torch.Generator's range
            raise ConfigurationError(f"seed must be in [-2**63, 2**64), got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self.generator = check_generator(generator)

    def _make_generator(self) -> torch.Generator | None:
        if self.seed is not None:
            return torch.Generator().manual_seed(self.seed)
        return self.generator

    def _build(self) -> torch.Tensor:
        name = _hook_name(type(self))
        if name == "_generate_data":  # a torchebm 0.8 override wins over a built-in hook
            raw = BaseSyntheticDataset.generate_data(self, self._make_generator())
        else:
            raw = self.generate_data(self._make_generator())
        hook = f"{type(self).__name__}.{name}"
        if not isinstance(raw, torch.Tensor):
            try:
                raw = torch.as_tensor(raw)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(
                    f"{hook} must return a tensor or array-like, got {type(raw).__name__}"
                ) from exc
        if raw.ndim != 2:
            raise ValueError(f"{hook} must return points of shape (N, d), got {tuple(raw.shape)}")
        if raw.shape[0] != self.n_samples:
            warn_user(
                f"{type(self).__name__} generated {raw.shape[0]} points, expected {self.n_samples}",
                RuntimeWarning,
            )
        return raw.to(device=self.device, dtype=self.dtype)

    def generate_data(self, generator: torch.Generator | None) -> torch.Tensor:
        """Draw the points ``(n_samples, d)`` from ``generator``: the method a subclass implements.

        ``generator`` is the private generator seeded with ``seed``, the ``generator``
        passed to the constructor, or ``None`` (then draw from the global RNG, like
        ``torch.randn``). Called by ``__init__`` and `regenerate`.

        A torchebm 0.8 subclass implements ``_generate_data`` instead, which this calls:
        with a ``generator`` argument it gets ``generator``; without one (0.8.9's
        signature) it draws from the global RNG, and with ``seed`` (or a ``generator``,
        which gives one seed) it runs as in 0.8.9, after ``torch.manual_seed(seed)`` (and
        ``numpy.random.seed``), on a forked RNG state: the global RNGs are left as they were.

        Args:
            generator: The source of randomness (``None``: the global RNG).

        Returns:
            The points, ``(n_samples, d)``: a tensor or anything ``torch.as_tensor`` accepts.
        """
        hook = self._generate_data  # type: ignore[attr-defined]  # a torchebm 0.8 subclass
        if _takes_argument(hook):  # (a built-in draw it calls through super() without the
            token = HOOK_GENERATOR.set(generator)  # generator draws from it too)
            try:
                return hook(generator)
            finally:
                HOOK_GENERATOR.reset(token)
        return _draw_as_089(self, hook, generator)

    def regenerate(
        self, seed: int | None = None, *, generator: torch.Generator | None = None
    ) -> None:
        """Draw the data again.

        With ``seed`` (or ``generator``) the new source replaces the old one. Otherwise a
        seeded dataset reproduces the same points, a generator-backed one continues its
        stream, and an unseeded one draws new points from the global RNG.

        Args:
            seed: New integer seed, or ``None``.
            generator: New `torch.Generator` source, or ``None``.
        """
        if seed is not None or generator is not None:
            self._set_source(seed, generator)
        self.data = self._build()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with ``generator`` as ``(device, state bytes)``: torch pickles a
        ``torch.Generator`` through a temporary shared-memory tensor, freed before a
        ``spawn``/``forkserver`` ``DataLoader`` worker reads it (the worker died)."""
        state = self.__dict__.copy()
        g = state.get("generator")
        if isinstance(g, torch.Generator):
            state["generator"] = (str(g.device), g.get_state().numpy().tobytes())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        g = state.get("generator")
        if isinstance(g, tuple):
            gen = torch.Generator(device=g[0])
            gen.set_state(torch.frombuffer(bytearray(g[1]), dtype=torch.uint8))
            state = {**state, "generator": gen}
        elif "generator" not in state:  # pickled by torchebm 0.8.9: its settings filled in
            data = state.get("data")
            device = data.device if isinstance(data, torch.Tensor) else torch.device("cpu")
            state = {**self._settings_089, **state, "generator": None}
            state["device"] = (
                device if state.get("device") is None else torch.device(state["device"])
            )
        self.__dict__.update(state)

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

    def extra_repr(self) -> dict[str, Any]:
        """The parameters ``repr`` shows after ``n_samples`` (name to value); none here."""
        return {}

    def __repr__(self) -> str:
        fields = {"n_samples": len(self), **self.extra_repr()}
        fields.update(device=str(self.device), dtype=str(self.dtype))
        body = ", ".join(f"{k}={v}" for k, v in fields.items())
        return f"{type(self).__name__}({body})"


#: the generator of the torchebm 0.8 hook ``_generate_data(self, generator)`` running now
#: (``None`` outside one, and for a hook without it, which draws from the global RNG)
HOOK_GENERATOR: ContextVar[torch.Generator | None] = ContextVar("HOOK_GENERATOR", default=None)


def _hook_name(cls: type[BaseSyntheticDataset]) -> str | None:
    """The data hook ``cls`` implements: torchebm 0.8's ``_generate_data`` (also when it
    overrides a built-in dataset's ``generate_data``), ``generate_data`` or none (``None``).
    The built-in datasets' own ``_generate_data`` (for a 0.8 subclass's ``super()`` call) is
    not an override."""
    owner = next((k for k in cls.__mro__ if "_generate_data" in vars(k)), None)
    if owner is not None and owner.__module__ != "torchebm.datasets._datasets":
        return "_generate_data"
    return "generate_data" if cls.generate_data is not BaseSyntheticDataset.generate_data else None


def _takes_argument(hook: Callable[..., Any]) -> bool:
    """Whether the bound method ``hook`` accepts a positional argument (the generator)."""
    try:
        params = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):  # no signature to read: pass the generator
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def _draw_as_089(
    dataset: BaseSyntheticDataset, hook: Callable[[], Any], generator: torch.Generator | None
) -> Any:
    """Run 0.8.9's ``_generate_data(self)``, which draws from the global RNGs.

    Unseeded, it draws from them as in 0.8.9. Otherwise it runs after 0.8.9's seeding
    (``torch.manual_seed(seed)``, ``numpy.random.seed(seed)`` when numpy is imported) on a
    forked state, so the global RNGs are as they were afterwards; a ``generator`` without
    ``seed`` gives the seed (one draw from it).
    """
    seed = dataset.seed
    if seed is None:
        if generator is None:
            return hook()
        seed = int(torch.randint(2**32, (), generator=generator, device=generator.device))
    device, cuda = dataset.device, []
    if device.type == "cuda":  # 0.8.9 also seeded CUDA for a CUDA dataset
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    numpy = sys.modules.get("numpy")
    numpy_state = numpy.random.get_state() if numpy is not None else None
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        try:
            if numpy is not None:
                numpy.random.seed(seed % 2**32)
            return hook()
        finally:
            if numpy is not None:
                numpy.random.set_state(numpy_state)
