"""Scheduler value sequences pinned against API.md section 2.3 and their state round trip."""

import math

import pytest
import torch

from torchebm.core import (
    ConstantScheduler,
    CosineScheduler,
    ExponentialDecayScheduler,
    LinearScheduler,
    MultiStepScheduler,
    TemperatureScheduler,
    WarmupScheduler,
)


def seq(s, n):
    return [s.get_value()] + [s.step() for _ in range(n)]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: LinearScheduler(1.0, 0.0, 4), [1, 0.75, 0.5, 0.25, 0, 0]),
        (lambda: CosineScheduler(1.0, 0.0, 4), [1, 0.853553, 0.5, 0.146447, 0, 0]),
        (lambda: ExponentialDecayScheduler(1.0, 0.5, min_value=0.1), [1, 0.5, 0.25, 0.125, 0.1]),
        (lambda: MultiStepScheduler(1.0, [2, 4], 0.1), [1, 1, 0.1, 0.1, 0.01, 0.01]),
        (
            lambda: WarmupScheduler(LinearScheduler(1.0, 0.0, 4), 2, 0.1),
            [0.1, 0.55, 1.0, 0.75, 0.5, 0.25, 0.0],
        ),
        (
            lambda: TemperatureScheduler(0.16, tau_star=0.5, n_steps=4),
            [0, 0, 0, math.sqrt(0.08), 0.4, 0.4],
        ),
        (lambda: ConstantScheduler(0.3), [0.3, 0.3, 0.3]),
        # the floor holds at k = 0 too: max(min_value, start * r^k) for every k
        (lambda: ExponentialDecayScheduler(0.5, 0.9, min_value=1.0), [1.0, 1.0, 1.0]),
        # no warm-up steps: exactly the main schedule (it began at 0.1 * 1.0)
        (
            lambda: WarmupScheduler(LinearScheduler(1.0, 0.0, 4), 0, 0.1),
            [1.0, 0.75, 0.5, 0.25, 0.0, 0.0],
        ),
    ],
)
def test_sequences_match_reference(make, expected):
    got = seq(make(), len(expected) - 1)
    assert got == pytest.approx(expected, abs=1e-6)


def test_reset_restarts_sequence():
    s = WarmupScheduler(CosineScheduler(1.0, 0.0, 3), 1, 0.5)
    first = seq(s, 5)
    s.reset()
    assert seq(s, 5) == pytest.approx(first)


def test_temperature_unsquared_and_tail():
    s = TemperatureScheduler(0.2, tau_star=0.0, n_steps=2, t_end=2.0, sqrt=False)
    assert seq(s, 3) == pytest.approx([0.0, 0.2, 0.2, 0.2])
    assert s.epsilon_at(0.5) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "make, exc, word",
    [
        (lambda: LinearScheduler(1.0, 0.0, 0), ValueError, "n_steps"),
        (lambda: CosineScheduler(1.0, 0.0, -3), ValueError, "n_steps"),
        (lambda: ExponentialDecayScheduler(1.0, 1.5), ValueError, "decay_rate"),
        (lambda: ExponentialDecayScheduler(1.0, 0.5, min_value=-1), ValueError, "min_value"),
        (lambda: MultiStepScheduler(1.0, [3, 2]), ValueError, "milestones"),
        (lambda: MultiStepScheduler(1.0, [0, 2]), ValueError, "milestones"),
        (lambda: MultiStepScheduler(1.0, [2, 0]), ValueError, r"milestones\[1\] must be >= 1"),
        (lambda: TemperatureScheduler(-1.0), ValueError, "epsilon_max"),
        (lambda: TemperatureScheduler(1.0, tau_star=1.0), ValueError, "tau_star"),
        (lambda: TemperatureScheduler(1.0, t_start=1.0, t_end=0.5), ValueError, "t_end"),
        (lambda: ConstantScheduler("0.1"), TypeError, "start_value"),
        (lambda: ConstantScheduler(float("nan")), ValueError, "start_value"),
        (lambda: WarmupScheduler(0.1, 3), TypeError, "main_scheduler"),
        (lambda: LinearScheduler(1.0, 0.0, 2.5), TypeError, "n_steps"),
    ],
)
def test_bad_arguments_name_the_argument(make, exc, word):
    with pytest.raises(exc, match=word):
        make()


def test_seed_legacy_keywords_warn_once_and_work():
    from torchebm.core import _module

    _module._WARNED.discard("LinearScheduler.legacy_kwargs")
    with pytest.warns(DeprecationWarning, match="start_value"):
        s = LinearScheduler(initial_value=0.05, final_value=0.03, total_steps=100)
    assert s.step() == pytest.approx(0.05 - 0.02 / 100)
    with pytest.raises(TypeError, match="not both"):
        LinearScheduler(1.0, initial_value=2.0, end_value=0.0, n_steps=3)
    with pytest.raises(TypeError, match="missing"):
        LinearScheduler(1.0)


def test_state_dict_round_trip_through_torch_save(tmp_path):
    s = WarmupScheduler(LinearScheduler(1.0, 0.0, 4), 2, 0.1)
    for _ in range(4):
        s.step()
    path = tmp_path / "s.pt"
    torch.save(s.state_dict(), path)
    fresh = WarmupScheduler(LinearScheduler(1.0, 0.0, 4), 2, 0.1)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert [fresh.step() for _ in range(3)] == pytest.approx([s.step() for _ in range(3)])


# ------------------------------------------------------------------ the public extension hook
HALVING = [1.0, 0.5, 0.25, 0.125]  # start_value / 2**k after k steps, from 1.0


@pytest.mark.parametrize(
    "hook, other", [("compute_value", "_compute_value"), ("_compute_value", "compute_value")]
)
def test_a_schedule_implements_compute_value_or_its_torchebm_08_name(hook, other):
    """The public hook, or the 0.8 name a 0.8.9 subclass implements; each answers to both."""
    from torchebm.core import BaseScheduler

    def halving(self):
        return self.start_value * 0.5**self.step_count

    s = type("Halving", (BaseScheduler,), {hook: halving})(1.0)
    assert seq(s, 3) == HALVING
    assert getattr(s, other)() == 0.125
    s.reset()
    assert s.get_value() == 1.0 and s.step_count == 0


def test_a_schedule_implementing_neither_is_rejected_at_construction():
    from torchebm.core import BaseScheduler

    class Nothing(BaseScheduler):
        pass

    with pytest.raises(TypeError, match=r"Nothing must implement compute_value\(\)"):
        Nothing(1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LinearScheduler(1.0, 0.0, 4),
        lambda: CosineScheduler(1.0, 0.0, 4),
        lambda: ExponentialDecayScheduler(1.0, 0.5),
        lambda: MultiStepScheduler(1.0, [2], 0.1),
        lambda: WarmupScheduler(LinearScheduler(1.0, 0.0, 4), 2, 0.1),
        lambda: TemperatureScheduler(0.2, n_steps=4),
        lambda: ConstantScheduler(0.3),
    ],
)
def test_library_schedules_answer_both_names_alike(make):
    a, b = make(), make()
    for _ in range(5):
        a.step_count += 1
        b.step_count += 1
        if not isinstance(a, WarmupScheduler):  # its value steps its main schedule
            assert a.compute_value() == b._compute_value()


def test_a_torchebm_08_override_of_a_library_schedule_is_still_called_by_step():
    """0.8.9 code subclassing a built-in schedule overrides ``_compute_value``: ``step()``
    must call the override, not the built-in ``compute_value`` under it."""

    class Doubled(LinearScheduler):
        def _compute_value(self):
            return 2 * super()._compute_value()

    assert seq(Doubled(1.0, 0.0, 4), 2) == [1.0, 1.5, 1.0]


def test_a_scheduled_hyper_parameter_is_checked_like_a_number():
    # a scheduler installed where a number must be positive / non-negative / below a bound
    # is checked on its current and end values, not installed blindly
    from torchebm.core import Schedulable, ScheduledParameter, TorchEBMModule
    from torchebm.core.errors import ConfigurationError

    class Holder(Schedulable, TorchEBMModule):
        eps = ScheduledParameter(non_negative=True, below=0.5)

        def __init__(self, step_size, eps=0.0):
            super().__init__()
            self._register_param("step_size", step_size, positive=True)
            self.eps = eps

    negative_end = LinearScheduler(0.1, -0.2, n_steps=4)
    warmed = WarmupScheduler(LinearScheduler(0.1, -0.2, n_steps=4), warmup_steps=5)
    for bad in (negative_end, ConstantScheduler(-1.0), warmed):  # a warmup's end: its schedule's
        with pytest.raises(ConfigurationError, match=r"step_size must not be negative"):
            Holder(bad)
    with pytest.raises(ConfigurationError, match=r"eps must be in \[0, 0.5\)"):
        Holder(0.1, eps=ConstantScheduler(0.9))
    # annealing to 0 stays allowed (a step of 0 is no step), and the values are the schedule's
    h = Holder(LinearScheduler(0.1, 0.0, n_steps=2), eps=ConstantScheduler(0.2))
    assert h.get_scheduled_value("step_size") == pytest.approx(0.1) and h.eps == 0.2


def test_a_bounded_scheduled_value_is_checked_when_it_is_read():
    # the registration check sees the start and end values only: a schedule that crosses
    # zero in between (MultiStepScheduler with gamma < 0, a user schedule) or turns NaN made
    # Langevin/GD samplers climb the energy silently
    from torchebm.core import BaseScheduler, Schedulable, ScheduledParameter, TorchEBMModule
    from torchebm.core.errors import ConfigurationError

    class Flip(BaseScheduler):
        def compute_value(self):
            return -self.start_value if self.step_count >= 2 else self.start_value

    class Holder(Schedulable, TorchEBMModule):
        step_size = ScheduledParameter(positive=True)
        noise = ScheduledParameter(non_negative=True)
        shift = ScheduledParameter()  # unbounded: any finite or signed value passes

        def __init__(self, step_size, noise=0.0, shift=0.0):
            super().__init__()
            self.step_size, self.noise, self.shift = step_size, noise, shift

    h = Holder(Flip(0.1), shift=Flip(1.0))
    assert h.step_size == 0.1
    h.step_schedulers()
    assert h.step_size == 0.1
    h.step_schedulers()
    with pytest.raises(ConfigurationError, match=r"step_size must be finite and not negative, "
                       r"got -0.1 from its Flip at step 2"):  # fmt: skip
        h.get_scheduled_value("step_size")
    assert h.shift == -1.0

    class TurnsNaN(BaseScheduler):
        def compute_value(self):
            return float("nan") if self.step_count else self.start_value

    h = Holder(0.1, noise=TurnsNaN(0.5))
    assert h.noise == 0.5
    h.step_schedulers()
    with pytest.raises(ConfigurationError, match="noise must be finite and not negative, got nan"):
        _ = h.noise
    h = Holder(LinearScheduler(0.1, 0.0, n_steps=1))  # annealing to 0 stays allowed
    h.step_schedulers()
    assert h.step_size == 0.0


def test_a_scheduled_value_with_an_upper_bound_is_checked_when_it_is_read():
    # before: train_eps = LinearScheduler(0.1, 0.9, 4) was accepted and failed two steps later
    # with "eps must be in [0, 0.5)" from deep inside the time sampler
    from torchebm.core import Schedulable, ScheduledParameter, TorchEBMModule
    from torchebm.core.errors import ConfigurationError

    class Holder(Schedulable, TorchEBMModule):
        eps = ScheduledParameter(non_negative=True, below=0.5)
        rate = ScheduledParameter(positive=True, below=1.0)

        def __init__(self, eps, rate=0.5):
            super().__init__()
            self.eps, self.rate = eps, rate

    h = Holder(LinearScheduler(0.1, 0.9, n_steps=4))
    values = []
    with pytest.raises(ConfigurationError, match=r"eps must be in \[0, 0.5\), got 0.5 from its "
                       r"LinearScheduler at step 2"):  # fmt: skip
        for _ in range(4):
            values.append(h.eps)
            h.step_schedulers()
    assert values == pytest.approx([0.1, 0.3])
    with pytest.raises(ConfigurationError, match=r"rate must be in \(0, 1.0\), got 1.5"):
        Holder(0.1, rate=1.5)  # a number names the bound its parameter has


def test_floor_and_no_warmup_survive_reset():
    for s in (
        ExponentialDecayScheduler(0.5, 0.9, min_value=1.0),
        WarmupScheduler(LinearScheduler(1.0, 0.0, 4), 0, 0.1),
    ):
        first = seq(s, 4)
        s.reset()
        assert seq(s, 4) == first and first[0] == 1.0


def test_multistep_milestones_are_plain_ints_in_the_state(tmp_path):
    # numpy milestones were kept as given and made the state fail weights-only loading
    np = pytest.importorskip("numpy")
    s = MultiStepScheduler(1.0, np.arange(2, 6, 2), gamma=np.float32(0.5))
    assert s.milestones == [2, 4] and all(type(m) is int for m in s.milestones)
    torch.save(s.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["milestones"] == [2, 4] and seq(s, 4)[-1] == 0.25


def test_a_saved_schedule_of_another_type_is_not_loaded_and_warns(recwarn):
    # a LinearScheduler's state loaded into a sampler with a constant step size was dropped
    # without a word: the checkpoint's schedule silently did not come back
    from torchebm.core import BaseSampler, HarmonicModel, ScheduledParameter

    class Walk(BaseSampler):
        step_size = ScheduledParameter(positive=True)

        def __init__(self, step_size):
            super().__init__(HarmonicModel())
            self.step_size = step_size

        def step(self, state, ctx):
            return state

    saved = Walk(LinearScheduler(0.1, 0.0, 10))
    saved.step_schedulers()
    state = saved.state_dict()
    same = Walk(LinearScheduler(0.1, 0.0, 10))
    same.load_state_dict(state)
    assert same.step_size == pytest.approx(0.09) and not recwarn.list  # same type: loaded
    other = Walk(0.5)
    with pytest.warns(UserWarning, match="holds a LinearScheduler for 'step_size'.*Constant"):
        other.load_state_dict(state, strict=True)
    assert other.step_size == 0.5  # its own schedule stays


def test_a_scheduler_shared_by_two_parameters_or_modules_steps_once_per_step():
    """One scheduler object behind two parameters (here of two modules of one tree) is
    stepped once per `step_schedulers()` and once per sampling step: it was stepped once per
    holder, so a 10-step `sample()` ran the schedule 20 steps ahead."""
    from torchebm.core import BaseSampler, Schedulable, ScheduledParameter, TorchEBMModule

    class Holder(Schedulable, TorchEBMModule):
        scale = ScheduledParameter(positive=True)

    class Walk(BaseSampler):  # x <- x - step_size (deterministic: the schedule shows in x)
        step_size = ScheduledParameter(positive=True)

        def step(self, state, ctx):
            state.x = state.x - self.step_size
            return state

    shared = LinearScheduler(1.0, 0.0, n_steps=100)
    walk = Walk(torch.nn.Identity(), dtype=torch.float64)
    walk.step_size = shared
    walk.helper = Holder()
    walk.helper.scale = shared
    walk.step_schedulers()
    assert shared.step_count == 1
    walk.reset_schedulers()
    x = walk.sample(torch.zeros(1, 1, dtype=torch.float64), n_steps=10)
    assert shared.step_count == 10
    # steps of 1, 0.99, ..., 0.91 (the value read before each step's scheduler step)
    assert float(x) == pytest.approx(-sum(1.0 - k / 100 for k in range(10)), rel=1e-12)


@pytest.mark.parametrize("warmup", [0, 2])
def test_reading_a_warmup_schedule_does_not_advance_its_main_schedule(warmup):
    # compute_value() ("the value after step_count steps") stepped the main schedule after
    # warm-up: two reads moved Warmup(Linear(1, 0, 4), 2, .1) from .75 to .5 and .25, and
    # the next step() returned 0 where the closed form gives .5
    s = WarmupScheduler(LinearScheduler(1.0, 0.0, 4), warmup, 0.1)
    closed = [max(0.0, 1.0 - 0.25 * (k - warmup)) for k in range(warmup, warmup + 5)]
    for _ in range(warmup):
        s.step()
    for k, expected in enumerate(closed):
        assert [s.compute_value(), s.compute_value(), s.get_value()] == pytest.approx(
            [expected] * 3
        ), k
        if k + 1 < len(closed):
            assert s.step() == pytest.approx(closed[k + 1])
