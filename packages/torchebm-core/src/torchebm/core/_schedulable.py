r"""``Schedulable``: the mixin that gives samplers, losses and models scheduled hyper-parameters."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from torchebm.core._module import warn_user
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
    ``torch.load(..., weights_only=True)`` restores it; a saved schedule of another type
    than the module's (or of a name it lacks) is not loaded and warns (`UserWarning`)."""

    def _schedulers_dict(self) -> dict[str, BaseScheduler]:
        d = self.__dict__.get("schedulers")
        if d is None:  # made on first use: the mixin has no __init__
            self.schedulers = d = {}
        return d

    def register_scheduler(self, name: str, scheduler: BaseScheduler) -> None:
        """Store (or replace) the scheduler called ``name``."""
        if not isinstance(scheduler, BaseScheduler):
            got = type(scheduler).__name__
            raise TypeError(f"scheduler for {name!r} must be a BaseScheduler, got {got}")
        self.schedulers = {**self._schedulers_dict(), name: scheduler}  # a copy.copy's own dict

    def _register_param(
        self, name: str, value: Any, *, positive: bool = False, non_negative: bool = False
    ) -> None:
        """Install ``value``: a number, checked and wrapped in a ``ConstantScheduler``, or a
        scheduler, whose current and end values must not be negative where a number must not."""
        if isinstance(value, BaseScheduler):
            inner = getattr(value, "main_scheduler", value)  # a WarmupScheduler: its schedule's
            start, end = value.get_value(), getattr(inner, "end_value", None)  # end is the end
            if (positive or non_negative) and min(start, start if end is None else end) < 0:
                span = f"from {start} to {end}" if end is not None else f"starting at {start}"
                raise ConfigurationError(
                    f"{name} must not be negative, got a {type(value).__name__} {span}"
                )
            self.register_scheduler(name, value)
            return
        check = check_positive if positive else check_non_negative if non_negative else check_finite
        self.register_scheduler(name, ConstantScheduler(check(name, value)))

    def get_schedulers(self) -> dict[str, BaseScheduler]:
        """The ``name -> scheduler`` dict as it is now (registering a schedule replaces it)."""
        return self._schedulers_dict()

    def get_scheduled_value(self, name: str) -> float:
        """Value of scheduler ``name`` now (a bounded parameter's: finite, in [0, below))."""
        scheduler = self._schedulers_dict().get(name)
        if scheduler is None:
            raise KeyError(f"no scheduler named {name!r}; registered: {sorted(self.schedulers)}")
        value, param = scheduler.get_value(), getattr(type(self), name, None)
        top = getattr(param, "below", None) or math.inf
        if not 0 <= value < top and getattr(param, "bounded", False):
            got = f"{value} from its {type(scheduler).__name__} at step {scheduler.step_count}"
            rule = "finite and not negative" if top == math.inf else f"in [0, {top})"
            raise ConfigurationError(f"{name} must be {rule}, got {got}")
        return value

    def step_schedulers(self) -> None:
        """Step every scheduler of the module subtree once (one held twice too)."""
        for s in _subtree_schedulers(self):
            s.step()

    def reset_schedulers(self) -> None:
        """Reset every scheduler of every ``Schedulable`` in the module subtree."""
        for s in _subtree_schedulers(self):
            s.reset()

    # nn.Module extra-state hooks: scheduler state travels with state_dict().
    def get_extra_state(self) -> dict[str, Any]:
        items = self._schedulers_dict().items()
        saved = {n: {"type": type(s).__name__, "state": s.state_dict()} for n, s in items}
        return {"schedulers": saved}

    def set_extra_state(self, state: Any) -> None:
        saved = state.get("schedulers", {}) if isinstance(state, dict) else {}
        for name, entry in saved.items():
            current = self._schedulers_dict().get(name)
            if current is not None and type(current).__name__ == entry.get("type"):
                current.load_state_dict(entry["state"])
            else:  # another schedule (or none) under this name: this one stays, unloaded
                have = f"a {type(current).__name__}" if current is not None else "none"
                msg = f"{type(self).__name__}: the state_dict holds a {entry.get('type')} for "
                warn_user(f"{msg}{name!r}, this module has {have}: its state is not loaded")


class ScheduledParameter:
    r"""A scheduled hyper-parameter of a [`Schedulable`][torchebm.core.Schedulable] class.

    Reading ``obj.name`` returns the current value of the scheduler called ``name``;
    assigning a number checks it and installs a ``ConstantScheduler``, assigning a
    [`BaseScheduler`][torchebm.core.BaseScheduler] installs it. Write the attribute's
    docstring under the assignment.

    Args:
        positive: Numbers must be $> 0$ (a scheduler's start and end values $\ge 0$).
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
        self.bounded = positive or non_negative  # checked at each read: schedules too
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else obj.get_scheduled_value(self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        if self.below is not None:  # a scheduler: its current value
            now = value.get_value() if isinstance(value, BaseScheduler) else value
            if check_finite(self.name, now) >= self.below:
                low = "(0" if self.positive else "[0" if self.non_negative else "(-inf"
                rule = f"in {low}, {self.below}), got {value!r}"
                raise ConfigurationError(f"{self.name} must be {rule}")
        obj._register_param(
            self.name, value, positive=self.positive, non_negative=self.non_negative
        )


def _subtree_schedulers(root: Any) -> list[BaseScheduler]:
    """The schedulers of the `Schedulable` modules of `root`'s tree, each once: a module may
    sit twice in the tree, a scheduler may serve two parameters or modules."""
    found: dict[int, BaseScheduler] = {}
    for m in root.modules() if isinstance(root, nn.Module) else [root]:
        if isinstance(m, Schedulable):
            found.update((id(s), s) for s in m._schedulers_dict().values())
    return list(found.values())
