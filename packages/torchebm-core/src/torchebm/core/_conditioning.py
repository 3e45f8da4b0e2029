r"""Conditioning options of the losses: classifier-free-guidance dropout, a one-time check."""

from __future__ import annotations

from typing import Any, Callable, Union

import torch

from torchebm.core._base_interpolant import expand_t_like_x
from torchebm.core._module import check_bool, warn_user
from torchebm.core.errors import ConfigurationError, check_probability

__all__ = ["substitute_condition", "Conditioning", "NullCondition"]

NullCondition = Union[
    int, float, torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
]

_MAX_UNDECIDED = 8


def _first_row(value: Any, batch: int) -> Any:
    """A per-sample value (a tensor or numpy array with leading dimension ``batch``, a list of
    ``batch`` items) cut to its first row; a tuple (a group), a dict or a scalar as it is."""
    array = isinstance(value, torch.Tensor) or type(value).__module__ == "numpy"
    per_sample = isinstance(value, list) or (array and getattr(value, "ndim", 0) > 0)
    return value[:1] if per_sample and len(value) == batch else value


def substitute_condition(y: torch.Tensor, mask: torch.Tensor, null: NullCondition) -> torch.Tensor:
    r"""Replace the rows of ``y`` selected by ``mask`` with the null condition.

    Args:
        y: Conditioning, shape `(B, ...)`; the result has its shape.
        mask: Bool, shape `(B,)`; `True` rows become null.
        null: A number in ``y``'s dtype (e.g. the label ``num_classes``), a tensor
            broadcast over ``y``'s non-batch dims, or a callable ``(y, mask) -> y``.

    Example:
        >>> substitute_condition(torch.tensor([3, 1, 2]), torch.tensor([True, False, True]), 10)
        tensor([10,  1, 10])
    """
    if callable(null):
        return null(y, mask)
    m = expand_t_like_x(mask, y)
    if isinstance(null, torch.Tensor):
        return torch.where(m, null.to(device=y.device, dtype=y.dtype), y)
    return torch.where(m, torch.full_like(y, null), y)


class Conditioning:
    r"""The conditioning options of a loss.

    `drop` replaces ``model_kwargs["y"]`` (else ``["cond"]``) by ``null_condition`` on a fraction
    ``cfg_dropout`` of a training batch. `check` runs on the first call with ``y``: the
    model is probed under two distinct labels; identical non-zero outputs raise (it ignores
    ``y``), all-zero ones (AdaLN-Zero before training) re-arm it a few times, then warn.

    ``cfg_dropout`` in $[0, 1]$ needs ``null_condition`` (what a dropped ``y`` becomes, see
    `substitute_condition`) when positive; ``check_conditioning`` runs the check.

    Example:
        >>> cond = Conditioning(cfg_dropout=0.1, null_condition=10)
        >>> cond.drop({"y": torch.tensor([3, 1, 2])}, training=False)  # evaluation: kept
        {'y': tensor([3, 1, 2])}

    References:
        Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022."""

    def __init__(
        self,
        cfg_dropout: float = 0.0,
        null_condition: NullCondition | None = None,
        check_conditioning: bool = True,
    ):
        self.cfg_dropout = check_probability("cfg_dropout", cfg_dropout)
        if self.cfg_dropout > 0 and null_condition is None:
            raise ConfigurationError(
                f"cfg_dropout={cfg_dropout} needs null_condition (the label or embedding a "
                "dropped y becomes), got None"
            )
        self.null_condition = null_condition
        self.pending = check_bool("check_conditioning", check_conditioning)
        self._undecided = 0

    def drop(
        self, model_kwargs: dict, *, training: bool, generator: torch.Generator | None = None
    ) -> dict:
        """``model_kwargs`` with ``y`` (else ``cond``, DiT's vector) nulled on a ``cfg_dropout``
        fraction (training only)."""
        null, key = self.null_condition, "y" if "y" in model_kwargs else "cond"
        if self.cfg_dropout == 0.0 or not training or key not in model_kwargs or null is None:
            return model_kwargs
        y = model_kwargs[key]
        tensor = isinstance(y, torch.Tensor)
        if not (tensor or (isinstance(y, list) and callable(null))):
            raise ConfigurationError(
                f"cfg_dropout={self.cfg_dropout} drops rows of a tensor {key}, or of a list {key} "
                f"with a callable null_condition (y, mask) -> y; got a {type(y).__name__} {key} "
                f"and null_condition={null!r}"
            )  # a list (prompts): a mask of len(y) rows on the generator's device (default CPU)
        where = y.device if tensor else getattr(generator, "device", None)
        u = torch.rand(len(y), generator=generator, device=where, dtype=torch.float32)
        return {**model_kwargs, key: substitute_condition(y, u < self.cfg_dropout, null)}

    def check(self, probe: Callable[[dict], torch.Tensor], model_kwargs: dict, owner: Any) -> None:
        """One-time probe that the model reads ``y`` (see the class docs).

        ``probe``: ``conditioning -> output`` for one fixed input; ``owner``: the loss (its model
        is probed in eval mode). Raises ``ConfigurationError`` when the output ignores ``y``."""
        if not self.pending or "y" not in model_kwargs:
            return
        y = model_kwargs["y"]
        try:  # a list, an array, an int (text, a dict, a group: not numeric labels)
            yt = y if isinstance(y, torch.Tensor) else torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            yt = None
        rows = yt.reshape(yt.shape[0], -1) if yt is not None and yt.ndim else None
        other = None if rows is None else (rows != rows[:1]).any(dim=1).nonzero()
        if other is None or other.numel() == 0:  # (a 0-d label is one value)
            self.pending = False
            what = f"a {type(y).__name__} y" if yt is None else "a single y value"
            warn_user(
                f"{type(owner).__name__}: the first conditional batch has {what}, so the check "
                "that the model reads y was skipped (check_conditioning=False silences this)"
            )
            return
        j = int(other[0])
        pick = {k: _first_row(v, len(y)) for k, v in model_kwargs.items()}
        pick["y"], alt = y[:1], {**pick, "y": y[j : j + 1]}
        model: Any = getattr(owner, "model", None)  # probed in eval mode, then restored
        modes = [(m, m.training) for m in getattr(model, "modules", tuple)()]
        try:
            if modes:
                model.eval()
            with torch.no_grad():
                a, b = probe(pick), probe(alt)
        finally:
            for module, training in modes:  # parents first: each ends in its own mode, and a
                module.train(training)  # train() override runs (model.train() alone flips all)
        if not torch.equal(a, b):
            self.pending = False
            return
        if bool((a == 0).all()):
            self._undecided += 1
            if self._undecided >= _MAX_UNDECIDED:
                self.pending = False
                warn_user(
                    f"{type(owner).__name__}: the model's output stayed zero for distinct y in "
                    f"{_MAX_UNDECIDED} probes; could not verify that it reads y"
                )
            return
        raise ConfigurationError(
            f"{type(owner).__name__}: the model gives the same output for two distinct y values, "
            "so it ignores its conditioning; pass y into its forward, or pass "
            "check_conditioning=False"
        )
