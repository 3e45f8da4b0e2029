r"""`EMA`: an exponential moving average of a model's weights, as a module."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Literal, Union

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from torchebm.core import requires_grad
from torchebm.core._module import warn_user
from torchebm.core.distributed import unwrap_model
from torchebm.core.errors import ConfigurationError, check_probability

__all__ = ["EMA"]

DecaySchedule = Union[Literal["constant", "warmup"], Callable[[int], float]]
_SCHEDULES = ("constant", "warmup")


def _unwrap_089_keys(ema: EMA, state_dict: dict, prefix: str, *_: Any) -> None:
    """Load pre-hook: torchebm 0.8.9 copied a wrapped model whole, so its keys read
    ``module.module.*`` (``DataParallel``/DDP) or ``module._orig_mod.*`` (``torch.compile``);
    such a key names the bare module's entry when only the unwrapped name exists here."""
    own = {prefix + "module." + k for k in ema.module.state_dict()}
    for key in [k for k in state_dict if k.startswith(prefix + "module.") and k not in own]:
        for wrapper in ("module.", "_orig_mod."):
            bare = key.replace(prefix + "module." + wrapper, prefix + "module.", 1)
            if key.startswith(prefix + "module." + wrapper) and bare in own:
                state_dict[bare] = state_dict.pop(key)
                break


def _move_toward(average: torch.Tensor, live: torch.Tensor, d: float) -> None:
    """``average <- d average + (1 - d) live`` in place. ``torch.lerp`` computes a weight
    ``1 - d >= 0.5`` as ``live - (live - average) d``, NaN for an infinite ``live``: a decay
    ``d <= 0.5`` (the first steps of ``"warmup"``) sums the two terms instead (inf stays inf).
    An integer ``average``: ``lerp_`` refuses it (rather than rounding the average)."""
    if d > 0.5 or not (average.is_floating_point() or average.is_complex()):
        average.lerp_(live, 1.0 - d)
    elif d == 0.0:
        average.copy_(live)
    else:
        average.mul_(d).add_(live, alpha=1.0 - d)


class EMA(nn.Module):
    r"""Exponential moving average of a model's weights.

    Holds a frozen, eval-mode deep copy of ``model`` (`ema.module`; it stays in eval mode
    when a parent module calls ``train()``) and moves it toward the live weights on every
    `update`:

    $$ \bar\theta \leftarrow d_s\,\bar\theta + (1 - d_s)\,\theta, $$

    where $s$ counts the updates (saved in ``state_dict``). Parameters are averaged,
    buffers copied; calling the `EMA` runs the averaged model. Give samplers and losses
    ``ema.module``: the `EMA` itself has no ``gradient``, so a sampler would differentiate
    through its forward with autograd instead of the model's own (closed-form) gradient.

    ``DistributedDataParallel``/``DataParallel``/``torch.compile`` wrappers are stripped
    ([`unwrap_model`][torchebm.core.distributed.unwrap_model]) at construction and in
    `update`, `copy_to` and `average_parameters`: the copy is the bare module, so its
    ``state_dict`` keys do not depend on how the trained model was wrapped. A state dict of
    torchebm 0.8.9's `EMA` of a wrapped model (keys ``module.module.*`` or
    ``module._orig_mod.*``) loads too (torch >= 2.5).

    The average has the copy's dtype: for a float16/bfloat16 model keep it in float32
    (``EMA(model, decay).float()``; `update` casts the live weights), else increments
    $(1 - d)(\theta - \bar\theta)$ below the half-precision rounding are lost (bfloat16,
    $d = 0.999$: 25 % of a step change after 5,000 updates instead of 99.3 %; the first
    `update` warns). float32 has the same limit further out: at $d = 0.9999$ the average
    stops moving once $|\theta - \bar\theta|$ is below about $6\cdot 10^{-4}|\bar\theta|$
    (a step change of $10^{-3}$ is followed to 40 % for good, not 100 %); where those digits
    matter, keep the average in float64 (``EMA(model, decay).double()``).

    Args:
        model: The module to average; deep-copied (unwrapped) at construction.
        decay: $d \in [0, 1)$, the decay (the cap under ``"warmup"``). Default 0.9999.
        decay_schedule: ``"constant"`` ($d_s = d$), ``"warmup"``
            ($d_s = \min(d, (1 + s)/(10 + s))$) or a callable ``step -> decay`` whose
            value must lie in $[0, 1]$.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> ema = EMA(model, decay=0.999)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> for _ in range(3):
        ...     opt.zero_grad(); model(torch.randn(8, 2)).square().mean().backward(); opt.step()
        ...     ema.update(model)
        >>> ema(torch.zeros(1, 2)).shape  # forward through the averaged weights
        torch.Size([1, 1])

    References:
        Polyak & Juditsky, "Acceleration of stochastic approximation by averaging", 1992.
        Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT), 2023.
    """

    def __init__(
        self, model: nn.Module, decay: float = 0.9999, decay_schedule: DecaySchedule = "constant"
    ):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.decay = check_probability("decay", decay, closed_right=False)
        if not (callable(decay_schedule) or decay_schedule in _SCHEDULES):
            raise ConfigurationError(
                f"decay_schedule must be one of {_SCHEDULES} or a callable step -> decay, "
                f"got {decay_schedule!r}"
            )
        self.decay_schedule = decay_schedule
        self.step = 0
        self.module = copy.deepcopy(unwrap_model(model))
        self.module.eval()
        requires_grad(self.module, False)
        if hasattr(self, "register_load_state_dict_pre_hook"):  # public since torch 2.5
            self.register_load_state_dict_pre_hook(_unwrap_089_keys)

    def current_decay(self) -> float:
        """The decay $d_s$ the next `update` uses."""
        if self.decay_schedule == "constant":
            return self.decay
        if self.decay_schedule == "warmup":
            return min(self.decay, (1 + self.step) / (10 + self.step))
        return check_probability("decay_schedule(step)", self.decay_schedule(self.step))

    def _pairs(self, model: nn.Module):
        model = unwrap_model(model)
        ema_p, live_p = list(self.module.parameters()), list(model.parameters())
        ema_b, live_b = list(self.module.buffers()), list(model.buffers())
        if len(ema_p) != len(live_p) or len(ema_b) != len(live_b):
            raise ConfigurationError(
                f"model has {len(live_p)} parameters and {len(live_b)} buffers, the EMA copy "
                f"{len(ema_p)} and {len(ema_b)}: pass the module the EMA was built from"
            )
        return zip(ema_p, live_p), zip(ema_b, live_b)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward ``model``'s parameters and copy its buffers.

        Args:
            model: The module being trained (same structure as the averaged copy).
        """
        d = self.current_decay()
        params, buffers = self._pairs(model)
        if self.step == 0:
            _warn_half_average(self.module)
        averaged, live = [], []
        for e, p in params:
            if p.device == e.device and p.dtype == e.dtype and e.is_floating_point() and d > 0.5:
                averaged.append(e)
                live.append(p)
            else:  # converted one at a time (a float32 or CPU average): no whole-model copy
                _move_toward(e, p.detach().to(e.device, e.dtype), d)
        if averaged:  # one multi-tensor lerp (torch's public EMA function), not one per tensor
            get_ema_multi_avg_fn(d)(averaged, live, self.step)
        for e, b in buffers:
            e.copy_(b)
        self.step += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged parameters and buffers into ``model`` (same structure).

        Args:
            model: The module to overwrite (a DDP/FSDP wrapper is unwrapped).
        """
        params, buffers = self._pairs(model)
        for e, p in list(params) + list(buffers):
            p.copy_(e)

    @contextmanager
    def average_parameters(self, model: nn.Module) -> Iterator[nn.Module]:
        """Run ``model`` under the averaged weights inside the block; restore them on exit.

        Args:
            model: The trained module (same structure as the averaged copy).
        """
        bare = unwrap_model(model)
        tensors = list(bare.parameters()) + list(bare.buffers())
        saved = [t.detach().clone() for t in tensors]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for t, s in zip(tensors, saved):
                    t.copy_(s)

    def train(self, mode: bool = True) -> EMA:
        """Set ``self.training``; the averaged copy stays in eval mode (it is not trained).

        Args:
            mode: Training mode of this wrapper.
        """
        super().train(mode)
        self.module.eval()
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the averaged module.

        Args:
            *args: Positional arguments of the wrapped module.
            **kwargs: Keyword arguments of the wrapped module.
        """
        return self.module(*args, **kwargs)

    def get_extra_state(self) -> dict:
        return {"step": self.step}

    def set_extra_state(self, state: dict) -> None:
        """Restore the update count from a state dict (``load_state_dict`` calls it).

        Args:
            state: The dict of `get_extra_state`, ``{"step": int}``.
        """
        self.step = int(state["step"])

    def extra_repr(self) -> str:
        return f"decay={self.decay}, decay_schedule={self.decay_schedule!r}, step={self.step}"


def _warn_half_average(module: nn.Module) -> None:
    """One ``RuntimeWarning`` when the average is kept in float16/bfloat16."""
    half = {p.dtype for p in module.parameters()} & {torch.float16, torch.bfloat16}
    if half:
        warn_user(
            f"EMA averages in {sorted(map(str, half))[0]}: increments (1 - decay) * (w - avg) "
            "below its rounding are lost and the average stalls; keep it in float32 with "
            "EMA(model, decay).float() (update() casts the live weights)",
            RuntimeWarning,
        )
