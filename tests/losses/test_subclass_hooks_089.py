"""Subclasses written for torchebm 0.8.9 that override the losses' public hooks: the override
is called where 0.8.9 called it (never ignored in silence), with 0.8.9's signatures."""

from __future__ import annotations

import pytest
import torch
from _support.hooks_089 import assert_warns_when_defined
from _support.losses import Quadratic, TinyLangevin

from torchebm.core.errors import ConfigurationError
from torchebm.flows import EnergyMatchingLoss, EquilibriumMatchingLoss
from torchebm.losses import (
    BaseScoreMatching,
    ContrastiveDivergence,
    DenoisingScoreMatching,
    FlowMatchingLoss,
    ScoreMatching,
    SlicedScoreMatching,
)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_get_start_points_override_starts_the_chains():
    """Short-run CD from a start of the user's (Nijkamp et al. 2019): with a tiny step the
    negatives stay at the overridden start, not at the data."""

    class FromFifty(ContrastiveDivergence):
        calls = 0

        def get_start_points(self, x, generator=None):
            type(self).calls += 1
            return torch.full_like(x, 50.0)

    model = Quadratic(w=1.0)
    loss = FromFifty(model, TinyLangevin(model, step_size=1e-6, noise_scale=0.0), k_steps=2)
    _, negatives = loss(torch.randn(8, 2, generator=gen(0)))
    assert FromFifty.calls == 1
    # two steps of x - h w x from 50: 50 (1 - 1e-6)^2
    torch.testing.assert_close(negatives, torch.full((8, 2), 50.0 * (1 - 1e-6) ** 2))


def test_update_buffer_with_0_8_9_signature_is_called_and_fills_the_buffer():
    class OneArgument(ContrastiveDivergence):
        seen = []

        def update_buffer(self, samples):  # 0.8.9: no ages
            type(self).seen.append(samples.clone())
            super().update_buffer(samples)

    model = Quadratic(w=1.0)
    loss = OneArgument(
        model, TinyLangevin(model), k_steps=3, persistent=True, buffer_size=8, init_steps=0,
        new_sample_ratio=0.0,
    )  # fmt: skip
    _, negatives = loss(torch.randn(8, 2, generator=gen(1)), generator=gen(2))
    assert len(OneArgument.seen) == 1
    torch.testing.assert_close(OneArgument.seen[0], negatives)
    # a batch as large as the buffer replaces it, with the default ages (k_steps)
    torch.testing.assert_close(loss.replay_buffer, negatives)
    assert loss.buffer_age.tolist() == [3] * 8


def test_initialize_buffer_with_0_8_9_signature_is_called():
    class OwnInit(ContrastiveDivergence):
        calls = 0

        def initialize_buffer(
            self, data_shape_no_batch, buffer_chunk_size=1024, init_noise_scale=0.01,
            generator=None,
        ):  # fmt: skip
            type(self).calls += 1
            return super().initialize_buffer(
                data_shape_no_batch, buffer_chunk_size, init_noise_scale, generator
            )

    model = Quadratic(w=1.0)
    loss = OwnInit(
        model, TinyLangevin(model), k_steps=1, persistent=True, buffer_size=4000, init_steps=0
    )
    loss(torch.randn(8, 2, generator=gen(3)), generator=gen(4))
    assert OwnInit.calls == 1
    # the override's init_noise_scale=0.01 made the buffer (rows not yet overwritten):
    # std 0.01 within 5 standard errors (0.01 / sqrt(2 n)) of 7,984 draws
    rest = loss.replay_buffer[8:]
    assert abs(rest.std().item() - 0.01) < 5 * 0.01 / (2 * rest.numel()) ** 0.5


class _Scaled(Quadratic):
    """``E = scale w |x|^2 / 2``: a conditioning keyword that the burn-in must see too."""

    def forward(self, x, scale=1.0):
        return scale * super().forward(x)


def _pcd_run(cls, calls=3, **kwargs):
    """Three persistent CD calls under the conditioning ``scale=0.5``: losses and ages."""
    model = _Scaled(w=1.0)
    loss = cls(
        model, TinyLangevin(model, step_size=0.05), k_steps=3, persistent=True, buffer_size=16,
        init_steps=5, **kwargs,
    )  # fmt: skip
    g, out = gen(10), []
    for _ in range(calls):
        value, _ = loss(torch.randn(4, 2, generator=g), model_kwargs={"scale": 0.5}, generator=g)
        out.append(value.detach())
    return loss, torch.stack(out)


def test_a_pass_through_get_start_points_changes_nothing():
    """An override that returns ``super().get_start_points(...)`` (to log, say): the same
    losses, buffer and chain ages as without it (the burn-in under the call's conditioning)."""

    class PassThrough(ContrastiveDivergence):
        def get_start_points(self, x, generator=None):
            return super().get_start_points(x, generator)

    base, expected = _pcd_run(ContrastiveDivergence)
    loss, got = _pcd_run(PassThrough)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(loss.replay_buffer, base.replay_buffer, rtol=0, atol=0)
    assert loss.buffer_age.tolist() == base.buffer_age.tolist()
    with pytest.raises(ConfigurationError, match="conditioning other than"):
        loss(torch.randn(4, 2, generator=gen(11)), model_kwargs={"scale": 2.0})


def test_initialize_buffer_written_like_0_8_9_without_super():
    """0.8.9's own body: it sets ``replay_buffer``, zeroes the pointer and sets
    ``buffer_initialized = True``; the loss then keeps ages (``init_steps`` for its chains)."""

    class Own(ContrastiveDivergence):
        def initialize_buffer(
            self, data_shape_no_batch, buffer_chunk_size=1024, init_noise_scale=0.01,
            generator=None,
        ):  # fmt: skip
            shape = (self.buffer_size, *data_shape_no_batch)
            self.replay_buffer = torch.randn(shape, generator=generator) * init_noise_scale
            self.buffer_ptr.zero_()
            self.buffer_initialized = True
            return self.replay_buffer

    loss, values = _pcd_run(Own, calls=1, new_sample_ratio=0.0)
    assert torch.isfinite(values).all() and loss.buffer_initialized
    # rows 0-3 written by the call (drawn at age 5, run 3 steps); the others untouched
    assert loss.buffer_age.tolist() == [8] * 4 + [5] * 12
    loss.buffer_initialized = False  # 0.8.9's way to start over
    assert loss.replay_buffer is None and not loss.buffer_initialized


def test_update_buffer_written_like_0_8_9_without_super():
    """0.8.9's own body writes rows at ``self._buffer_ptr_int`` and advances it: the host
    pointer keeps its 0.8.9 name, and the rows it writes keep their ages (it knows none)."""

    class Own(ContrastiveDivergence):
        def update_buffer(self, samples):
            n, ptr = samples.shape[0], self._buffer_ptr_int
            self.replay_buffer[ptr : ptr + n] = samples.detach()
            self._buffer_ptr_int = (ptr + n) % self.buffer_size
            self.buffer_ptr.fill_(self._buffer_ptr_int)

    loss, values = _pcd_run(Own, calls=3, new_sample_ratio=0.0)
    assert torch.isfinite(values).all()
    assert loss._buffer_ptr_int == 12 and int(loss.buffer_ptr) == 12
    assert loss.buffer_age.tolist() == [5] * 16


def test_initialize_buffer_of_another_size_is_refused():
    class Small(ContrastiveDivergence):
        def initialize_buffer(self, data_shape_no_batch, *args, **kwargs):
            self.replay_buffer = torch.zeros(8, *data_shape_no_batch)

    with pytest.raises(ConfigurationError, match="made 8 chains, but buffer_size is 16"):
        _pcd_run(Small, calls=1)


def test_a_start_points_override_may_call_the_loss_again():
    """Re-entrant: the override runs a negative phase of its own on half the batch."""

    class Nested(ContrastiveDivergence):
        def get_start_points(self, x, generator=None):
            if len(x) > 2:
                half = self.negative_phase(x[: len(x) // 2], {"scale": 0.5}, generator)
                return torch.cat([half, super().get_start_points(x[len(x) // 2 :], generator)])
            return super().get_start_points(x, generator)

    loss, values = _pcd_run(Nested, calls=2)
    assert torch.isfinite(values).all() and loss._host.phase is None


@pytest.mark.parametrize("as_type", [list, tuple, torch.tensor])
def test_the_conditioning_check_reads_labels_given_as_a_sequence(as_type):
    """Labels as a list or tuple (the model indexes with them) are compared as the tensor's
    would be: a model that ignores them is refused, not waved through as 'a single y'."""

    class Ignores(Quadratic):
        def forward(self, x, y=None):
            return super().forward(x)

    y = as_type([0, 1, 2, 0, 1, 2, 0, 1])
    with pytest.raises(ConfigurationError, match="ignores its conditioning"):
        DenoisingScoreMatching(Ignores())(
            torch.randn(8, 2, generator=gen(14)), model_kwargs={"y": y}
        )


def test_start_points_set_on_the_instance_are_used():
    model = Quadratic(w=1.0)
    loss = ContrastiveDivergence(model, TinyLangevin(model, step_size=1e-6, noise_scale=0.0))
    loss.get_start_points = lambda x, generator=None: torch.full_like(x, -7.0)
    _, negatives = loss(torch.randn(8, 2, generator=gen(12)))
    torch.testing.assert_close(negatives, torch.full((8, 2), -7.0 * (1 - 1e-6) ** 10))


def test_compute_score_stays_differentiable_in_x_for_a_0_8_9_exact_loss():
    r"""0.8.9's own ScoreMatching pattern: the Hessian trace by autograd through
    ``compute_score`` of an ``x`` that requires grad. For $E = \tfrac w2 |x|^2$ in D
    dimensions: $\tfrac12 w^2 |x|^2 - w D$ per sample."""

    class ExactSM(BaseScoreMatching):
        def compute_loss(self, x, *args, **kwargs):
            x = x.detach().requires_grad_(True)
            score = self.compute_score(x)
            trace = sum(
                torch.autograd.grad(score[:, i].sum(), x, create_graph=True)[0][:, i]
                for i in range(x.shape[1])
            )
            return (0.5 * score.pow(2).sum(1) - trace).mean()

    x = torch.randn(64, 3, generator=gen(5), dtype=torch.float64)
    model = Quadratic(w=0.7).double()
    w = model.w.item()
    loss = ExactSM(model, dtype=torch.float64).compute_loss(x)
    expected = (0.5 * w**2 * x.pow(2).sum(1) - 3 * w).mean()
    torch.testing.assert_close(loss, expected.to(loss.dtype), rtol=1e-12, atol=1e-12)


def _calls_compute_score(cls):
    class Counting(cls):
        calls = 0

        def compute_score(self, x, noise=None, model_kwargs=None):
            type(self).calls += 1
            return super().compute_score(x, noise, model_kwargs)

    return Counting


@pytest.mark.parametrize(
    "cls, options",
    [
        (DenoisingScoreMatching, {}),
        (ScoreMatching, {"hessian_method": "exact"}),
        (ScoreMatching, {"hessian_method": "hutchinson"}),
        (ScoreMatching, {"hessian_method": "approx"}),
        (SlicedScoreMatching, {}),
    ],
)
def test_every_variant_takes_its_gradients_through_compute_score(cls, options):
    """A ``compute_score`` override is honoured by every variant: the same loss as the
    library's own when it delegates, and the loss of the override's gradient when not."""
    model = Quadratic(w=0.5).double()
    x = torch.randn(32, 2, generator=gen(6), dtype=torch.float64)
    counting = _calls_compute_score(cls)
    reference = cls(model, dtype=torch.float64, **options).compute_loss(x, generator=gen(7))
    got = counting(model, dtype=torch.float64, **options).compute_loss(x, generator=gen(7))
    assert counting.calls >= 1
    torch.testing.assert_close(got, reference, rtol=1e-12, atol=1e-12)


def test_denoising_loss_uses_the_overridden_score():
    r"""An override returning zero gradients: the DSM loss is then the target's own norm,
    $\tfrac12 \mathbb E |\sigma\xi / \sigma^2|^2$ with the loss's noise draws."""

    class Zero(DenoisingScoreMatching):
        def compute_score(self, x, noise=None, model_kwargs=None):
            return 0.0 * super().compute_score(x, noise, model_kwargs)

    sigma, x = 0.3, torch.randn(16, 2, generator=gen(8), dtype=torch.float64)
    model = Quadratic(w=0.5).double()
    loss = Zero(model, noise_scale=sigma, dtype=torch.float64).compute_loss(x, generator=gen(9))
    xi = torch.randn(x.shape, generator=gen(9), dtype=torch.float64)
    expected = 0.5 * (sigma * xi / sigma**2).pow(2).sum(1).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


RETIRED = [
    (ScoreMatching, "_exact_score_matching"),
    (ScoreMatching, "_approx_score_matching"),
    (SlicedScoreMatching, "_get_random_projections"),
    (FlowMatchingLoss, "_sample_t"),
    (EquilibriumMatchingLoss, "_sample_t"),
    (EnergyMatchingLoss, "_sample_t"),
    (FlowMatchingLoss, "_probe_forward"),
    (EquilibriumMatchingLoss, "_compute_ct"),
    (EquilibriumMatchingLoss, "_compute_explicit_energy_gradient"),
    (EquilibriumMatchingLoss, "_reduce_dims"),
]


@pytest.mark.parametrize("base, name", RETIRED)
def test_overriding_a_retired_0_8_9_hook_warns_at_the_class_definition(base, name):
    """0.8.9 hooks that nothing calls now: the override would be ignored in silence."""
    assert_warns_when_defined(base, name)


def test_a_0_dim_label_skips_the_conditioning_check_with_its_warning():
    """One label for the whole batch as a 0-d tensor: the check that the model reads ``y``
    cannot compare two labels (it raised a raw IndexError slicing the 0-d tensor)."""

    class PerLabel(Quadratic):
        def forward(self, x, y=None):
            return (1.0 + y) * super().forward(x)

    loss = DenoisingScoreMatching(PerLabel(w=1.0))
    with pytest.warns(UserWarning, match="single y value"):
        value = loss(torch.randn(8, 2, generator=gen(13)), model_kwargs={"y": torch.tensor(1)})
    assert torch.isfinite(value)
