r"""Parameter schedules: plain objects whose value follows a step counter (samplers and
losses read the value, then ``step()``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torchebm.core._module import check_bool, warn_once
from torchebm.core.errors import ConfigurationError, check_finite, check_int, check_non_negative

__all__ = [
    "BaseScheduler",
    "ConstantScheduler",
    "ExponentialDecayScheduler",
    "LinearScheduler",
    "CosineScheduler",
    "MultiStepScheduler",
    "WarmupScheduler",
    "TemperatureScheduler",
]


class BaseScheduler:
    r"""Base class of parameter schedules.

    State: ``start_value``, ``current_value`` and ``step_count`` (from 0). ``step()``
    advances and returns the new value, ``get_value()`` reads it, ``reset()`` rewinds.

    A schedule implements ``compute_value()`` (see Concepts, "Schedules"; a torchebm 0.8
    subclass implementing ``_compute_value()`` instead keeps working).

    Args:
        start_value: Value before the first ``step()``."""

    def __init__(self, start_value: float):
        cls, base = type(self), BaseScheduler
        if cls.compute_value is base.compute_value and cls._compute_value is base._compute_value:
            raise TypeError(f"{type(self).__name__} must implement compute_value()")
        self.start_value = check_finite("start_value", start_value)
        self.current_value = self.start_value
        self.step_count = 0

    def compute_value(self) -> float:
        """Value after ``self.step_count`` steps: the method a schedule implements."""
        return self._compute_value()  # a torchebm 0.8 subclass's implementation

    def _compute_value(self) -> float:
        """torchebm 0.8's name of [`compute_value`][torchebm.core.BaseScheduler.compute_value]."""
        return self.compute_value()

    def step(self) -> float:
        """Advance by one step and return the new value."""
        self.step_count += 1
        legacy = type(self)._compute_value is not BaseScheduler._compute_value  # a 0.8 override
        self.current_value = float(self._compute_value() if legacy else self.compute_value())
        return self.current_value

    def reset(self) -> None:
        """Return to ``start_value`` and step 0."""
        self.current_value = self.start_value
        self.step_count = 0

    def get_value(self) -> float:
        """Current value (no side effect)."""
        return self.current_value

    def state_dict(self) -> dict[str, Any]:
        """The attributes, nested schedulers as dicts: ``weights_only``-safe if a subclass's are."""
        return {
            k: (v.state_dict() if isinstance(v, BaseScheduler) else v)
            for k, v in self.__dict__.items()
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state produced by [`state_dict`][torchebm.core.BaseScheduler.state_dict]."""
        for k, v in state_dict.items():
            cur = self.__dict__.get(k)
            if isinstance(cur, BaseScheduler) and isinstance(v, dict):
                cur.load_state_dict(v)
            else:
                setattr(self, k, v)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(start_value={self.start_value}, step_count={self.step_count})"


class ConstantScheduler(BaseScheduler):
    """Constant value: ``start_value`` forever."""

    def compute_value(self) -> float:
        return self.start_value


class ExponentialDecayScheduler(BaseScheduler):
    r"""``max(min_value, start_value * decay_rate**k)`` after ``k`` steps.

    Args:
        start_value: Initial value.
        decay_rate: Multiplicative decay per step, in ``(0, 1]``.
        min_value: Floor, ``>= 0``."""

    def __init__(self, start_value: float, decay_rate: float, min_value: float = 0.0):
        super().__init__(start_value)
        decay_rate = check_finite("decay_rate", decay_rate)
        if not 0.0 < decay_rate <= 1.0:
            raise ConfigurationError(f"decay_rate must be in (0, 1], got {decay_rate}")
        self.decay_rate = decay_rate
        self.min_value = check_non_negative("min_value", min_value)
        self.start_value = self.current_value = max(self.min_value, self.start_value)  # k = 0

    def compute_value(self) -> float:
        return max(self.min_value, self.start_value * self.decay_rate**self.step_count)


class _AnnealingScheduler(BaseScheduler):
    """``start_value`` to ``end_value`` in ``n_steps`` steps along a weight ``w(k / n)``."""

    def __init__(
        self,
        start_value: float | None = None,
        end_value: float | None = None,
        n_steps: int | None = None,
        *,
        initial_value: float | None = None,
        final_value: float | None = None,
        total_steps: int | None = None,
    ):
        given = (start_value, end_value, n_steps, initial_value, final_value, total_steps)
        start_value, end_value, n_steps = _legacy_linear_args(type(self).__name__, *given)
        super().__init__(start_value)
        self.end_value = check_finite("end_value", end_value)
        self.n_steps = check_int("n_steps", n_steps, minimum=1)

    def _annealed(self, weight: Callable[[float], float]) -> float:
        if self.step_count >= self.n_steps:
            return self.end_value
        w = weight(self.step_count / self.n_steps)
        return self.start_value + w * (self.end_value - self.start_value)


class LinearScheduler(_AnnealingScheduler):
    r"""Linear interpolation from ``start_value`` to ``end_value`` over ``n_steps`` steps.

    ``start + k (end - start) / n_steps`` for ``k < n_steps``, then ``end_value``. The older
    names ``initial_value``, ``final_value``, ``total_steps`` warn (``DeprecationWarning``).

    Example:
        >>> s = LinearScheduler(1.0, 0.0, 4)
        >>> [s.step() for _ in range(5)]
        [0.75, 0.5, 0.25, 0.0, 0.0]
    """

    def compute_value(self) -> float:
        return self._annealed(float)  # w(f) = f


def _legacy_linear_args(owner, start, end, n, initial, final, total):
    args = {"start_value": start, "end_value": end, "n_steps": n}
    legacy = {"initial_value": initial, "final_value": final, "total_steps": total}
    if any(v is not None for v in legacy.values()):
        warn_once(
            f"{owner}.legacy_kwargs",
            f"{owner}(initial_value=, final_value=, total_steps=) is deprecated; use "
            f"{owner}(start_value=, end_value=, n_steps=)",
        )
        for new, (old, value) in zip(list(args), legacy.items()):
            if value is not None:
                if args[new] is not None:
                    raise TypeError(f"{owner}: pass {new} or {old}, not both")
                args[new] = value
    missing = [k for k, v in args.items() if v is None]
    if missing:
        raise TypeError(f"{owner} missing required argument(s): {', '.join(missing)}")
    return args["start_value"], args["end_value"], args["n_steps"]


class CosineScheduler(_AnnealingScheduler):
    r"""Cosine annealing: ``end + (start - end) * (1 + cos(pi k / n)) / 2``, then ``end_value``.

    Example:
        >>> s = CosineScheduler(1.0, 0.0, 4)
        >>> round(s.step(), 4)
        0.8536
    """

    def compute_value(self) -> float:
        return self._annealed(lambda f: 0.5 * (1.0 - math.cos(math.pi * f)))


class MultiStepScheduler(BaseScheduler):
    r"""``start_value * gamma**m`` where ``m`` counts the milestones already reached.

    Args:
        start_value: Initial value.
        milestones: Strictly increasing positive step indices.
        gamma: Factor applied at each milestone."""

    def __init__(self, start_value: float, milestones: list[int], gamma: float = 0.1):
        super().__init__(start_value)
        milestones = [check_int(f"milestones[{i}]", m, minimum=1) for i, m in enumerate(milestones)]
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ConfigurationError(f"milestones must be strictly increasing, got {milestones}")
        self.milestones = milestones
        self.gamma = check_finite("gamma", gamma)

    def compute_value(self) -> float:
        passed = sum(1 for m in self.milestones if self.step_count >= m)
        return self.start_value * self.gamma**passed


class WarmupScheduler(BaseScheduler):
    r"""Linear warm-up from ``main.start_value * warmup_init_factor`` to ``main.start_value``.

    After ``warmup_steps`` steps every ``step()`` also steps ``main_scheduler`` and returns
    its value. Sequence for ``Warmup(Linear(1, 0, 4), 2, 0.1)``: .1, .55, 1, .75, .5, .25, 0.

    Args:
        main_scheduler: Schedule that takes over after warm-up.
        warmup_steps: Number of warm-up steps (0 goes straight to ``main_scheduler``).
        warmup_init_factor: Fraction of the main start value to begin at."""

    def __init__(
        self, main_scheduler: BaseScheduler, warmup_steps: int, warmup_init_factor: float = 0.01
    ):
        if not isinstance(main_scheduler, BaseScheduler):
            raise TypeError(
                f"main_scheduler must be a BaseScheduler, got {type(main_scheduler).__name__}"
            )
        self.main_scheduler = main_scheduler
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.warmup_init_factor = check_finite("warmup_init_factor", warmup_init_factor)
        main_scheduler.reset()
        factor = self.warmup_init_factor if self.warmup_steps else 1.0  # 0: main's start first
        super().__init__(main_scheduler.start_value * factor)

    def compute_value(self) -> float:
        if self.step_count >= self.warmup_steps:  # the main schedule, which step() advances
            return self.main_scheduler.get_value()
        frac, target = self.step_count / self.warmup_steps, self.main_scheduler.start_value
        return self.start_value + frac * (target - self.start_value)

    def step(self) -> float:
        if self.step_count >= self.warmup_steps:  # compute_value reads main, never steps it
            self.main_scheduler.step()
        return super().step()

    def reset(self) -> None:
        super().reset()
        self.main_scheduler.reset()


class TemperatureScheduler(BaseScheduler):
    r"""Energy-Matching temperature ramp for Langevin ``noise_scale``.

    Virtual time $t = t_s + (t_e - t_s)\min(k, n)/n$; $\epsilon(t) = 0$ for $t < \tau^*$,
    $\epsilon_{max}(t - \tau^*)/(1 - \tau^*)$ for $\tau^* \le t < 1$, $\epsilon_{max}$
    after. Returns $\sqrt{\epsilon}$ when ``sqrt`` (a noise scale), else $\epsilon$.

    References:
        Balcerak et al., "Energy Matching", 2025."""

    def __init__(
        self,
        epsilon_max: float,
        tau_star: float = 0.8,
        n_steps: int = 200,
        t_start: float = 0.0,
        t_end: float = 1.0,
        sqrt: bool = True,
    ):
        self.epsilon_max = check_non_negative("epsilon_max", epsilon_max)
        self.tau_star = check_finite("tau_star", tau_star)
        self.n_steps = check_int("n_steps", n_steps, minimum=1)
        self.t_start = check_finite("t_start", t_start)
        self.t_end = check_finite("t_end", t_end)
        self.sqrt = check_bool("sqrt", sqrt)
        if not 0.0 <= self.tau_star < 1.0:
            raise ConfigurationError(f"tau_star must be in [0, 1), got {tau_star}")
        if self.t_end < self.t_start:
            raise ConfigurationError(f"t_end must be >= t_start, got {t_start=}, {t_end=}")
        super().__init__(self._value_at_step(0))

    def epsilon_at(self, t: float) -> float:
        """Temperature $\\epsilon(t)$ at virtual time ``t`` (never square-rooted)."""
        if t < self.tau_star:
            return 0.0
        if t < 1.0:
            return self.epsilon_max * (t - self.tau_star) / (1.0 - self.tau_star)
        return self.epsilon_max

    def _value_at_step(self, k: int) -> float:
        t = self.t_start + (self.t_end - self.t_start) * min(k, self.n_steps) / self.n_steps
        eps = self.epsilon_at(t)
        return math.sqrt(eps) if self.sqrt else eps

    def compute_value(self) -> float:
        return self._value_at_step(self.step_count)
