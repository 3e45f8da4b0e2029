"""Schedules against the closed forms of spec/API.md 2.3, away from the default arguments.

Each expected sequence is computed here from the written-out formula (not by the library):
a time window that starts after 0 and ends before 1, steps past ``n_steps``, and a main
schedule that was already stepped before it was wrapped in a warm-up.
"""

import math

import pytest

from torchebm.core import LinearScheduler, TemperatureScheduler, WarmupScheduler


def values(s, n):
    return [s.get_value()] + [s.step() for _ in range(n)]


def temperature(k, eps_max, tau, n, t0, t1):
    t = t0 + (t1 - t0) * min(k, n) / n
    if t < tau:
        return 0.0
    return eps_max * (t - tau) / (1 - tau) if t < 1 else eps_max


@pytest.mark.parametrize("sqrt", [False, True])
@pytest.mark.parametrize("t0, t1", [(0.2, 0.9), (0.35, 1.4)])
def test_temperature_over_a_shifted_time_window_and_past_its_last_step(t0, t1, sqrt):
    eps_max, tau, n = 0.2, 0.3, 5
    s = TemperatureScheduler(eps_max, tau_star=tau, n_steps=n, t_start=t0, t_end=t1, sqrt=sqrt)
    want = [temperature(k, eps_max, tau, n, t0, t1) for k in range(n + 4)]
    want = [math.sqrt(e) for e in want] if sqrt else want
    assert values(s, n + 3) == pytest.approx(want, abs=1e-12)
    assert s.epsilon_at(0.65) == pytest.approx(eps_max * 0.35 / 0.7, abs=1e-12)
    assert [s.epsilon_at(t) for t in (0.0, 0.29, 0.3)] == [0.0, 0.0, 0.0]  # zero up to tau*


def test_warmup_restarts_a_main_schedule_that_was_already_stepped():
    main = LinearScheduler(2.0, 0.0, 4)
    for _ in range(3):
        main.step()
    s = WarmupScheduler(main, 2, 0.1)
    # warm-up 0.2 -> 2.0 in 2 steps, then main from its first step: 2 - 2k/4
    assert values(s, 7) == pytest.approx([0.2, 1.1, 2.0, 1.5, 1.0, 0.5, 0.0, 0.0], abs=1e-12)
