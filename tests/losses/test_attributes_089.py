"""torchebm 0.8.9's public attributes of the losses and of ``FlowSampler``: ``cfg_dropout`` and
``null_condition`` of every loss (read and written through ``loss.conditioning``: a write
changes what training does) and ``t_sampler`` / ``t_p_mean`` / ``t_p_std`` of the flow
objectives (0.8.9 stored the constructor's arguments as they were). ``FlowSampler``'s
``prediction_type``: tests/samplers/test_attributes_089.py."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from _support.losses import TinyLangevin
from _support.pickles_089 import unpickle_089
from torch import nn

from torchebm import losses
from torchebm.core import BaseModel
from torchebm.core.errors import ConfigurationError

NULL = 7  # the null label: one past the 7 labels 0..6 of the models below


class LabelEnergy(BaseModel):
    """``E(x | y) = |x - mu_y|^2 / 2``, one centre per label (and the null one); records every
    ``y`` it is called with."""

    def __init__(self):
        super().__init__()
        self.centres = nn.Parameter(torch.randn(NULL + 1, 2))
        self.seen: list[torch.Tensor] = []

    def forward(self, x, y=None):
        y = torch.zeros(x.shape[0], dtype=torch.long) if y is None else y
        self.seen.append(y.detach().clone())
        return 0.5 * (x - self.centres[y]).square().sum(-1)


class LabelField(nn.Module):
    """A velocity / equilibrium field ``f(x, t, y) = W x + b_y``; records every ``y``."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.shift = nn.Embedding(NULL + 1, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x, t=None, y=None):
        y = torch.zeros(x.shape[0], dtype=torch.long) if y is None else y
        self.seen.append(y.detach().clone())
        return self.lin(x) + self.shift(y)


def _build(name: str, kind=lambda cls: cls, **options):
    """The loss ``name`` (of the class ``kind(cls)``: a subclass of the library's) and model."""
    energy = name in ("cd", "pcd", "sm", "ssm", "dsm", "em")
    model = LabelEnergy() if energy else LabelField()
    options.setdefault("check_conditioning", False)  # its probe calls the model with raw y
    if name == "cd":
        loss = kind(losses.ContrastiveDivergence)(
            model, TinyLangevin(model, n_steps=1), k_steps=1, **options
        )
    elif name == "pcd":
        sampler = TinyLangevin(model, n_steps=1)
        loss = kind(losses.PersistentContrastiveDivergence)(
            model, sampler, k_steps=1, buffer_size=32, **options
        )
    elif name == "sm":
        loss = kind(losses.ScoreMatching)(model, **options)
    elif name == "ssm":
        loss = kind(losses.SlicedScoreMatching)(model, **options)
    elif name == "dsm":
        loss = kind(losses.DenoisingScoreMatching)(model, noise_scale=0.1, **options)
    elif name == "fm":
        loss = kind(losses.FlowMatchingLoss)(model, **options)
    elif name == "eqm":
        loss = kind(losses.EquilibriumMatchingLoss)(model, **options)
    else:
        loss = kind(losses.EnergyMatchingLoss)(
            model, n_langevin_steps=1, lambda_cd=1.0, coupling="independent", **options
        )
    return loss, model


LOSSES = ["cd", "pcd", "sm", "ssm", "dsm", "fm", "eqm", "em"]


def _labels_seen(loss, model, n: int = 64) -> torch.Tensor:
    """Every label the model sees in one training call on a batch of labels 0..6 (persistent
    chains refuse per-sample labels: there, the labels its ``forward`` passes on)."""
    model.seen.clear()
    y = torch.arange(n) % NULL
    if isinstance(loss, losses.PersistentContrastiveDivergence):
        return loss.train().apply_conditioning({"y": y}, generator=torch.Generator())["y"]
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    loss.train()
    loss(x, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(1))
    assert model.seen, "the model never saw the labels"
    return torch.cat([s.reshape(-1) for s in model.seen])


@pytest.mark.parametrize("name", LOSSES)
def test_cfg_attributes_read_the_constructor_values(name):
    loss, _ = _build(name)
    assert loss.cfg_dropout == 0.0 and loss.null_condition is None
    loss, _ = _build(name, cfg_dropout=0.25, null_condition=NULL)
    assert loss.cfg_dropout == 0.25 and loss.null_condition == NULL


@pytest.mark.parametrize("name", LOSSES)
def test_writing_cfg_dropout_changes_training(name):
    loss, model = _build(name)
    assert not (_labels_seen(loss, model) == NULL).any()
    loss.null_condition = NULL
    loss.cfg_dropout = 1.0  # 0.8.9 code: every label of a training call is dropped
    assert loss.conditioning.cfg_dropout == 1.0 and loss.conditioning.null_condition == NULL
    assert "cfg_dropout" not in vars(loss) and "null_condition" not in vars(loss)
    assert (_labels_seen(loss, model) == NULL).all()
    loss.cfg_dropout = 0  # and back: none is
    assert loss.cfg_dropout == 0.0
    assert not (_labels_seen(loss, model) == NULL).any()


@pytest.mark.parametrize("name", LOSSES)
def test_written_values_are_checked_as_the_constructor_checks_them(name):
    loss, _ = _build(name)
    with pytest.raises(ConfigurationError, match=r"cfg_dropout must be in \[0, 1\], got 1.5"):
        loss.cfg_dropout = 1.5
    with pytest.raises(TypeError, match="cfg_dropout"):
        loss.cfg_dropout = "0.1"
    with pytest.raises(ConfigurationError, match="cfg_dropout=0.1 needs null_condition"):
        loss.cfg_dropout = 0.1
    assert loss.cfg_dropout == 0.0  # a refused value leaves the old one
    loss.null_condition = NULL
    loss.cfg_dropout = 0.1
    with pytest.raises(ConfigurationError, match="null_condition=None with cfg_dropout=0.1"):
        loss.null_condition = None
    assert loss.null_condition == NULL


def test_a_module_null_condition_is_the_condition_not_a_submodule():
    class ToNull(nn.Module):  # a callable (y, mask) -> y, as null_condition accepts
        def forward(self, y, mask):
            return torch.where(mask, torch.full_like(y, NULL), y)

    loss, model = _build("fm")
    loss.null_condition = null = ToNull()
    loss.cfg_dropout = 1.0
    assert loss.null_condition is null and "null_condition" not in dict(loss.named_children())
    assert (_labels_seen(loss, model) == NULL).all()


@pytest.mark.parametrize("name", ["cd", "sm", "fm", "em"])
def test_state_dict_and_pickles_keep_the_written_values(name):
    loss, _ = _build(name)
    keys = set(loss.state_dict())
    loss.null_condition = NULL
    loss.cfg_dropout = 0.5
    assert set(loss.state_dict()) == keys  # (0.8.9 kept them out of the state dict too)
    buf = io.BytesIO()
    torch.save(loss, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert (again.cfg_dropout, again.null_condition) == (0.5, NULL)
    # an object pickled whole by 0.8.9 (plain attributes cfg_dropout, null_condition)
    old = unpickle_089(loss)
    assert (old.cfg_dropout, old.null_condition) == (0.5, NULL)
    assert "cfg_dropout" not in vars(old)
    old.cfg_dropout = 0.0
    assert old.conditioning.cfg_dropout == 0.0


TIME_LOSSES = ["fm", "eqm", "em"]


def _uniform_t(batch, *, device, dtype, generator):
    return torch.rand(batch, device=device, dtype=dtype, generator=generator)


@pytest.mark.parametrize("name", TIME_LOSSES)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"t_sampler": "uniform"},
        {"t_sampler": "lognormal"},
        {"t_sampler": "lognormal", "t_p_mean": -0.5, "t_p_std": 0.8},
        {"t_sampler": "lognormal", "t_p_mean": 0, "t_p_std": 2},
        {"t_sampler": _uniform_t},
    ],
)
def test_time_attributes_are_the_constructor_arguments(name, options):
    # 0.8.9: self.t_sampler, self.t_p_mean, self.t_p_std = the arguments, defaults
    # "uniform", -1.2, 1.2 (BaseInterpolantLoss.__init__)
    loss, _ = _build(name, **options)
    expected = {"t_sampler": "uniform", "t_p_mean": -1.2, "t_p_std": 1.2, **options}
    assert loss.t_sampler is expected["t_sampler"] or loss.t_sampler == expected["t_sampler"]
    assert loss.t_p_mean == expected["t_p_mean"] and loss.t_p_std == expected["t_p_std"]
    assert (loss.t_sampler, loss.t_p_mean) == (loss.time_sampler.kind, loss.time_sampler.t_p_mean)


def test_time_attributes_of_a_uniform_sampler_keep_its_unused_options():
    with pytest.warns(UserWarning, match="no effect"):  # 0.8.9 stored them without a word
        loss, _ = _build("fm", t_sampler="uniform", t_p_mean=0.3, t_p_std=0.5)
    assert (loss.t_sampler, loss.t_p_mean, loss.t_p_std) == ("uniform", 0.3, 0.5)


@pytest.mark.parametrize("name", TIME_LOSSES)
def test_writing_the_time_attributes_builds_a_new_time_sampler(name):
    # 0.8.9 code anneals them between epochs: loss.t_p_mean = 3.0 moved the training times
    loss, _ = _build(name)
    loss.t_sampler = "lognormal"
    loss.t_p_mean, loss.t_p_std = 3.0, 0.5
    assert (loss.t_sampler, loss.t_p_mean, loss.t_p_std) == ("lognormal", 3.0, 0.5)
    g = torch.Generator().manual_seed(0)
    t = loss.time_sampler(4096, 0.0, device="cpu", dtype=torch.float32, generator=g)
    z = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    expected = torch.sigmoid(-(z * 0.5 + 3.0)).clamp(min=1e-4, max=1.0)  # EDM's law, by hand
    torch.testing.assert_close(t, expected, rtol=0, atol=0)
    for attr, bad in (("t_sampler", "gaussian"), ("t_p_std", -1.0), ("t_p_mean", float("nan"))):
        with pytest.raises(ConfigurationError, match=attr):
            setattr(loss, attr, bad)
    assert (loss.t_sampler, loss.t_p_mean, loss.t_p_std) == ("lognormal", 3.0, 0.5)


@pytest.mark.parametrize("null", ["parameter", "module"])
def test_a_trainable_null_condition_is_named_in_a_warning(null):
    # 0.8.9 registered it as the loss's parameter or submodule (trained through
    # loss.parameters(), saved in its state dict); here it lives in loss.conditioning: it
    # would stay untrained, silently
    value = nn.Parameter(torch.zeros(2)) if null == "parameter" else nn.Linear(2, 2)
    with pytest.warns(UserWarning, match="null_condition holds trainable parameters"):
        loss, _ = _build("fm", cfg_dropout=0.3, null_condition=value)
    with pytest.warns(UserWarning, match="pass them to the optimizer"):
        loss.null_condition = value
    frozen = nn.Parameter(torch.zeros(2), requires_grad=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss.null_condition = frozen  # nothing to train: no warning
        loss.null_condition = NULL


def test_a_089_pickle_with_a_learnable_null_embedding_keeps_it():
    # 0.8.9 kept it in _parameters: the upgrade read only attributes and submodules, so a
    # loss with cfg_dropout > 0 failed to load ("needs null_condition") and one with 0 lost it
    null = nn.Parameter(torch.full((2,), 0.25))
    with pytest.warns(UserWarning, match="trainable"):
        loss, _ = _build("fm", cfg_dropout=0.3, null_condition=null)
    with pytest.warns(UserWarning, match="trainable"):
        old = unpickle_089(loss)
    assert old.cfg_dropout == 0.3
    torch.testing.assert_close(old.null_condition, null.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("name", LOSSES)
def test_schedulers_is_a_dict_from_construction(name):
    """0.8.9 set ``loss.schedulers = {}`` at construction: reading it before any schedule
    exists (the contrastive-divergence losses have none of their own) is a dict, not an
    AttributeError, and the one ``get_schedulers()`` returns."""
    loss, _ = _build(name)
    assert isinstance(loss.schedulers, dict)
    assert loss.schedulers is loss.get_schedulers()


def _own_cfg_dropout(base):
    class OwnDropout(base):
        """0.8.9 style: ``cfg_dropout`` a property computed at each read (its setter, which
        0.8.9's constructor called, stores the base rate)."""

        scale = 1.0

        @property
        def cfg_dropout(self):
            return self.rate * self.scale

        @cfg_dropout.setter
        def cfg_dropout(self, value):
            self.rate = value

    return OwnDropout


@pytest.mark.parametrize("name", LOSSES)
def test_a_subclass_cfg_dropout_property_sets_the_dropout(name):
    # 0.8.9 read self.cfg_dropout at each training call; the loss read only
    # self.conditioning, so the subclass's property changed nothing
    loss, model = _build(name, _own_cfg_dropout, cfg_dropout=1.0, null_condition=NULL)
    assert loss.rate == 1.0  # its setter got the constructor's value
    assert (_labels_seen(loss, model) == NULL).all()
    loss.scale = 0.0  # the property now says 0: no label is dropped
    assert not (_labels_seen(loss, model) == NULL).any()
    loss.scale, loss.cfg_dropout = 1.0, 1.0
    assert (_labels_seen(loss, model) == NULL).all()
    loss.scale = 2.0  # read as given and checked
    with pytest.raises(ConfigurationError, match=r"cfg_dropout must be in \[0, 1\], got 2.0"):
        _labels_seen(loss, model)


def _half_of_base(base):
    class HalfOfBase(base):
        """A property computed from the base one (``super().cfg_dropout``)."""

        @property
        def cfg_dropout(self):
            return super().cfg_dropout * 0.5

        @cfg_dropout.setter
        def cfg_dropout(self, value):
            base.cfg_dropout.fset(self, value)

    return HalfOfBase


@pytest.mark.parametrize("name", LOSSES)
def test_a_subclass_property_built_on_the_base_one_does_not_compound(name):
    # the call wrote the property's value where the base property reads it, so each
    # training call halved the dropout again (0.5, 0.25, 0.125, ...)
    loss, model = _build(name, _half_of_base, cfg_dropout=1.0, null_condition=NULL)
    for _ in range(3):
        _labels_seen(loss, model)
        assert loss.cfg_dropout == 0.5 and loss.conditioning.cfg_dropout == 1.0


@pytest.mark.parametrize("name", ["fm", "dsm"])
def test_a_subclass_property_is_checked_like_an_assignment(name):
    # a positive dropout from the property with no null_condition ran and dropped nothing
    loss, model = _build(name, _own_cfg_dropout)
    loss.scale = 1.0
    loss.rate = 0.5
    with pytest.raises(ConfigurationError, match="cfg_dropout=0.5 needs null_condition"):
        _labels_seen(loss, model)


def _half_then_logged(base):
    class Logged(_half_of_base(base)):
        """A subclass of the property's class that only overrides apply_conditioning."""

        def apply_conditioning(self, *args, **kwargs):
            self.applied = getattr(self, "applied", 0) + 1
            return super().apply_conditioning(*args, **kwargs)

    return Logged


@pytest.mark.parametrize("name", ["fm", "dsm"])
def test_a_wrapped_subclass_of_a_wrapped_class_reads_the_property_once(name):
    # both classes' apply_conditioning were wrapped: the outer one stored 0.5, the inner
    # one read the property as 0.25 and dropped at that rate within the same call
    loss, model = _build(name, _half_then_logged, cfg_dropout=1.0, null_condition=NULL)
    seen = torch.cat([_labels_seen(loss, model, n=400) for _ in range(5)])
    dropped = float((seen == NULL).double().mean())
    assert loss.applied == 5 and loss.cfg_dropout == 0.5
    assert abs(dropped - 0.5) < 5 * (0.25 / seen.numel()) ** 0.5, dropped  # 5 standard errors
