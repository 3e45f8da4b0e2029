r"""Positional calls written for torchebm 0.8.9 whose arguments now land on another parameter.

0.8.9 placed ``regularization_strength`` third in `ScoreMatching` and fourth in
`SlicedScoreMatching`, and ``dtype`` eleventh in `ContrastiveDivergence` (eighth in
`BaseContrastiveDivergence`); this version put ``hutchinson_samples``,
``variance_reduction`` and ``init_noise_scale`` there. A value that can only be the 0.8.9
meaning is either reported with what changed or, for ``dtype``, accepted with one
`DeprecationWarning`.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

from torchebm.core import warn_once
from torchebm.core.errors import ConfigurationError

__all__ = ["check_hutchinson_samples", "check_variance_reduction", "split_dtype"]


def check_hutchinson_samples(value: Any, hessian_method: str) -> int:
    """``hutchinson_samples`` (``None``: 1), reported where it looks like 0.8.9's
    ``regularization_strength``: not an int, below 1, or given with ``"exact"``, which
    draws no probes (``ScoreMatching(model, "exact", 1)`` meant a regulariser of 1).

    Raises:
        TypeError: not an int.
        ValueError: an int below 1, or any value with ``hessian_method="exact"``.
    """
    if value is None:
        return 1
    hint = (
        "In torchebm 0.8.9 the third positional argument was regularization_strength; pass "
        f"regularization_strength={value!r} by keyword"
    )
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"ScoreMatching: hutchinson_samples must be an int, got {value!r}. {hint}")
    if value < 1:
        raise ConfigurationError(
            f"ScoreMatching: hutchinson_samples must be >= 1, got {value!r}. {hint}"
        )
    if hessian_method == "exact":
        raise ConfigurationError(
            f"ScoreMatching: hutchinson_samples={value!r} has no effect with "
            f"hessian_method='exact' (it draws no probes). {hint}"
        )
    return int(value)


def check_variance_reduction(value: Any) -> None:
    """`TypeError` for a ``variance_reduction`` that is a 0.8.9 ``regularization_strength``."""
    if not isinstance(value, bool):
        raise TypeError(
            f"SlicedScoreMatching: variance_reduction must be a bool, got {value!r}. In torchebm "
            "0.8.9 the fourth positional argument was regularization_strength; pass "
            f"regularization_strength={value!r} by keyword"
        )


def split_dtype(owner: str, init_noise_scale: Any, dtype: torch.dtype) -> tuple[Any, torch.dtype]:
    """``(init_noise_scale, dtype)``: a dtype passed in 0.8.9's position becomes ``dtype``."""
    if not isinstance(init_noise_scale, torch.dtype):
        return init_noise_scale, dtype
    warn_once(
        f"{owner}.positional_dtype",
        f"{owner}: passing dtype positionally where torchebm 0.8.9 took it is deprecated; "
        "that position is now init_noise_scale, pass dtype= by keyword",
        DeprecationWarning,
    )
    return 1.0, init_noise_scale
