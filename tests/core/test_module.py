"""TorchEBMModule placement, autocast, conditioning; Schedulable; errors; versions; aliases."""

import copy
import pickle
import warnings
import weakref

import pytest
import torch
from torch import nn

import torchebm.core as core
from torchebm.core import (
    BaseModel,
    ConstantScheduler,
    LinearScheduler,
    Schedulable,
    TorchEBMModule,
    warn_once,
)
from torchebm.core.errors import (
    ConfigurationError,
    NonFiniteError,
    check_finite_tensor,
    check_int,
    check_positive,
)


class Holder(Schedulable, TorchEBMModule):
    def __init__(self, inner=None, **kw):
        super().__init__(**kw)
        self.inner = inner
        self._register_param("step_size", 0.1, positive=True)


def test_probe_defaults_and_to():
    m = TorchEBMModule()
    assert m.device == torch.device("cpu")
    assert m.dtype == torch.get_default_dtype()
    m = m.to(torch.float64)
    assert m.dtype == torch.float64
    assert TorchEBMModule(dtype=torch.float16).dtype == torch.float16


def test_placement_follows_first_parameter():
    h = Holder(inner=nn.Linear(2, 2).double(), dtype=torch.float32)
    assert h.dtype == torch.float64
    h.float()
    assert h.dtype == torch.float32


class _Energy(BaseModel):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))

    def forward(self, x):
        return self.net(x.to(self.dtype)).squeeze(-1)  # reads the placement inside transforms


def test_placement_of_a_parent_follows_parameters_swapped_below_it():
    # the cache of a sampler or loss (here a Holder) kept the first parameter it had read:
    # stale after to_empty() of a model built on the meta device (sampling copied out of meta
    # tensors), after a new network was set on the model, and it kept the old weight alive
    with torch.device("meta"):
        model = _Energy()
    parent = Holder(inner=model)
    assert parent.device == torch.device("meta")
    model.to_empty(device="cpu")
    assert parent.device == torch.device("cpu") and model.device == torch.device("cpu")
    old = weakref.ref(model.net[0].weight)
    model.net = nn.Sequential(nn.Linear(2, 1, dtype=torch.float64))
    assert parent.dtype == torch.float64 and model.dtype == torch.float64
    assert old() is None  # read, then replaced: not kept alive by a cache
    kept = model.net[0]  # a plain container's item replaced (no TorchEBMModule is told)
    model.net[0] = nn.Linear(2, 1)
    assert parent.dtype == torch.float32 and model.dtype == torch.float32 and kept is not None
    model.register_parameter("first", nn.Parameter(torch.zeros(1, dtype=torch.float64)))
    assert parent.dtype == torch.float64  # the model's own parameters come first


def test_reading_the_placement_runs_no_parametrization():
    # a weight parametrized after the first read was then read through its property: every
    # `.dtype` ran the parametrization (spectral_norm's power iteration moved its vector)
    from torch.nn.utils import parametrize

    class Counted(nn.Module):
        calls = 0

        def forward(self, w):
            Counted.calls += 1
            return 2 * w

    model = _Energy()
    parent = Holder(inner=model)
    assert parent.dtype == torch.float32
    parametrize.register_parametrization(model.net[0], "weight", Counted())
    Counted.calls = 0
    for _ in range(5):
        assert parent.dtype == model.dtype == torch.float32
    assert Counted.calls == 0


def test_placement_lets_torch_swap_parameters():
    # the cache held a weak reference to the parameter it read, and torch refuses to swap a
    # tensor with weak references ("Couldn't swap Linear.weight"): .to() under the swap flag,
    # load_state_dict under it, wrapper-subclass (DTensor) parameters
    model = _Energy()
    parent = Holder(inner=model)
    assert parent.dtype == torch.float32
    before = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        parent.to(torch.float64)
        assert parent.dtype == model.dtype == torch.float64
        model.load_state_dict(_Energy().state_dict())
    finally:
        torch.__future__.set_swap_module_params_on_conversion(before)
    assert model(torch.zeros(3, 2)).dtype == torch.float64


def test_placement_is_unchanged_by_torch_func_and_the_module_still_copies():
    # functional_call swaps the parameters for the call: the cache kept the swapped-in
    # float64 tensor (dtype float64 afterwards) or a functorch wrapper (deepcopy and pickle
    # failed: "Cannot access storage of TensorWrapper")
    from torch.func import functional_call, grad, vmap

    model, x = _Energy(), torch.randn(4, 2)
    parent = Holder(inner=model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    vmap(grad(lambda p, xi: functional_call(model, p, (xi[None],)).sum()), (None, 0))(params, x)
    doubled = {k: v.double() for k, v in model.named_parameters()}
    assert functional_call(model, doubled, (x.double(),)).dtype == torch.float64
    assert model.dtype == parent.dtype == torch.float32
    copy.deepcopy(parent), pickle.loads(pickle.dumps(model))
    assert copy.deepcopy(model).net[0].weight.data_ptr() != model.net[0].weight.data_ptr()


def test_bad_dtype_and_device():
    with pytest.raises(TypeError, match="dtype"):
        TorchEBMModule(dtype="float32")
    with pytest.raises(ValueError, match="device"):
        TorchEBMModule(device="not-a-device")


def test_a_device_torch_cannot_use_here_is_named():
    # a CUDA device without CUDA (or past the devices there are) raised torch's "Found no
    # NVIDIA driver" from deep inside, naming neither the argument nor its value; the error
    # keeps torch's kind (0.8.9 code catches RuntimeError to fall back to the CPU)
    torch_kinds = (RuntimeError, AssertionError)  # (a CPU-only torch build asserts)
    with pytest.raises(torch_kinds, match=r"device='cuda:99' cannot be used: "):
        TorchEBMModule(device="cuda:99")
    if not torch.cuda.is_available():
        for make in (TorchEBMModule, core.HarmonicModel):
            with pytest.raises(torch_kinds, match=r"device='cuda' .*CUDA is not available"):
                make(device="cuda")
    with pytest.raises((ImportError, RuntimeError), match=r"device='hpu' cannot be used: "):
        TorchEBMModule(device="hpu")  # its module is missing (torch 2.4: no kernel for it)


def test_prepare_model_kwargs():
    m = TorchEBMModule()
    labels = torch.tensor([1, 2])
    out = m._prepare_model_kwargs({"y": labels, "w": 3})
    assert out["y"].dtype == torch.long and out["w"] == 3
    assert m._prepare_model_kwargs(None) == {}
    with pytest.raises(TypeError, match="model_kwargs must be a dict"):
        m._prepare_model_kwargs([1])


def test_mixed_precision_on_cpu_warns_and_disables():
    m = TorchEBMModule()
    with pytest.warns(UserWarning, match="requires CUDA"):
        m.setup_mixed_precision(True)
    assert not m.use_mixed_precision
    with m.autocast_context():
        pass


def test_warn_once():
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(3):
            warn_once("test-key-xyz", "hello", UserWarning)
    assert len(rec) == 1


def _nested_holders() -> tuple[Holder, Holder]:
    """``(outer, inner)``: linear schedules step_size 1 -> 3 (outer), noise 1 -> 0 (inner)."""
    inner = Holder()
    inner.register_scheduler("noise", LinearScheduler(1.0, 0.0, 2))
    outer = Holder(inner=inner)
    outer.register_scheduler("step_size", LinearScheduler(1.0, 3.0, 2))
    return outer, inner


def test_schedulable_params_and_subtree_stepping():
    outer, inner = _nested_holders()
    outer.step_schedulers()
    assert outer.get_scheduled_value("step_size") == pytest.approx(2.0)
    assert inner.get_scheduled_value("noise") == pytest.approx(0.5)
    outer.reset_schedulers()
    assert inner.get_scheduled_value("noise") == pytest.approx(1.0)
    with pytest.raises(KeyError):
        outer.get_scheduled_value("missing")
    with pytest.raises(ValueError, match="step_size must be positive"):
        outer._register_param("step_size", -0.01, positive=True)
    with pytest.raises(TypeError):
        outer._register_param("step_size", "big", positive=True)
    with pytest.raises(TypeError):
        outer.register_scheduler("x", 0.3)


def test_a_shallow_copy_sets_its_own_schedules():
    # copy.copy shared the name -> scheduler dict: a step size set on the copy was the
    # original's too (nn.Dropout's copy.copy keeps p apart)
    original = Holder()
    shallow = copy.copy(original)
    shallow.register_scheduler("step_size", ConstantScheduler(0.5))
    assert original.get_scheduled_value("step_size") == pytest.approx(0.1)
    assert shallow.get_scheduled_value("step_size") == pytest.approx(0.5)


def test_scheduler_state_travels_in_state_dict(tmp_path):
    h = Holder()
    h.register_scheduler("step_size", LinearScheduler(1.0, 0.0, 10))
    for _ in range(3):
        h.step_schedulers()
    path = tmp_path / "h.pt"
    torch.save(h.state_dict(), path)
    fresh = Holder()
    fresh.register_scheduler("step_size", LinearScheduler(1.0, 0.0, 10))
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert fresh.get_scheduled_value("step_size") == pytest.approx(0.7)
    assert fresh.get_schedulers()["step_size"].step_count == 3


@pytest.mark.skipif(
    not hasattr(nn.Module, "register_load_state_dict_pre_hook"), reason="needs torch >= 2.5"
)
def test_a_state_dict_without_extra_state_loads_strictly_and_keeps_it():
    # torchebm 0.8.9 saved no extra state: its checkpoints load under strict=True, keeping the
    # schedule where it is; every other key stays strict
    h, inner = _nested_holders()
    h.step_schedulers()
    old = {k: v for k, v in h.state_dict().items() if not k.endswith("_extra_state")}
    result = h.load_state_dict(old)
    assert not result.missing_keys and not result.unexpected_keys
    assert h.get_scheduled_value("step_size") == pytest.approx(2.0)
    assert inner.get_scheduled_value("noise") == pytest.approx(0.5)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        h.load_state_dict({**old, "bogus": torch.zeros(1)})


def test_validators():
    assert check_positive("step_size", 2) == 2.0
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigurationError, match="step_size"):
            check_positive("step_size", bad)
    with pytest.raises(TypeError, match="step_size"):
        check_positive("step_size", True)
    with pytest.raises(ValueError, match="n_steps must be >= 1, got 0"):
        check_int("n_steps", 0, minimum=1)
    x = torch.zeros(4, 2)
    x[2, 1] = float("nan")
    with pytest.raises(NonFiniteError, match=r"\[2\]") as info:
        check_finite_tensor("x", x)
    assert info.value.indices == [2]
    assert isinstance(info.value, FloatingPointError)


def test_versions_reports_core():
    v = core.versions()
    assert v["torchebm-core"] == core.__version__
    assert "torch" in v


def test_deprecated_aliases_warn_and_subclass():
    from torchebm.core import _module

    for key in list(_module._WARNED):
        if key.startswith("torchebm.core."):
            _module._WARNED.discard(key)
    with pytest.warns(DeprecationWarning, match="GaussianModel"):
        e = core.GaussianEnergy(mean=torch.zeros(2), cov=torch.eye(2))
    assert isinstance(e, core.GaussianModel)
    assert e(torch.tensor([[1.0, 1.0]])).item() == pytest.approx(1.0)
    with pytest.warns(DeprecationWarning, match="BaseModel"):

        class Neural(core.BaseEnergyFunction):
            def __init__(self):
                super().__init__()
                self.net = nn.Linear(2, 1)

            def forward(self, x):
                return self.net(x).squeeze(-1)

    assert isinstance(Neural(), BaseModel)
    with pytest.warns(DeprecationWarning, match="TorchEBMModule"):
        core.DeviceMixin()
    for name in (
        "DoubleWellEnergy",
        "HarmonicEnergy",
        "RastriginEnergy",
        "AckleyEnergy",
        "RosenbrockEnergy",
    ):
        with pytest.warns(DeprecationWarning):
            getattr(core, name)()


def test_all_names_exist():
    for name in core.__all__:
        assert hasattr(core, name), name
    assert isinstance(ConstantScheduler(1.0), core.BaseScheduler)
