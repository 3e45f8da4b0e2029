r"""The loss contract: `BaseLoss` (the CD and score-matching bases live in `torchebm.losses`).

Every training objective of TorchEBM is an ``nn.Module`` deriving from [`BaseLoss`][torchebm.core.BaseLoss]:
moving the loss (``.to()``) moves the model and sampler it holds, schedulable
hyper-parameters travel in ``state_dict``, and ``forward`` returns a scalar that is the
mean over the local batch.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from torchebm.core._conditioning import Conditioning
from torchebm.core._module import TorchEBMModule
from torchebm.core._schedulable import Schedulable
from torchebm.core.errors import (
    NonFiniteError,
    check_in,
    check_tensor,
)

__all__ = ["BaseLoss"]


_NAN_POLICIES = ("raise", "warn", "deferred", "ignore")


class BaseLoss(Schedulable, TorchEBMModule, ABC):
    r"""Base class of every TorchEBM training objective.

    A loss is a [`TorchEBMModule`][torchebm.core.TorchEBMModule] (its ``device``/``dtype`` follow the first
    parameter of the model it holds) and a [`Schedulable`][torchebm.core.Schedulable] (hyper-parameters can be
    driven by schedulers that the training loop steps with [`step_schedulers`][torchebm.core.Schedulable.step_schedulers]).
    Subclasses implement [`forward`][torchebm.core.BaseLoss.forward]; reductions are means over the local batch (under
    DDP/FSDP the averaged gradient equals the global mean only for equal per-rank batches).

    Non-finite losses are never replaced by a constant. ``nan_policy`` decides what
    happens when the scalar loss is NaN or infinite:

    * ``"raise"`` (default): raise [`NonFiniteError`][torchebm.core.errors.NonFiniteError] at once
      (one host read of a single boolean per call);
    * ``"warn"``: emit a ``RuntimeWarning`` and return the non-finite loss unchanged;
    * ``"deferred"``: no host synchronisation in the call; the finiteness flag of a call
      is read at the start of the next call (or by [`check_finite`][torchebm.core.BaseLoss.check_finite]), which raises
      [`NonFiniteError`][torchebm.core.errors.NonFiniteError] naming the call that failed;
    * ``"ignore"``: no check.

    Args:
        dtype: Dtype of the loss's own tensors (default ``float32``); a wrapped model with
            parameters decides the effective dtype.
        device: Device of the loss's own tensors (default CPU).
        nan_policy: One of ``"raise"``, ``"warn"``, ``"deferred"``, ``"ignore"``.
        cfg_dropout: Probability of replacing ``y`` by ``null_condition`` per sample while
            training (classifier-free guidance), in losses that apply it.
        null_condition: What a dropped ``y`` becomes (label id, tensor or callable).
        check_conditioning: Check once that the model reads ``y``.

    Example:
        >>> class L2(BaseLoss):
        ...     def forward(self, x):
        ...         return self._check_finite((x**2).sum(-1).mean())
        >>> L2()(torch.ones(4, 2))
        tensor(2.)
    """

    def __init__(
        self,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
        *,
        nan_policy: str = "raise",
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
    ):
        super().__init__(device=device, dtype=dtype)
        self.nan_policy = check_in("nan_policy", nan_policy, _NAN_POLICIES)
        self.conditioning = Conditioning(cfg_dropout, null_condition, check_conditioning)
        self._calls = 0
        self._pending_finite: tuple[int, torch.Tensor] | None = None

    def apply_conditioning(
        self,
        model_kwargs: dict,
        probe: Callable[[dict], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict:
        """Apply ``cfg_dropout``/``check_conditioning`` to a call's normalised ``model_kwargs``.

        Args:
            model_kwargs: The call's conditioning.
            probe: ``mk -> output`` of the model on one fixed input, for the one-time check
                that the model reads ``y`` (see `torchebm.core.Conditioning`).
            generator: RNG of the label dropout.
        """
        cond = self.conditioning
        if probe is not None and cond.pending and "y" in model_kwargs:
            cond.check(probe, model_kwargs, self)
        return cond.drop(model_kwargs, training=self.training, generator=generator)

    @abstractmethod
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Compute the loss on a batch ``x`` of shape ``(B, *event_shape)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ------------------------------------------------------------------ inputs
    def _prepare_input(self, x: Any, name: str = "x", min_ndim: int = 2) -> torch.Tensor:
        """Validate a data batch and cast it to the loss's device/dtype.

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ShapeError: ``x`` has fewer than ``min_ndim`` dimensions or an empty batch.
        """
        check_tensor(name, x, min_ndim=min_ndim, floating=True)
        return x.to(device=self.device, dtype=self.dtype)

    # ------------------------------------------------------------------ non-finite policy
    def _check_finite(self, loss: torch.Tensor, what: str = "loss") -> torch.Tensor:
        """Apply ``nan_policy`` to a loss tensor (usually a scalar) and return it unchanged.

        Raises:
            NonFiniteError: the loss is NaN/inf and the policy is ``"raise"`` (or
                ``"deferred"``, for the previous call).
        """
        self._calls = self._calls + 1
        policy = self.nan_policy
        if policy == "ignore":
            return loss
        if policy == "deferred":
            self.check_finite()
            self._pending_finite = (self._calls, torch.isfinite(loss.detach()).all())
            return loss
        if loss.numel() == 1:  # the usual scalar loss: one read of its value, one sync
            if math.isfinite(loss.detach().item()):
                return loss
        finite = torch.isfinite(loss.detach())
        if not bool(finite.all()):
            value = (
                f"{loss.detach().item()}"
                if loss.numel() == 1
                else f"{int((~finite).sum())} of {loss.numel()} entries"
            )
            msg = (
                f"{type(self).__name__} produced a non-finite {what} ({value}); "
                "check the learning rate, sampler step size, data scale, or add energy "
                "regularisation"
            )
            if policy == "raise":
                raise NonFiniteError(msg, step=self._calls)
            warnings.warn(msg, RuntimeWarning, stacklevel=5)
        return loss

    def check_finite(self) -> None:
        """Read the pending finiteness flag of a ``nan_policy="deferred"`` call.

        Raises:
            NonFiniteError: the last deferred call produced a non-finite loss.
        """
        pending = self._pending_finite
        if pending is None:
            return
        self._pending_finite = None
        call, flag = pending
        if not bool(flag):
            raise NonFiniteError(
                f"{type(self).__name__} produced a non-finite loss at call {call} "
                "(reported one call late because nan_policy='deferred')",
                step=call,
            )
