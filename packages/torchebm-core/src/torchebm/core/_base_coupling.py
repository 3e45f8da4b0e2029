r"""Coupling bases: how noise $x_0$ is paired with data $x_1$.

A coupling reorders ``x1`` (cost-based: optimal transport, Sinkhorn, greedy) or generates it
from ``x0`` (model-based: reflow). Couplings are plain objects run under ``no_grad``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partialmethod
from typing import Any

import torch

from torchebm.core.distributed import all_gather_cat, broadcast_tensor, gather_sizes, get_rank
from torchebm.core.errors import ConfigurationError, ShapeError, check_generator, check_tensor

__all__ = ["BaseCoupling", "BaseCostCoupling", "BaseModelCoupling", "CouplingResult"]


@dataclass(frozen=True)
class CouplingResult:
    r"""Result of a coupling; iterating or indexing yields ``(x0, x1)`` (``x0, x1 = r``, ``r[1]``).

    Attributes:
        x0: Source (noise) samples ``(B, *event_shape)``.
        x1: Paired target (data) samples ``(B, *event_shape)``.
        weights: Optional ``(B,)`` importance weights of the pairs (``None`` = uniform).
        index: ``(B,)`` rows of the caller's ``x1`` that ``x1`` holds, when the coupling
            reordered or resampled it (per-sample conditioning of ``x1`` must follow them);
            ``None``: ``x1`` is the caller's in its order, generated from ``x0``, or drawn
            from every rank's batch (a ``process_group`` coupling: no local rows to follow).

    Example:
        >>> r = CouplingResult(torch.zeros(2, 1), torch.ones(2, 1))
        >>> x0, x1 = r
        >>> r.weights is None
        True
    """

    x0: torch.Tensor
    x1: torch.Tensor
    weights: torch.Tensor | None = None
    index: torch.Tensor | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.x0, self.x1))

    def __getitem__(self, i: int) -> torch.Tensor:  # r[0], r[1]: the pair as a tuple holds it
        return (self.x0, self.x1)[i]


class BaseCoupling(ABC):
    r"""Abstract coupling: ``couple(x0, x1=None, *, generator=None, **kwargs) -> CouplingResult``.

    ``**kwargs`` is the conditioning channel (``model_kwargs`` of the caller); unconditional
    couplings ignore it. ``__call__`` forwards to [`couple`][torchebm.core.BaseCoupling.couple]."""

    @abstractmethod
    def couple(
        self,
        x0: torch.Tensor,
        x1: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> CouplingResult:
        """Pair ``x0`` with (a reordering of, or samples generated in place of) ``x1``."""

    def __call__(self, x0, x1=None, *, generator=None, **kwargs) -> CouplingResult:
        return self.couple(x0, x1, generator=check_generator(generator), **kwargs)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass written for torchebm 0.8.9 implements ``_solve``/``_generate`` (0.8.9's
        names, same arguments): they then serve as ``solve``/``generate``."""
        super().__init_subclass__(**kwargs)
        for old, new in (("_solve", "solve"), ("_generate", "generate")):
            if old in vars(cls) and new not in vars(cls):
                setattr(cls, new, partialmethod(_call_089, old))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _check_batch(self, x0: torch.Tensor, x1: torch.Tensor | None) -> torch.Tensor:
        """``x1``, checked: given, and floating, non-empty ``x0``/``x1`` of one shape."""
        if x1 is None:
            raise ConfigurationError(f"{type(self).__name__}: x1 must not be None")
        for name, v in (("x0", x0), ("x1", x1)):
            check_tensor(name, v, min_ndim=1, floating=True)
        if x0.shape != x1.shape:
            got = f"x0 of shape {tuple(x0.shape)} and x1 of shape {tuple(x1.shape)}"
            raise ConfigurationError(
                f"Coupling requires equal batch sizes and event shapes, got {got}"
            )
        return x1


def _call_089(self: Any, old: str, value: torch.Tensor, generator: Any, **kwargs: Any) -> Any:
    return getattr(self, old)(value, generator=generator, **kwargs)


def _squared_euclidean_cost(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances of the flattened samples, divided by their max."""
    a = x0.reshape(x0.shape[0], -1).to(torch.promote_types(x0.dtype, torch.float32))
    b = x1.reshape(x1.shape[0], -1).to(a.dtype)
    top = torch.maximum(a.abs().max(), b.abs().max()) if a.numel() else a.new_ones(())
    # float32 at least (no float16 CPU cdist), / 2^e near the largest |value| (1e20 squares in
    # range), then centred: cdist's matmul path (B > 25) cancelled at offsets of 1e4
    h = torch.frexp(top).exponent.to(a.dtype) / 2  # top = m 2^e: / 2^e in two exact halves
    a, b = (v / torch.exp2(h.floor()) / torch.exp2(h.ceil()) for v in (a, b))  # 2^128 is inf
    c = 0.5 * (a.mean(0) + b.mean(0))
    cost = torch.cdist(a - c, b - c).square_().clamp_(min=0.0)
    return cost / torch.where((top := cost.max()) > 0, top, 1.0)  # no floor: offset data


class BaseCostCoupling(BaseCoupling):
    r"""Template for couplings that reorder ``x1`` by solving an assignment on a cost matrix.

    ``couple`` returns ``(x0, x1[idx])`` with ``idx = solve(compute_cost(x0, x1), generator)``
    (``B == 1`` passes through). The default cost is the squared Euclidean distance of the
    flattened samples over its maximum (1 when all are 0). With ``process_group`` the coupling
    is global: both batches are all-gathered, the pooled problem solved (indices broadcast from
    rank 0) and each rank keeps its rows (``index`` is then ``None``, they come from every rank's
    ``x1``; conditioning is refused). Subclasses opt in with ``_supports_process_group = True``.

    Args:
        process_group: Optional process group for global-batch coupling."""

    _supports_process_group: bool = False

    def __init__(self, process_group: Any = None):
        if process_group is not None and not self._supports_process_group:
            what = f"{type(self).__name__} does not support process_group (global-batch coupling)"
            raise ConfigurationError(f"{what}; got {process_group!r}")
        pg_type = getattr(torch.distributed, "ProcessGroup", None)
        if process_group is not None and not (pg_type and isinstance(process_group, pg_type)):
            what = "a torch.distributed ProcessGroup (e.g. torch.distributed.group.WORLD)"
            raise TypeError(f"process_group must be {what}, got {type(process_group).__name__}")
        self.process_group = process_group

    def compute_cost(self, x0: torch.Tensor, x1: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``(B, B)`` cost matrix (default: normalised squared Euclidean distance)."""
        return _squared_euclidean_cost(x0, x1)

    @abstractmethod
    def solve(self, cost: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Return ``idx`` of shape ``(B,)``: row ``i`` of ``x0`` is paired with ``x1[idx[i]]``."""

    @torch.no_grad()
    def couple(self, x0, x1=None, *, generator=None, **kwargs) -> CouplingResult:
        x1 = self._check_batch(x0, x1)
        if self.process_group is not None:
            return self._couple_global(x0, x1, generator, **kwargs)
        if x0.shape[0] == 1:
            return CouplingResult(x0, x1)
        idx = self.solve(self.compute_cost(x0, x1, **kwargs), generator)
        return CouplingResult(x0, x1[idx], index=idx)

    def _couple_global(self, x0, x1, generator, **kwargs) -> CouplingResult:
        import torch.distributed as dist

        if kwargs:
            raise NotImplementedError(
                f"{type(self).__name__}: conditioning kwargs are not supported with a "
                f"process_group (global coupling); got {sorted(kwargs)}"
            )
        group = self.process_group
        if dist.get_world_size(group) == 1:
            idx = self.solve(self.compute_cost(x0, x1), generator)
            return CouplingResult(x0, x1[idx], index=idx)
        sizes = gather_sizes(x0.shape[0], group)  # per-rank batch sizes may differ
        all0, all1 = all_gather_cat(x0, group), all_gather_cat(x1, group)
        idx = self.solve(self.compute_cost(all0, all1), generator).to(torch.long)
        root = 0 if group is None else dist.get_global_rank(group, 0)  # the group's rank 0
        broadcast_tensor(idx, src=root, group=group)
        start = sum(sizes[: get_rank(group)])
        return CouplingResult(x0, all1[idx[start : start + x0.shape[0]]])


class BaseModelCoupling(BaseCoupling):
    r"""Template for couplings that *generate* ``x1`` from ``x0`` with a model (e.g. reflow).

    ``couple`` returns ``(x0, generate(x0, generator, **kwargs))`` (shaped like ``x0``, else
    `ShapeError`); ``x1`` is ignored.

    Args:
        model: The generator (a flow sampler, a callable, ...)."""

    def __init__(self, model: Any):
        self.model = model

    @abstractmethod
    def generate(
        self, x0: torch.Tensor, generator: torch.Generator | None, **kwargs: Any
    ) -> torch.Tensor:
        """Map ``x0`` to generated targets of the same batch size."""

    @torch.no_grad()
    def couple(self, x0, x1=None, *, generator=None, **kwargs) -> CouplingResult:
        check_tensor("x0", x0, non_empty=False)
        out = self.generate(x0, generator, **kwargs)
        if not isinstance(out, torch.Tensor) or out.shape != x0.shape:  # (x0, x1) is a pair
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            what = f"{type(self).__name__}: the model must map x0 of shape {tuple(x0.shape)}"
            raise ShapeError(f"{what} to a tensor of the same shape, got {got}")
        return CouplingResult(x0, out.detach())
