r"""The loss contract `BaseLoss` (the CD and score-matching bases live in `torchebm.losses`)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from torchebm.core._conditioning import Conditioning
from torchebm.core._module import TorchEBMModule, warn_user
from torchebm.core._schedulable import Schedulable
from torchebm.core.errors import NonFiniteError, check_in, check_tensor

__all__ = ["BaseLoss"]


_NAN_POLICIES = ("raise", "warn", "deferred", "ignore")


class BaseLoss(Schedulable, TorchEBMModule, ABC):
    r"""Base class of every TorchEBM training objective.

    A loss is a [`TorchEBMModule`][torchebm.core.TorchEBMModule] (``.to()`` moves the model
    and sampler it holds) and a [`Schedulable`][torchebm.core.Schedulable] (scheduled
    hyper-parameters travel in ``state_dict``). Subclasses implement
    [`forward`][torchebm.core.BaseLoss.forward], returning the mean over the local batch.

    Non-finite losses are never replaced; ``nan_policy`` decides what a NaN/inf loss does:
    ``"raise"`` (default) raises [`NonFiniteError`][torchebm.core.errors.NonFiniteError]
    (one host read per call); ``"warn"`` warns and returns it (the library's losses raise on
    NaN/inf *data* under both); ``"deferred"`` raises at the next call (or at
    [`check_finite`][torchebm.core.BaseLoss.check_finite]) naming the failed call (one host
    read per call, as ``"raise"``); ``"ignore"`` does not check (for ``vmap``, ``torch.export``).

    Args:
        dtype: Dtype of the loss's own tensors (a wrapped model's parameters win).
        device: Device of the loss's own tensors (default CPU).
        nan_policy: One of ``"raise"``, ``"warn"``, ``"deferred"``, ``"ignore"``.
        cfg_dropout: Probability of replacing ``y`` (else ``cond``) by ``null_condition`` per sample
            (classifier-free guidance), in `apply_conditioning`, which ``forward`` calls.
        null_condition: What a dropped ``y`` becomes (label id, tensor or callable).
        check_conditioning: Check once, in `apply_conditioning`, that the model reads ``y``.

    Example:
        >>> class L2(BaseLoss):
        ...     def forward(self, x):
        ...         return self.apply_nan_policy((x**2).sum(-1).mean())
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
        # nan_policy bookkeeping (calls, pending deferred flag): no nn.Module setattr per call
        self._finite: dict[str, Any] = {"calls": 0, "pending": None}

    def apply_conditioning(
        self,
        model_kwargs: dict,
        probe: Callable[[dict], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict:
        """Apply ``cfg_dropout``/``check_conditioning`` to a call's normalised ``model_kwargs``.

        Args:
            model_kwargs: The call's conditioning.
            probe: ``conditioning -> output`` of the model on one fixed input, for the
                one-time check that the model reads ``y`` (see `torchebm.core.Conditioning`).
            generator: RNG of the label dropout."""
        cond = self.conditioning
        if probe is not None and cond.pending and "y" in model_kwargs:
            cond.check(probe, model_kwargs, self)
        return cond.drop(model_kwargs, training=self.training, generator=generator)

    @abstractmethod
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Loss of a batch ``x`` ``(B, *event)``; start with ``x = self.prepare_input(x)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def prepare_input(self, x: Any, name: str = "x", min_ndim: int = 2) -> torch.Tensor:
        """``x`` checked (a floating tensor of ``>= min_ndim`` dims, else a named error) and cast
        to the loss's device and dtype: a ``forward`` starts with it (values are not checked)."""
        check_tensor(name, x, min_ndim=min_ndim, floating=True)
        return x.to(*self._resolve_placement())  # (device, dtype), read once

    def apply_nan_policy(self, loss: torch.Tensor, what: str = "loss") -> torch.Tensor:
        """Apply ``nan_policy`` to ``loss`` and return it unchanged (a custom ``forward`` ends
        with it; ``what`` names the quantity in the message). Eager under ``torch.compile``."""
        check = BaseLoss._apply_nan_policy  # host reads, a call counter: eager under compile
        check = torch.compiler.disable(check) if torch.compiler.is_compiling() else check
        return check(self, loss, what)  # (one cached graph break in a compiled caller)

    def _apply_nan_policy(self, loss: torch.Tensor, what: str) -> torch.Tensor:
        """`apply_nan_policy`'s work, always eager (its flag says "compiling" in any thread)."""
        checks, policy = self._finite, self.nan_policy
        checks["calls"] += 1
        if policy == "ignore":
            return loss
        if policy == "deferred":
            self.check_finite()
            checks["pending"] = (checks["calls"], torch.isfinite(loss.detach()).all())
            return loss
        if loss.numel() == 1 and math.isfinite(loss.detach().item()):  # a scalar: one sync
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
                raise NonFiniteError(msg, step=checks["calls"])
            warn_user(msg, RuntimeWarning)
        return loss

    def check_finite(self) -> None:
        """Read the pending finiteness flag of a ``nan_policy="deferred"`` call.

        Raises:
            NonFiniteError: the last deferred call produced a non-finite loss."""
        pending, self._finite["pending"] = self._finite["pending"], None
        if pending is not None and not bool(pending[1]):  # (call number, finiteness flag)
            raise NonFiniteError(
                f"{type(self).__name__} produced a non-finite loss at call {pending[0]} "
                "(reported one call late because nan_policy='deferred')",
                step=pending[0],
            )
