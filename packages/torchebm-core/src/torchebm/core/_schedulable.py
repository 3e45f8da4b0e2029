r"""``Schedulable``: the mixin that gives samplers, losses and models scheduled hyper-parameters."""

from __future__ import annotations

from typing import Any

from torch import nn

from torchebm.core._schedulers import BaseScheduler, ConstantScheduler
from torchebm.core.errors import (
    ConfigurationError,
    check_finite,
    check_non_negative,
    check_positive,
)

__all__ = ["Schedulable", "ScheduledParameter"]


class Schedulable:
    r"""Mixin holding named [`BaseScheduler`][torchebm.core.BaseScheduler] objects (``self.schedulers``).

    Put it before the ``nn.Module`` base in the MRO. Hyper-parameters are exposed as
    [`ScheduledParameter`][torchebm.core.ScheduledParameter] class attributes: reading one
    returns ``get_scheduled_value(name)``, assigning a float installs a
    [`ConstantScheduler`][torchebm.core.ConstantScheduler], assigning a scheduler installs it.

    Scheduler state (step counters, current values) is saved in the module's
    ``state_dict`` through ``nn.Module``'s extra-state hook, as plain Python values, so
    ``torch.load(..., weights_only=True)`` restores it.
    """

    def _schedulers_dict(self) -> dict[str, BaseScheduler]:
        d = self.__dict__.get("schedulers")
        if d is None:
            d = {}
            self.schedulers = d
        return d

    def register_scheduler(self, name: str, scheduler: BaseScheduler) -> None:
        """Store (or replace) the scheduler called ``name``."""
        if not isinstance(scheduler, BaseScheduler):
            raise TypeError(
                f"scheduler for {name!r} must be a BaseScheduler, got {type(scheduler).__name__}"
            )
        self._schedulers_dict()[name] = scheduler

    def _register_param(
        self, name: str, value: Any, *, positive: bool = False, non_negative: bool = False
    ) -> None:
        """Install ``value`` (a scheduler, or a number wrapped in a ``ConstantScheduler``)."""
        if isinstance(value, BaseScheduler):
            self.register_scheduler(name, value)
            return
        if positive:
            v = check_positive(name, value)
        elif non_negative:
            v = check_non_negative(name, value)
        else:
            v = check_finite(name, value)
        self.register_scheduler(name, ConstantScheduler(v))

    def get_schedulers(self) -> dict[str, BaseScheduler]:
        """The ``name -> scheduler`` dict."""
        return self._schedulers_dict()

    def get_scheduled_value(self, name: str) -> float:
        """Current value of scheduler ``name`` (``KeyError`` if unknown)."""
        try:
            return self._schedulers_dict()[name].get_value()
        except KeyError:
            raise KeyError(
                f"no scheduler named {name!r}; registered: {sorted(self._schedulers_dict())}"
            ) from None

    def step_schedulers(self) -> None:
        """Step every scheduler of every ``Schedulable`` in the module subtree once."""
        for m in _schedulable_subtree(self):
            for s in m._schedulers_dict().values():
                s.step()

    def reset_schedulers(self) -> None:
        """Reset every scheduler of every ``Schedulable`` in the module subtree."""
        for m in _schedulable_subtree(self):
            for s in m._schedulers_dict().values():
                s.reset()

    # nn.Module extra-state hooks: scheduler state travels with state_dict().
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "schedulers": {
                name: {"type": type(s).__name__, "state": s.state_dict()}
                for name, s in self._schedulers_dict().items()
            }
        }

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict):
            return
        for name, entry in state.get("schedulers", {}).items():
            current = self._schedulers_dict().get(name)
            if current is not None and type(current).__name__ == entry.get("type"):
                current.load_state_dict(entry["state"])


class ScheduledParameter:
    r"""A scheduled hyper-parameter of a [`Schedulable`][torchebm.core.Schedulable] class.

    Reading ``obj.name`` returns the current value of the scheduler called ``name``;
    assigning a number checks it and installs a ``ConstantScheduler``, assigning a
    [`BaseScheduler`][torchebm.core.BaseScheduler] installs it. Write the attribute's
    docstring under the assignment.

    Args:
        positive: Numbers must be $> 0$.
        non_negative: Numbers must be $\ge 0$.
        below: Numbers must also be $<$ ``below`` (``ConfigurationError`` otherwise).

    Example:
        >>> from torchebm.core import BaseSampler, ScheduledParameter
        >>> class MySampler(BaseSampler):  # doctest: +SKIP
        ...     step_size = ScheduledParameter(positive=True)
        ...     "Current step size (assign a float or a scheduler)."
    """

    def __init__(
        self, *, positive: bool = False, non_negative: bool = False, below: float | None = None
    ):
        self.positive, self.non_negative, self.below = positive, non_negative, below
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else obj.get_scheduled_value(self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        if self.below is not None and not isinstance(value, BaseScheduler):
            if check_finite(self.name, value) >= self.below:
                low = "[0, " if self.non_negative else "(-inf, "
                raise ConfigurationError(
                    f"{self.name} must be in {low}{self.below}), got {value!r}"
                )
        obj._register_param(
            self.name, value, positive=self.positive, non_negative=self.non_negative
        )


def _schedulable_subtree(root: Any) -> list[Any]:
    """The `Schedulable` modules of `root`'s tree, each once (`modules()` skips repeats)."""
    if isinstance(root, nn.Module):
        return [m for m in root.modules() if isinstance(m, Schedulable)]
    return [root]
