r"""Small MLP backbones for low-dimensional work: a scalar energy and a time-conditioned field."""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from torchebm.core import BaseModel, TorchEBMModule
from torchebm.core._module import check_bool
from torchebm.core.errors import ShapeError, check_int, check_tensor
from torchebm.models._conditioning import check_input_dtype

__all__ = ["MLPEnergy", "MLPVelocity", "fourier_time_features"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}

ActivationLike = str | type[nn.Module] | nn.Module


def _activation_factory(activation: Any):
    """Return a zero-argument callable building one activation module."""
    if isinstance(activation, str):
        key = activation.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)} (or an nn.Module class or "
                f"instance), got {activation!r}"
            )
        return _ACTIVATIONS[key]
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation
    if isinstance(activation, nn.Module):
        return lambda: copy.deepcopy(activation)
    raise TypeError(
        "activation must be a name, an nn.Module class or an nn.Module instance, "
        f"got {activation!r}"
    )


def _hidden_dims(hidden_dims: Any) -> tuple[int, ...]:
    if isinstance(hidden_dims, numbers.Integral) and not isinstance(hidden_dims, bool):
        hidden_dims = (hidden_dims,)
    if not isinstance(hidden_dims, Sequence) or isinstance(hidden_dims, str):
        raise TypeError(f"hidden_dims must be a sequence of ints, got {hidden_dims!r}")
    return tuple(check_int(f"hidden_dims[{i}]", h, minimum=1) for i, h in enumerate(hidden_dims))


def _mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: Any) -> nn.Sequential:
    make = _activation_factory(activation)
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), make()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def _plain_linear(m: Any) -> bool:
    """An ``nn.Linear`` whose weight and bias are its own ``nn.Parameter`` objects, without a
    ``forward`` of its own (``layer.forward = f``).

    Anything else is read through the module call instead, where its hooks run: a tensor
    subclass (FSDP2's sharded ``DTensor``, a quantised weight, ...), and a weight that a
    forward pre-hook recomputes from other parameters (``torch.nn.utils.weight_norm`` and
    ``spectral_norm`` keep ``weight`` as a plain tensor refreshed only by a forward call, so
    between optimizer steps and forward calls it is stale).
    """
    return _plain_weights(m)[0] is not None


def _plain_weights(m: Any) -> tuple[Any, Any]:
    """``(weight, bias)`` of a plain ``nn.Linear`` (see `_plain_linear`), else ``(None, None)``."""
    if type(m) is not nn.Linear or "forward" in vars(m):
        return None, None
    weight, bias = m.weight, m.bias  # read once: this runs per layer at every `gradient` call
    if type(weight) is not nn.Parameter or (bias is not None and type(bias) is not nn.Parameter):
        return None, None
    return weight, bias


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


#: activations whose backward above reads the activation's output ``a`` (the others read
#: the pre-activation ``h`` only)
_BACKWARD_READS_OUTPUT = (nn.Tanh, nn.Sigmoid)

#: the functional forms of the activation modules that hold no attributes (not in place:
#: the explicit pass never runs an in-place activation)
_STATELESS_ACTIVATIONS: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
    nn.SiLU: torch.nn.functional.silu,
    nn.ReLU: torch.relu,
    nn.Tanh: torch.tanh,
    nn.Sigmoid: torch.sigmoid,
}


def _activation_backward(m: nn.Module) -> Callable[..., torch.Tensor] | None:
    """``(grad, h, a) -> grad * act'(h)`` for the known activation modules (``None``: unknown).

    ``h`` is the pre-activation, ``a = act(h)``; each is one fused ATen backward kernel.
    """
    aten = torch.ops.aten
    kind = type(m)
    act: Any = m  # the activation's own attributes (slope, alpha, beta, ...) are plain values
    if kind is nn.SiLU:
        return lambda g, h, a: aten.silu_backward(g, h)
    if kind is nn.ReLU:
        return lambda g, h, a: aten.threshold_backward(g, h, 0)
    if kind is nn.LeakyReLU:
        return lambda g, h, a: aten.leaky_relu_backward(g, h, float(act.negative_slope), False)
    if kind is nn.GELU:
        return lambda g, h, a: aten.gelu_backward(g, h, approximate=act.approximate)
    if kind is nn.ELU:
        return lambda g, h, a: aten.elu_backward(g, float(act.alpha), 1.0, 1.0, False, h)
    if kind is nn.SELU:
        return lambda g, h, a: aten.elu_backward(g, _SELU_ALPHA, _SELU_SCALE, 1.0, False, h)
    if kind is nn.Softplus:
        return lambda g, h, a: aten.softplus_backward(g, h, float(act.beta), float(act.threshold))
    if kind is nn.Tanh:
        return lambda g, h, a: aten.tanh_backward(g, a)
    if kind is nn.Sigmoid:
        return lambda g, h, a: aten.sigmoid_backward(g, a)
    return None


def _flatten_input(x: torch.Tensor, input_dim: int, owner: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2 or math.prod(x.shape[1:]) != input_dim:
        raise ShapeError(
            f"{owner} expects x of shape (B, {input_dim}) (or (B, ...) with {input_dim} "
            f"features per sample), got {tuple(x.shape)}"
        )
    return x if x.ndim == 2 else x.reshape(x.shape[0], input_dim)


def _frequencies(n: int, like: torch.Tensor) -> torch.Tensor:
    return math.pi * 2.0 ** torch.arange(n, device=like.device, dtype=like.dtype)


def fourier_time_features(t: torch.Tensor, n_frequencies: int) -> torch.Tensor:
    r"""Features $[t, (\sin 2^k \pi t)_{k<K}, (\cos 2^k \pi t)_{k<K}]$ of times ``t`` ``(B,)``:
    the $K$ sines, then the $K$ cosines.

    Suited to flow times in $[0, 1]$: the slowest pair has period 2, each next one
    doubles the frequency.

    Args:
        t: Times `(B,)` (any shape, flattened).
        n_frequencies: $K \ge 0$; ``0`` gives ``t`` alone.

    Returns:
        Features `(B, 1 + 2K)`.
    """
    n_frequencies = check_int("n_frequencies", n_frequencies, minimum=0)
    if not isinstance(t, torch.Tensor) or t.is_complex() or t.dtype == torch.bool:
        check_tensor("t", t, non_empty=False)  # not a tensor, or complex
        raise TypeError(f"t must be a real tensor of times, got dtype {t.dtype}")
    t = t.reshape(-1, 1)
    if n_frequencies == 0:
        return t
    a = t * _frequencies(n_frequencies, t)
    return torch.cat([t, torch.sin(a), torch.cos(a)], dim=1)


def _explicit_backward(
    x: torch.Tensor, layers: tuple[Any, ...], w_last: torch.Tensor
) -> torch.Tensor:
    r"""$\nabla_x E$ of ``x`` ``(B, d)`` through ``layers`` ``((W, b, act, act', needed), ...)``
    and the output weight ``w_last`` ``(1, h_L)``: a forward sweep keeping each
    pre-activation, then $g \leftarrow (g \odot \sigma'(h_\ell)) W_\ell$ from the top."""
    if torch.is_grad_enabled():  # a sampler's loop already runs without autograd
        with torch.no_grad():
            return _explicit_backward(x, layers, w_last)
    linear = torch.nn.functional.linear
    h = x
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    for weight, bias, act, _, needed in layers:
        pre = linear(h, weight, bias)
        # an activation value that no later step reads (the last one feeds only the
        # output layer, whose input gradient is its weight) is not computed
        h = act(pre) if needed else pre
        saved.append((pre, h))
    g = w_last.expand(x.shape[0], -1)  # dE/d(last hidden) = w_L, per row
    for (weight, _, _, back, _), (pre, post) in zip(reversed(layers), reversed(saved)):
        g = back(g, pre, post).mm(weight)
    return g


def _plan_tensors(plan: Any) -> tuple[tuple[Any, ...], torch.Tensor] | None:
    """`_explicit_backward`'s ``(layers, w_last)`` from a layer plan ``(hidden, last)``: the
    layers' current weight and bias tensors beside their activations, or ``None`` when a
    layer is no longer a plain ``nn.Linear`` (see `_plain_linear`; checked at every call: a
    layer may have been sharded or weight-normed since the plan was built)."""
    hidden, last = plan
    layers = []
    for lin, act, back, needed in hidden:
        weight, bias = _plain_weights(lin)
        if weight is None:
            return None
        layers.append((weight, bias, act, back, needed))
    w_last = _plain_weights(last)[0]
    return None if w_last is None else (tuple(layers), w_last)


class MLPEnergy(BaseModel):
    r"""Multi-layer perceptron energy $E_\theta: \mathbb{R}^d \to \mathbb{R}$.

    ``Linear(d, h_1) -> act -> ... -> Linear(h_L, 1)``, squeezed to energies ``(B,)``. The
    default is the 2-64-64-1 SiLU network used throughout the 2-D examples (a smooth
    activation keeps $\nabla_x E$ smooth, which Langevin dynamics and score matching
    need).

    Args:
        input_dim: Features per sample ``d``; inputs ``(B, d)`` or ``(B, ...)`` with ``d``
            elements per sample.
        hidden_dims: Widths of the hidden layers (an int for one layer).
        activation: ``"silu"`` (default), ``"relu"``, ``"leaky_relu"``, ``"gelu"``, ``"elu"``,
            ``"selu"``, ``"softplus"``, ``"tanh"``, ``"sigmoid"``, an ``nn.Module`` class or an
            instance (copied per layer).
        dtype: Parameter dtype (default ``float32``).
        device: Parameter device.

    Example:
        >>> energy = MLPEnergy(2)
        >>> energy(torch.randn(16, 2)).shape
        torch.Size([16])
        >>> energy.gradient(torch.randn(16, 2)).shape
        torch.Size([16, 2])
    """

    #: `gradient` uses the explicit backward pass (closed form, no autograd) when it applies
    explicit_gradient: bool = True

    def __init__(
        self,
        input_dim: int = 2,
        hidden_dims: Sequence[int] | int = (64, 64),
        activation: ActivationLike = "silu",
        *,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        super().__init__(dtype=dtype, device=device)
        self.input_dim = check_int("input_dim", input_dim, minimum=1)
        self.hidden_dims = _hidden_dims(hidden_dims)
        self.net = _mlp(self.input_dim, self.hidden_dims, 1, activation)
        self.net.to(device=self._torchebm_probe.device, dtype=dtype)
        # plain dict (not a module attribute write per call): the explicit pass's layer plan
        self._plan_cache: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the explicit pass's layer plan (it holds lambdas; rebuilt on use)."""
        return {**super().__getstate__(), "_plan_cache": {}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Energies ``(B,)`` of ``x`` ``(B, input_dim)`` of the parameters' dtype (else a
        `TypeError` naming both dtypes; any floating dtype under autocast).

        Args:
            x: Samples `(B, input_dim)` (or `(B, ...)` with ``input_dim`` elements per row).
        """
        flat = _flatten_input(x, self.input_dim, type(self).__name__)
        try:
            return self.net(flat).squeeze(-1)
        except RuntimeError:  # torch's dtype mismatch names no argument; no dtype read per call
            check_input_dtype(type(self).__name__, flat, self.dtype)
            raise

    def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        r"""$\nabla_x E(x)$ by an explicit backward pass through the layers.

        Same result and contract as [`BaseModel.gradient`][torchebm.core.BaseModel.gradient] (shape and dtype of ``x``,
        detached; a 1-D input is one sample), without building an autograd graph: a
        forward sweep keeps each hidden pre-activation, then
        $g \leftarrow (g \odot \sigma'(h_\ell)) W_\ell$ runs from the last layer
        to the input, each activation derivative one fused ATen kernel. For a 2-64-64-1
        SiLU network that is 7 kernels instead of autograd's forward, graph and engine.
        Anything the explicit pass does not cover takes [`BaseModel.gradient`][torchebm.core.BaseModel.gradient]:
        conditioning, an activation outside the built-in list or in place, a layer whose
        weight is not its own ``nn.Parameter`` (``weight_norm``/``spectral_norm`` hooks,
        sharded weights), mixed precision (``setup_mixed_precision`` or an enclosing
        ``torch.autocast``), half-precision inputs, inputs on another device, or
        ``explicit_gradient = False``. The explicit pass reads the weights and does not
        call ``forward``, so forward hooks and ``compile()`` of the model or its layers do
        not run in it; set ``model.explicit_gradient = False`` to differentiate through
        the (hooked or compiled) forward instead.

        Args:
            x: Samples `(B, input_dim)`, `(B, ...)` or one sample `(input_dim,)`.
            model_kwargs: Conditioning keywords, or ``None`` (given: the autograd path).

        Returns:
            $\nabla_x E$, shaped like ``x``, of its dtype, detached.
        """
        tensors = self._explicit_plan(x, model_kwargs)
        if tensors is None:
            return super().gradient(x, model_kwargs)
        if x.ndim == 2 and x.shape[1] == self.input_dim:
            flat = x
        else:
            flat = _flatten_input(x.unsqueeze(0) if x.ndim == 1 else x, self.input_dim, "MLPEnergy")
        g = _explicit_backward(flat, *tensors)
        return g if g.shape == x.shape else g.reshape(x.shape)

    def gradient_function(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """`gradient` with the layer plan and weights resolved once, for one sampling run.

        Inputs ``(B, input_dim)`` of the weights' dtype and device take the explicit pass
        directly; anything else (and a model it does not apply to) calls `gradient`. The
        function holds the weight tensors of this moment: it sees their values change
        (optimizer steps, ``load_state_dict``), but after anything else (a parameter or layer
        replaced, ``load_state_dict(assign=True)``, weight norm added, a dtype or device
        change) fetch it again (the samplers fetch one per ``sample()`` call).
        """
        tensors = self._explicit_plan(None, None)
        if tensors is None:
            return self.gradient
        layers, w_last = tensors
        w_first, width = layers[0][0], self.input_dim
        dtype, device = w_first.dtype, w_first.device
        if dtype not in (torch.float32, torch.float64):
            return self.gradient
        autocast_on, kind = torch.is_autocast_enabled, device.type

        def gradient(x: torch.Tensor) -> torch.Tensor:
            if x.dtype != dtype or x.ndim != 2 or x.shape[1] != width or x.device != device:
                return self.gradient(x)
            if autocast_on(kind):  # entered after this function was resolved
                return self.gradient(x)
            return _explicit_backward(x, layers, w_last)

        return gradient

    def _explicit_plan(self, x: Any, model_kwargs: dict | None):
        """`_explicit_backward`'s ``(layers, w_last)`` when the explicit gradient applies to
        this call (``x=None``: to inputs of the weights' dtype and device), else ``None``.

        The layer plan ``(hidden, last)`` (``(linear, activation, backward, needed)`` per
        hidden layer, and the output ``nn.Linear``) depends only on the layer modules and the
        activations' classes, in-place flags and instance ``forward`` (none, or autograd): it
        is built once and reused while those stay the same. The weights are read from the
        layers at every call (`_plan_tensors`).
        """
        if (
            not self.explicit_gradient
            or model_kwargs
            or self.use_mixed_precision
            or type(self).forward is not MLPEnergy.forward  # a subclass redefined the energy
            or "forward" in vars(self)  # ... or the instance did (model.forward = f)
        ):
            return None
        if x is not None and (
            not isinstance(x, torch.Tensor)
            or x.dtype not in (torch.float32, torch.float64)
            or x.ndim == 0
        ):
            return None
        net = self.net
        if type(net) is not nn.Sequential:
            return None
        mods = tuple(net)
        # an activation's __class__ or instance forward may change in place (same id)
        acts = tuple(
            (type(a), getattr(a, "inplace", False), "forward" in vars(a)) for a in mods[1::2]
        )
        key = (tuple(map(id, mods)), acts)
        cached = self._plan_cache.get("plan")
        if cached is None or cached[0] != key:
            cached = (key, mods, self._build_plan(mods))  # mods kept alive: ids stay unique
            self._plan_cache["plan"] = cached
        plan = cached[2]
        tensors = None if plan is None else _plan_tensors(plan)
        if tensors is None:
            return None
        first = tensors[0][0][0]
        if x is not None and (x.dtype != first.dtype or x.device != first.device):
            return None
        # an ambient autocast would run the explicit pass's linear maps in low precision and
        # return a gradient of that dtype: the autograd path keeps the dtype of x
        return None if torch.is_autocast_enabled(first.device.type) else tensors

    @staticmethod
    def _build_plan(mods: tuple[nn.Module, ...]) -> Any:
        """The explicit pass's plan for ``mods`` (``None``: it does not apply)."""
        if len(mods) < 3 or len(mods) % 2 == 0:
            return None
        hidden = []
        n_hidden = len(mods) // 2
        for k in range(n_hidden):
            lin, act = mods[2 * k], mods[2 * k + 1]
            back = _activation_backward(act)
            if not _plain_linear(lin) or back is None or getattr(act, "inplace", False):
                return None
            if "forward" in vars(act):  # its own forward: the class's backward may not match
                return None
            needed = k + 1 < n_hidden or type(act) in _BACKWARD_READS_OUTPUT
            # the functional form of an activation without attributes (one call less per
            # layer and step), else the module's own forward (its attributes read per call)
            forward = _STATELESS_ACTIVATIONS.get(type(act), act.forward)
            hidden.append((lin, forward, back, needed))
        last = mods[-1]
        if not _plain_linear(last) or last.out_features != 1:  # type: ignore[union-attr]
            return None
        return tuple(hidden), last


MLPEnergy.gradient._returns_input_shape = True  # type: ignore[attr-defined]


class MLPVelocity(TorchEBMModule):
    r"""Time-conditioned MLP vector field $f_\theta(x, t)$, shaped like ``x``.

    The input of the MLP is ``x`` concatenated with Fourier features of ``t``
    ([`fourier_time_features`][torchebm.models.fourier_time_features]: ``t``, then $\sin/\cos(2^k\pi t)$ for
    ``k < n_time_frequencies``). It is the 2-D backbone for flow matching
    (``FlowSampler``), Equilibrium Matching (``EquilibriumMatchingLoss``, ``EqMEnergy``) and
    score/noise predictions. ``t`` may be a Python number, a 0-d tensor, ``(B,)`` or
    ``(B, 1)``. With ``time_conditioned=False`` the field ignores ``t`` (time-invariant
    EqM) and ``t`` may be omitted.

    Args:
        input_dim: Features per sample ``d``.
        hidden_dims: Hidden widths (default 64-64).
        activation: As in [`MLPEnergy`][torchebm.models.MLPEnergy] (default ``"silu"``).
        n_time_frequencies: Number of sin/cos frequency pairs of the time features.
        time_conditioned: Feed ``t`` to the network.
        dtype: Parameter dtype (default ``float32``).
        device: Parameter device.

    Example:
        >>> field = MLPVelocity(2)
        >>> x = torch.randn(8, 2)
        >>> field(x, 0.5).shape
        torch.Size([8, 2])
        >>> torch.allclose(field(x, 0.5), field(x, torch.full((8,), 0.5)))
        True

    References:
        Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023.
        Tancik et al., "Fourier Features Let Networks Learn High Frequency Functions in Low
        Dimensional Domains", NeurIPS 2020.
    """

    def __init__(
        self,
        input_dim: int = 2,
        hidden_dims: Sequence[int] | int = (64, 64),
        activation: ActivationLike = "silu",
        *,
        n_time_frequencies: int = 4,
        time_conditioned: bool = True,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        super().__init__(device=device, dtype=dtype)
        self.input_dim = check_int("input_dim", input_dim, minimum=1)
        self.hidden_dims = _hidden_dims(hidden_dims)
        self.n_time_frequencies = check_int("n_time_frequencies", n_time_frequencies, minimum=0)
        self.time_conditioned = check_bool("time_conditioned", time_conditioned)
        t_dim = 1 + 2 * self.n_time_frequencies if self.time_conditioned else 0
        self.net = _mlp(self.input_dim + t_dim, self.hidden_dims, self.input_dim, activation)
        self.net.to(device=self._torchebm_probe.device, dtype=dtype)
        self._freqs: torch.Tensor | None = None

    def _times(self, t: Any, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if not isinstance(t, torch.Tensor):  # (a tensor first: no numbers ABC check per call)
            if isinstance(t, numbers.Real) and not isinstance(t, bool):
                return torch.full((b,), float(t), device=x.device, dtype=x.dtype)
            raise TypeError(f"t must be a number or a tensor, got {type(t).__name__}")
        if t.device != x.device or t.dtype != x.dtype:
            t = t.to(device=x.device, dtype=x.dtype)
        if t.numel() == 1 and t.ndim <= 2:
            return t.reshape(1).expand(b)
        if (t.ndim == 1 and t.shape[0] == b) or (t.ndim == 2 and t.shape == (b, 1)):
            return t.reshape(b)
        raise ShapeError(f"t must be a number, 0-d, ({b},) or ({b}, 1), got shape {tuple(t.shape)}")

    def forward(self, x: torch.Tensor, t: Any = None) -> torch.Tensor:
        """Field at ``(x, t)``: ``x`` ``(B, input_dim)`` (or ``(B, ...)``) -> shaped like ``x``.

        Args:
            x: Inputs `(B, input_dim)` (or `(B, ...)`), of the parameters' dtype.
            t: Times `(B,)` or one time; required when ``time_conditioned``, ignored otherwise.
        """
        flat = _flatten_input(x, self.input_dim, type(self).__name__)
        if not flat.is_floating_point():  # the time features would promote it: no torch error
            check_input_dtype(type(self).__name__, flat, self.dtype)
        if self.time_conditioned:
            if t is None:
                raise ValueError(
                    "MLPVelocity is time conditioned and needs t (construct it with "
                    "time_conditioned=False for a time-invariant field)"
                )
            # the features of fourier_time_features, concatenated to x in one cat, with the
            # frequencies cached per device/dtype (sampling calls this once per step)
            tc = self._times(t, flat).reshape(-1, 1)
            if self.n_time_frequencies == 0:
                flat = torch.cat([flat, tc], dim=1)
            else:
                a = tc * self._frequencies(tc)
                flat = torch.cat([flat, tc, torch.sin(a), torch.cos(a)], dim=1)
        try:  # the times are cast to x's dtype: the layers see x's dtype
            out = self.net(flat)
        except RuntimeError:  # torch's dtype mismatch names no argument; no dtype read per call
            check_input_dtype(type(self).__name__, x, self.dtype)
            raise
        return out if out.shape == x.shape else out.reshape(x.shape)

    def _frequencies(self, like: torch.Tensor) -> torch.Tensor:
        freqs = self._freqs
        if (
            freqs is None
            or freqs.device != like.device
            or freqs.dtype != like.dtype
            or (freqs.is_inference() and not torch.is_inference_mode_enabled())
        ):
            freqs = _frequencies(self.n_time_frequencies, like)
            self._freqs = freqs  # a plain tensor attribute: a cache, not a buffer
        return freqs
