"""The `inference_mode=` option of the integrators' `integrate`, implemented once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

from torchebm.core._module import check_bool

__all__ = ["inference_mode_option"]

P = ParamSpec("P")
R = TypeVar("R")


def inference_mode_option(method: Callable[P, R]) -> Callable[P, R]:
    """Give `method` the keyword-only option `inference_mode: bool = False`.

    A call with a true `inference_mode` runs `method` under `torch.inference_mode()`;
    the option is consumed here, so `method` itself always sees the default `False`. The
    decorated method declares and documents the parameter (its public signature), and
    `functools.wraps` keeps that signature for `inspect.signature`.

    Args:
        method: An `integrate` method with a keyword-only `inference_mode` parameter.

    Returns:
        The wrapped method.

    Example:
        >>> class Demo:
        ...     @inference_mode_option
        ...     def integrate(self, x, *, inference_mode=False):
        ...         return torch.is_inference_mode_enabled()
        >>> Demo().integrate(1, inference_mode=True), Demo().integrate(1)
        (True, False)
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if check_bool("inference_mode", kwargs.pop("inference_mode", False)):
            with torch.inference_mode():
                return method(*args, **kwargs)
        return method(*args, **kwargs)

    return wrapper
