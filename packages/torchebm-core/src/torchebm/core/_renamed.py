r"""`renamed_kwargs`: keep a parameter's old (torchebm 0.8.x) spelling working with one warning."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from torchebm.core._module import warn_once

__all__ = ["renamed_kwargs"]

F = TypeVar("F", bound=Callable[..., Any])


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Decorator: accept each old keyword ``old=`` as the new one, with one `DeprecationWarning`.

    Passing both spellings is a `TypeError`; the mapping is kept as ``__renamed_kwargs__``.

    Args:
        **renames: ``old_name="new_name"`` pairs.

    Example:
        >>> @renamed_kwargs(t="tensor")
        ... def broadcast(tensor, src=0): ...
        >>> broadcast(t=1)  # DeprecationWarning: t= is now tensor=
    """

    def decorate(fn: F) -> F:
        name = getattr(fn, "__qualname__", repr(fn))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        both = f"{name}() got both {old}= (its torchebm 0.8 name) and {new}="
                        raise TypeError(f"{both}; pass only {new}=")
                    message = f"{name}({old}=...) is deprecated; the parameter is now {new}="
                    warn_once(f"renamed:{fn.__module__}.{name}.{old}", message)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        wrapper.__renamed_kwargs__ = dict(renames)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
