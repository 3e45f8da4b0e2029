r"""Helpers of the flow objectives (Flow Matching, EqM, Energy Matching), and the call
plumbing every loss shares (`loss_conditioning`, `checked_loss`)."""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from torchebm.core import (
    BaseCoupling,
    BaseInterpolant,
    BaseLoss,
    BaseSampler,
    renamed_kwargs,
    warn_once,
)
from torchebm.core._module import warn_user
from torchebm.core.distributed import is_distributed, unwrap_model
from torchebm.core.errors import (
    ConfigurationError,
    NonFiniteError,
    ShapeError,
    check_energies,
    check_finite,
    check_finite_tensor,
    check_generator,
    check_probability,
    check_tensor,
)
from torchebm.couplings import resolve_coupling
from torchebm.flows._time_sampling import LossTimeSampler, check_loss_weight_fn
from torchebm.integrators._compat_089 import ConditioningAttrs089, Hooks089, accept_089_pickle
from torchebm.integrators._state import autograd_grad, autograd_ready
from torchebm.interpolants import resolve_interpolant

__all__ = [
    "mean_flat",
    "trimmed_mean",
    "compute_flow_weight",
    "compute_eqm_ct",
    "dispersive_loss",
    "split_model_output",
    "energy_gradient",
    "source_batch",
    "weighted_mean",
    "batch_loss",
]


def check_sampler_model(model: Any, sampler: Any) -> None:
    """Warn when ``sampler.model`` has parameters but none of ``model``'s trainable ones (of
    all its ones when none is trainable yet): the negatives come from another model (a
    mistake, unless on purpose: an EMA copy, a teacher; a wrapper such as DDP or a guidance
    model shares the parameters and is not warned; two models on one frozen backbone do
    not share what trains)."""
    other = getattr(sampler, "model", None)
    if not (isinstance(model, nn.Module) and isinstance(other, nn.Module)):
        return
    params = list(model.parameters())
    ours = {id(p) for p in params if p.requires_grad} or set(map(id, params))
    theirs = set(map(id, other.parameters()))
    if ours and theirs and not ours & theirs:
        warn_user(
            f"sampler.model ({type(other).__name__}) shares no trainable parameter with model "
            f"({type(model).__name__}): the negatives are drawn from another model; build "
            "the sampler on this model (on model.module when model is DDP-wrapped), or "
            "ignore this warning if that model is meant (an EMA copy, a teacher)"
        )


#: What the library calls a model with: an energy ``model(x, **model_kwargs)``, a velocity or
#: score field ``model(x, t, **model_kwargs)``.
ENERGY_CALL, FIELD_CALL = ("x",), ("x", "t")
_ACCEPTS = {
    ENERGY_CALL: "an energy forward(x, **model_kwargs) -> (B,); for a velocity or score field "
    "forward(x, t) use FlowSampler, FlowMatchingLoss or EquilibriumMatchingLoss",
    FIELD_CALL: "a velocity or score field forward(x, t, **model_kwargs) returning the shape of x; "
    "for an energy forward(x) -> (B,) use LangevinDynamics, HamiltonianMonteCarlo or an energy "
    "loss (ContrastiveDivergence, score matching, EnergyMatchingLoss)",
}


class ModelCallError(ConfigurationError, TypeError):
    """A model whose signature refuses the call a sampler or loss makes (a ``TypeError`` too,
    as the error Python raised before)."""


def check_model_object(owner: str, model: Any) -> Any:
    """``model``, unless it is a sampler or a loss (passed where the model belongs): a
    ``TypeError`` naming ``owner`` and what it accepts."""
    if isinstance(model, (BaseSampler, BaseLoss)):
        raise TypeError(
            f"{owner} requires a model (an energy or a field, e.g. an nn.Module), got the "
            f"{'sampler' if isinstance(model, BaseSampler) else 'loss'} {type(model).__name__}; "
            "pass the model it was built on (its .model)"
        )
    return model


def _refusal(model: Any, args: tuple, kwargs: dict) -> tuple[str, str] | None:
    """``(signature, reason)`` when ``model``'s signature refuses ``model(*args, **kwargs)``;
    ``None`` when it accepts the call or has no signature to read (a DDP or
    ``torch.compile`` wrapper is read through to its module's ``forward``)."""
    fn = unwrap_model(model).forward if isinstance(model, nn.Module) else model
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to decide with
        return None
    try:
        sig.bind(*args, **kwargs)
    except TypeError as err:
        return str(sig), str(err)
    return None


def _raised_inside(model: Any, err: BaseException) -> bool:
    """Whether ``err`` was raised after the function whose signature `_refusal` reads was
    entered (its code is in the traceback): the model's own error, not a refused call. A
    forward pre-hook or a ``__call__`` override may feed ``forward`` more than the call."""
    fn = unwrap_model(model).forward if isinstance(model, nn.Module) else model
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = inspect.unwrap(fn)  # what inspect.signature reads (functools.wraps)
    fn = getattr(fn, "__func__", fn)  # a bound method
    if not hasattr(fn, "__code__"):  # a callable object: its __call__
        fn = type(fn).__call__ if callable(fn) else None
    code, tb = getattr(fn, "__code__", None), err.__traceback__
    while tb is not None and tb.tb_frame.f_code is not code:
        tb = tb.tb_next
    return code is not None and tb is not None


def _missing_conditioning(model: Any, call: tuple, model_kwargs: dict) -> list[str]:
    """The required keyword-only inputs of the model's ``forward`` (e.g. the ``y`` of a
    label-guided wrapper) the call leaves out, when passing them would make it accepted."""
    fn = unwrap_model(model).forward if isinstance(model, nn.Module) else model
    params = inspect.signature(fn).parameters.values()  # readable: `_refusal` read it
    needs = [
        p.name
        for p in params
        if p.kind is p.KEYWORD_ONLY
        and p.default is p.empty
        and p.name not in (*FIELD_CALL, *model_kwargs)  # a keyword-only t: a field, not y
    ]
    accepted = _refusal(model, call, {**model_kwargs, **dict.fromkeys(needs)}) is None
    return needs if needs and accepted else []


def explain_model_error(
    owner: str, model: Any, err: BaseException, call: tuple[str, ...], model_kwargs: dict
) -> None:
    """Raise a `ModelCallError` from ``err`` (a ``TypeError`` of ``owner``'s model call)
    when ``model``'s signature refuses ``model(*call, **model_kwargs)``, the call ``owner``
    makes; return when it accepts it (``err`` came from inside the model: the caller
    re-raises it unchanged).

    Only called on the failure path: the signature is read only after the error. An error
    raised once the function read was entered (its code in the traceback: a forward fed by
    a pre-hook or a ``__call__`` override) is the model's own, left alone.

    Args:
        owner: The sampler or loss class name.
        model: Its model (a DDP or ``torch.compile`` wrapper is read through).
        err: The error of the call.
        call: The positional inputs it passes, `ENERGY_CALL` or `FIELD_CALL`.
        model_kwargs: The conditioning it passes.

    Raises:
        ModelCallError: the signature refuses the call.
    """
    if isinstance(err, ModelCallError) or not isinstance(err, TypeError):
        return
    if _raised_inside(model, err):  # the model's own TypeError: re-raised unchanged
        return
    refused = _refusal(model, call, model_kwargs)
    if refused is None:
        return
    sig, reason = refused
    inner = unwrap_model(model) if isinstance(model, nn.Module) else model
    name = type(inner).__name__
    name = f"{name}.forward" if isinstance(inner, nn.Module) else getattr(inner, "__name__", name)
    made = f"model({', '.join([*call, *(f'{k}=...' for k in model_kwargs)])})"
    if model_kwargs and _refusal(model, call, {}) is None:
        hint = (
            f"the model takes no conditioning {sorted(model_kwargs)}: pass y / model_kwargs only "
            "to a conditional model (one whose forward takes them), or leave them out"
        )
    elif needs := _missing_conditioning(model, call, model_kwargs):
        hint = f"the model requires the conditioning {needs}: pass it as y / model_kwargs"
    else:
        hint = f"{owner} accepts {_ACCEPTS[call]}"
    msg = f"{owner} calls {made} but {name}{sig} refuses it ({reason}); {hint}"
    raise ModelCallError(msg) from err


@renamed_kwargs(tensor="t")
def mean_flat(t: torch.Tensor) -> torch.Tensor:
    """Mean over every non-batch dimension: ``(B, ...) -> (B,)``.

    Args:
        t: A floating (or complex) tensor `(B, ...)`; a 0-d or 1-D one is returned as it
            is (an integer one is a `TypeError`).

    Example:
        >>> mean_flat(torch.ones(3, 2, 4)).tolist()
        [1.0, 1.0, 1.0]
    """
    if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()):
        check_tensor("t", t, floating=True)  # names the argument and the type received
    if t.ndim <= 1:
        return t
    # a reduction over the trailing dims directly: no reshape (and no view node in autograd)
    return t.mean(dim=1) if t.ndim == 2 else t.mean(dim=tuple(range(1, t.ndim)))


def trimmed_mean(values: torch.Tensor, trim_fraction: float) -> torch.Tensor:
    r"""Mean of ``values`` after dropping the ``int(trim_fraction * n)`` **largest** entries.

    Used by Energy Matching to ignore the highest-energy (unconverged) negatives.

    Args:
        values: 1-D tensor.
        trim_fraction: Fraction in ``[0, 1)``.

    Returns:
        A 0-d tensor; NaN when ``values`` holds a NaN (never trimmed away).

    Raises:
        ValueError: ``trim_fraction`` outside ``[0, 1)``, ``values`` not 1-D or empty.
        TypeError: ``values`` is not a floating-point tensor.

    Example:
        >>> trimmed_mean(torch.tensor([1.0, 2.0, 3.0, 100.0]), 0.25).item()
        2.0
    """
    trim_fraction = check_probability("trim_fraction", trim_fraction, closed_right=False)
    check_tensor("values", values, ndim=1, floating=True)
    n = values.shape[0]
    k = int(trim_fraction * n)
    if k == 0:
        return values.mean()
    kept = torch.topk(values, n - k, largest=False, sorted=False).values
    # topk ranks NaN above every number, so it would be trimmed away: keep it in the result
    # (no host read) for the caller's nan_policy to report
    return torch.where(values.isnan().any(), values.new_tensor(math.nan), kept.mean())


def _check_times(t: Any) -> None:
    """`t` must be a real, non-bool tensor (attribute checks only: no host read)."""
    if isinstance(t, torch.Tensor) and not t.is_complex() and t.dtype != torch.bool:
        return
    check_tensor("t", t, non_empty=False)  # not a tensor, or complex
    raise TypeError(f"t must be a real tensor of times, got dtype {t.dtype}")


def compute_flow_weight(t: torch.Tensor, cutoff: float = 0.8) -> torch.Tensor:
    r"""Energy-Matching flow gate $w(t) = \mathrm{clip}\big((1-t)/(1-\text{cutoff}), 0, 1\big)$.

    ``cutoff >= 1`` disables gating (ones).

    Args:
        t: Times `(B,)` in $[0, 1]$.
        cutoff: Time after which the weight decays linearly to 0 at $t = 1$.

    Returns:
        $w(t)$, shaped like ``t``.

    Example:
        >>> [round(v, 4) for v in compute_flow_weight(torch.tensor([0.0, 0.9, 1.0]), 0.8).tolist()]
        [1.0, 0.5, 0.0]
    """
    _check_times(t)
    if check_finite("cutoff", cutoff) >= 1.0:
        return torch.ones_like(t)
    return ((1 - t) / (1 - cutoff)).clamp(0.0, 1.0)


def compute_eqm_ct(
    t: torch.Tensor, threshold: float = 0.8, multiplier: float = 4.0
) -> torch.Tensor:
    r"""EqM gradient-magnitude schedule $c(t) = \lambda\,\min\big(1, (1-t)/(1-a)\big)$.

    Constant $\lambda$ (``multiplier``) up to ``threshold`` $a$, then decaying
    linearly to 0 at the data (t = 1). ``threshold >= 1`` gives the constant $\lambda$.

    Args:
        t: Times `(B,)` in $[0, 1]$.
        threshold: $a$, where the decay starts.
        multiplier: $\lambda$, the magnitude before the decay.

    Returns:
        $c(t)$, shaped like ``t``.

    Example:
        >>> [round(v, 4) for v in compute_eqm_ct(torch.tensor([0.0, 0.9, 1.0])).tolist()]
        [4.0, 2.0, 0.0]

    References:
        Wang & Du, "Equilibrium Matching: Generative Modeling with Implicit Energy-Based
        Models", 2025.
    """
    _check_times(t)
    multiplier = check_finite("multiplier", multiplier)
    if check_finite("threshold", threshold) >= 1.0:
        return torch.full_like(t, multiplier)
    return torch.rsub(t, 1.0).div_(1.0 - threshold).clamp_(max=1.0).mul_(multiplier)


def dispersive_loss(z: torch.Tensor) -> torch.Tensor:
    r"""Dispersive (InfoNCE-style repulsion) regulariser on intermediate representations.

    With ``z`` flattened to ``(B, D')`` and $d_{ij} = \|z_i - z_j\|^2 / D'$ over all
    $B^2$ ordered pairs (diagonal included):
    $\log \frac{1}{B^2}\sum_{ij} e^{-d_{ij}}$ (computed with ``logsumexp``). Lower when
    the representations spread out.

    Args:
        z: Representations `(B, ...)`, floating point.

    Returns:
        A scalar tensor ($\le 0$).

    Example:
        >>> float(dispersive_loss(torch.zeros(4, 3)))
        0.0

    References:
        Wang & He, "Diffuse and Disperse: Image Generation with Representation
        Regularization", 2025.
    """
    check_tensor("z", z, min_ndim=1, floating=True)
    flat = z.reshape(z.shape[0], -1)
    b = flat.shape[0]
    dist = _scaled_distances(flat, direct=b <= 64).to(z.dtype)
    return torch.logsumexp(-dist.reshape(-1), dim=0) - math.log(b * b)


def _scaled_distances(flat: torch.Tensor, direct: bool) -> torch.Tensor:
    r"""$d_{ij} = \|x_i - x_j\|^2 / D$, by direct differences (``direct``: exact, a
    $(B, B, D)$ tensor) or from the Gram matrix.

    $\|a\|^2 + \|b\|^2 - 2ab$ cancels when the rows share a large offset, so for the Gram
    matrix the rows are centred first (distances are translation invariant). Both divide by
    a power of two $s$ near the largest $|value|$ (exact: no difference or square
    overflows) and apply $s^2/D$ in two finite factors, so a far pair gets $d = \infty$
    ($e^{-d} = 0$) and never a NaN value or gradient; the diagonal is exactly 0. Computed
    in float32 at least: in float16 the sum of the $D$ squares overflowed at $D = 65536$
    ($d = \infty$ for pairs at $d = 2$) and a difference beyond 65504 gave NaN gradients.
    """
    x = flat.to(torch.promote_types(flat.dtype, torch.float32))
    x = x if direct else x - x.mean(0)
    top = x.detach().abs().max()
    mantissa = torch.frexp(top).mantissa  # top = mantissa * 2^e: top / mantissa is 2^e exactly
    s = torch.where(mantissa > 0, top / mantissa, torch.ones_like(top))
    x = x / s
    if direct:
        sq = (x.unsqueeze(1) - x.unsqueeze(0)).square().sum(-1)
    else:
        norms = x.square().sum(1)
        sq = (norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * (x @ x.T)).clamp(min=0.0)
    factor = s / math.sqrt(x.shape[1])
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return torch.where(eye, 0.0, sq * factor * factor)


def split_model_output(out: Any, like: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
    """``model(...)`` may return ``field`` or ``(field, activations)``; return both parts.

    With ``like`` (the model's input), ``field`` must have its shape: a regression target
    would broadcast against a ``(B, 1)`` output without error.
    """
    field, extra = out, None
    if isinstance(out, (tuple, list)):
        if len(out) == 0:
            raise ConfigurationError("model returned an empty tuple")
        field, extra = out[0], (out[1] if len(out) > 1 else None)
    if like is not None and (not isinstance(field, torch.Tensor) or field.shape != like.shape):
        got = tuple(field.shape) if isinstance(field, torch.Tensor) else type(field).__name__
        raise ShapeError(
            f"the model must return a field shaped like x {tuple(like.shape)}, got {got}"
        )
    return field, extra


def outside_autocast(*device_types: str) -> contextlib.AbstractContextManager:
    """An ambient autocast of the given device types turned off (a null context where none
    is on, or for a device type autocast does not know): for energies that a Metropolis
    test, a replica swap or an importance weight compares, which half precision rounds
    (bfloat16: an energy near 1000 to a multiple of 4)."""
    on = []
    for device_type in dict.fromkeys(device_types):
        try:
            if torch.is_autocast_enabled(device_type):
                on.append(device_type)
        except RuntimeError:  # "unknown device type for autocast" (meta, ...)
            pass
    if len(on) <= 1:  # one autocast object: what torch.compile traces
        return torch.autocast(on[0], enabled=False) if on else contextlib.nullcontext()
    return _all_off(on)


@contextlib.contextmanager
def _all_off(device_types: list[str]) -> Iterator[None]:
    """Autocast off for each of ``device_types``, from the ``with`` on (not at the call)."""
    with contextlib.ExitStack() as stack:
        for device_type in device_types:
            stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def twice_differentiable(create_graph: bool = True) -> contextlib.AbstractContextManager:
    """Where a model's output is differentiated twice (``create_graph=True``): attention
    through the math kernel of ``scaled_dot_product_attention``, whose flash and
    memory-efficient kernels have no double backward (a DiT energy failed in ``backward()``
    with "derivative for ..._flash_attention_..._backward is not implemented"). A null
    context otherwise (about 7 us per use).

    torch's backend switches are process-wide, so the switch is counted across threads: the
    first thread in turns the math kernel on, the last one out restores what it found (with
    ``sdpa_kernel`` in each thread, one thread's exit turned flash attention back on under
    another's double backward, and overlapping exits left it off for the process)."""
    return _math_attention() if create_graph else contextlib.nullcontext()


_MATH_ATTENTION_LOCK = threading.Lock()
#: ``[threads inside twice_differentiable, the backend switches the first one found]``
_MATH_ATTENTION: list[Any] = [0, None]
#: ``torch.backends.cuda``'s public switches of the attention kernels (CPU and CUDA), math
#: on and every other off (what ``sdpa_kernel([SDPBackend.MATH])`` sets, but for the
#: "overrideable" kernel of out-of-tree devices, which has no public switch; the exit of
#: ``sdpa_kernel`` must run in the thread and context that entered it)
_MATH_ONLY = {"flash": False, "mem_efficient": False, "cudnn": False, "math": True}


def _attention_switches(values: dict[str, bool] | None = None) -> dict[str, bool]:
    """The switches of `_MATH_ONLY` that this torch has; set to ``values`` when given."""
    backends = torch.backends.cuda
    names = [n for n in _MATH_ONLY if hasattr(backends, f"{n}_sdp_enabled")]
    current = {n: bool(getattr(backends, f"{n}_sdp_enabled")()) for n in names}
    for name, on in (values or {}).items():
        if name in current:
            getattr(backends, f"enable_{name}_sdp")(on)
    return current


@contextlib.contextmanager
def _math_attention() -> Iterator[None]:
    with _MATH_ATTENTION_LOCK:
        if _MATH_ATTENTION[0] == 0:
            _MATH_ATTENTION[1] = _attention_switches(_MATH_ONLY)
        _MATH_ATTENTION[0] += 1
    try:
        yield
    finally:
        with _MATH_ATTENTION_LOCK:
            _MATH_ATTENTION[0] -= 1
            if _MATH_ATTENTION[0] == 0:
                _attention_switches(_MATH_ATTENTION[1])


def find_ddp(model: Any) -> nn.parallel.DistributedDataParallel | None:
    """The ``DistributedDataParallel`` module of ``model``: itself or one inside a wrapper
    (``torch.compile``, a user's module), else ``None``. Without a process group no DDP
    module can run and the module tree is not walked (a DiT-XL's walk took about 0.5 ms)."""
    ddp = nn.parallel.DistributedDataParallel
    if isinstance(model, ddp) or not isinstance(model, nn.Module) or not is_distributed():
        return model if isinstance(model, ddp) else None
    return next((m for m in model.modules() if isinstance(m, ddp)), None)


def second_order_ddp(owner: str, model: Any) -> nn.parallel.DistributedDataParallel | None:
    r"""`find_ddp` for a loss trained through $\nabla_x$ of the model (``torch.autograd.grad``
    with ``create_graph``), refusing ``DistributedDataParallel(static_graph=True)``, which does
    not average such gradients (measured on 2 gloo ranks, torch 2.15: each rank kept its own,
    silently, for score matching, EqM's explicit energies and Energy Matching). Call it where
    autograd is on (the loss may be back-propagated).

    Raises:
        ConfigurationError: ``model`` is or holds such a DDP module.
    """
    ddp = find_ddp(model)
    if ddp is not None and getattr(ddp, "static_graph", False):
        raise ConfigurationError(
            f"{owner} trains through grad_x of the model (torch.autograd.grad), whose "
            "parameter gradients DistributedDataParallel(static_graph=True) does not average "
            "(each rank would silently keep its own): build the DDP wrapper without "
            "static_graph"
        )
    return ddp


def zero_multiple(energy: torch.Tensor) -> torch.Tensor:
    """``0 * sum(energy)`` over its finite entries (0-d): added to a loss trained through
    $\nabla_x E$ under ``DistributedDataParallel``, it gives a zero gradient to what only
    shifts the energy (an output bias; none through $\nabla_x E$). DDP averages nothing
    until every parameter its forward used has a gradient: without it the ranks' gradients
    were left unaveraged, silently. Zeroed before the sum: a sum of float16 energies can
    overflow, and ``inf * 0`` is NaN."""
    return (torch.where(energy.isfinite(), energy, 0.0) * 0.0).sum()


def energy_gradient(
    model: nn.Module | Any,
    x: torch.Tensor,
    model_kwargs: dict,
    *,
    create_graph: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Return ``(V(x), grad_x V(x))`` for a scalar potential ``model(x, **kw) -> (B,)``.

    ``x`` must require grad. With ``create_graph=True`` the gradient is differentiable
    w.r.t. the model parameters (training through $\nabla_x V$).
    """
    with twice_differentiable(create_graph):
        energy = model(x, **model_kwargs) if model_kwargs else model(x)
    check_energies("the potential", energy, x.shape[0])
    (grad,) = autograd_grad(energy.sum(), x, create_graph=create_graph)
    return energy, grad


def source_batch(
    x1: torch.Tensor, x0: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """The source (noise) batch of a flow objective: the caller's ``x0``, checked to have
    the shape of the data ``x1`` and moved to its device and dtype, or standard normal
    noise drawn from ``generator`` when ``x0`` is ``None``.

    Raises:
        ValueError: ``x0`` is not a tensor shaped like ``x1``.
        TypeError: ``x0`` is not floating-point.

    Example:
        >>> source_batch(torch.zeros(4, 2), None, torch.Generator().manual_seed(0)).shape
        torch.Size([4, 2])
    """
    if x0 is None:
        return torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    if isinstance(x0, torch.Tensor) and x0.shape == x1.shape:
        check_tensor("x0", x0, floating=True)
    else:
        raise ConfigurationError(
            f"x0 must have the shape of x {tuple(x1.shape)}, got "
            f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}"
        )
    return x0.to(device=x1.device, dtype=x1.dtype)


def paired_conditioning(conditioning: dict, index: torch.Tensor | None, batch: int) -> dict:
    """``conditioning`` of the data rows a coupling paired (``CouplingResult.index``): each
    per-sample value indexed like ``x1``, so a label stays with its sample; unchanged when the
    coupling kept ``x1`` in order (``index`` is ``None``).

    Per-sample values: a tensor or array with leading dimension ``batch``, and a list of
    ``batch`` items (labels, prompts). Mappings (a ``dict``, a tokenizer's ``BatchEncoding``),
    tuples (a group such as ``(y, mask)``, a hyper-parameter such as ``(64, 32)``) and lists of
    another length are searched for them; anything else is not per-sample and kept.

    Raises:
        ConfigurationError: a list of ``batch`` items that are themselves per-sample tensors
            or arrays: one value per sample, or a group of per-sample values (pass a group as
            a tuple, one value per sample stacked).

    Example:
        >>> paired_conditioning({"y": torch.tensor([5, 6, 7])}, torch.tensor([2, 0, 0]), 3)
        {'y': tensor([7, 5, 5])}
        >>> paired_conditioning({"y": ["a", "b", "c"], "size": (64, 32)}, torch.tensor([2, 0, 0]), 3)
        {'y': ['c', 'a', 'a'], 'size': (64, 32)}
    """
    if index is None or not conditioning:
        return conditioning
    paired = {k: conditioning_rows(k, v, index, batch) for k, v in conditioning.items()}
    # a class-aware coupling (its compute_cost reads y) pairs within a condition: unchanged
    rows = [k for k, v in conditioning.items() if not _same(v, paired[k])]
    if rows and batch > 1:
        warn_once(
            "paired_conditioning",
            f"the coupling re-pairs noise and data over the whole batch, across the per-sample "
            f"conditioning {rows}: each condition gets the noise rows nearest its data, not "
            "N(0, I) ones, so the conditional law learned is biased (two classes trained with "
            "OT: sd 2.3 for 0.3). Train a conditional model with coupling='independent' "
            "(or batches of one condition)",
            RuntimeWarning,
        )
    return paired


def conditioning_rows(name: str, value: Any, index: torch.Tensor, batch: int) -> Any:
    """``value`` with its per-sample entries taken at rows ``index`` (any length: a coupling's
    pairing, or tiled copies of the batch); per-sample values as in ``paired_conditioning``."""
    if isinstance(value, torch.Tensor) or _is_array(value):
        if not _is_rows(value, batch):
            return value
        return value[index] if isinstance(value, torch.Tensor) else value[index.cpu().numpy()]
    if isinstance(value, Mapping):
        items = {k: conditioning_rows(f"{name}[{k!r}]", v, index, batch) for k, v in value.items()}
        try:  # its own type (an OrderedDict, a BatchEncoding), else a dict
            new: Any = copy.copy(value)
            new.update(items)
            return new
        except (TypeError, AttributeError):
            return items
    if isinstance(value, tuple) or (isinstance(value, list) and len(value) != batch):
        members = [conditioning_rows(f"{name}[{i}]", v, index, batch) for i, v in enumerate(value)]
        return type(value)(*members) if hasattr(value, "_fields") else type(value)(members)
    if not isinstance(value, list):
        return value
    if any(_is_rows(v, batch) for v in value):
        raise ConfigurationError(
            f"conditioning {name!r} is a list of {batch} tensors or arrays with leading "
            f"dimension {batch}, the batch size: one value per sample cannot be told from a "
            "group of per-sample values. Pass a group as a tuple, or stack one value per "
            "sample (with a coupling, coupling='independent' also keeps the data's order)"
        )
    return [value[i] for i in index.tolist()]  # one item per sample


def holds_rows(value: Any, batch: int) -> bool:
    """Whether ``value`` holds a per-sample value of a batch of ``batch`` samples, as
    `conditioning_rows` finds them: a tensor or array with leading dimension ``batch``, a list
    of ``batch`` items, also inside mappings, tuples and lists of another length.

    Example:
        >>> holds_rows({"y": ["a", "b", "c"]}, 3), holds_rows({"size": (64, 32)}, 3)
        (True, False)
    """
    if isinstance(value, torch.Tensor) or _is_array(value):
        return _is_rows(value, batch)
    if isinstance(value, Mapping):
        return any(holds_rows(v, batch) for v in value.values())
    if isinstance(value, list) and len(value) == batch:
        return True
    return isinstance(value, (list, tuple)) and any(holds_rows(v, batch) for v in value)


def _is_rows(value: Any, batch: int) -> bool:
    """A tensor or array with leading dimension ``batch``."""
    is_tensor = isinstance(value, torch.Tensor) or _is_array(value)
    return is_tensor and value.ndim > 0 and value.shape[0] == batch


def _is_array(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "shape")


def _same(a: Any, b: Any) -> bool:
    """Whether pairing left ``a`` as it was (``b``), element by element."""
    if a is b:
        return True
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if _is_array(a):
        return bool((a == b).all())
    if isinstance(a, Mapping):
        return all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, (list, tuple)):
        return all(_same(u, v) for u, v in zip(a, b))
    return bool(a == b)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    r"""Batch mean of per-sample ``values`` ``(B,)``, weighted by a coupling's ``weights``:
    $\sum_i w_i v_i / \max(\sum_i w_i, 10^{-12})$, or the plain mean when ``weights`` is
    ``None``. In the dtype of ``values``, summed in float32 at least (in float16 the sums
    overflowed to inf when $\sum_i w_i v_i > 65504$, a loss of 32 over 2,048 samples).

    Example:
        >>> weighted_mean(torch.tensor([1.0, 3.0]), torch.tensor([3.0, 1.0])).item()
        1.5
    """
    if weights is None:
        return values.mean()  # torch sums a half-precision tensor in float32
    acc = torch.promote_types(values.dtype, torch.float32)
    weights = weights.to(acc)
    return ((weights * values.to(acc)).sum() / weights.sum().clamp(min=1e-12)).to(values.dtype)


def batch_loss(terms: dict[str, Any]) -> torch.Tensor:
    r"""The scalar loss of a flow objective's ``training_losses`` terms:
    ``weighted_mean(terms["loss"], terms["weights"])``.

    When the terms carry ``elementwise`` (the per-element loss ``(B, *event_shape)`` whose
    per-sample mean is ``loss``) and no coupling weights, its plain mean: the same value up
    to rounding (every sample has as many elements), with one reduction instead of two in
    the forward and the backward pass.

    Example:
        >>> err = torch.tensor([[1.0, 3.0], [5.0, 7.0]])
        >>> batch_loss({"loss": err.mean(1), "weights": None, "elementwise": err}).item()
        4.0
    """
    elementwise, weights = terms.get("elementwise"), terms["weights"]
    if weights is None and elementwise is not None:
        return elementwise.mean()
    return weighted_mean(terms["loss"], weights)


def _time_option(field: str) -> Any:
    """torchebm 0.8.9's attribute ``field`` of a flow objective's `time_sampler` (``kind`` is
    ``t_sampler``): read from it; a write builds a new `LossTimeSampler` (its checks)."""

    def write(loss: Any, value: Any) -> None:
        now = loss.time_sampler
        parts = {"kind": now.kind, "t_p_mean": now.t_p_mean, "t_p_std": now.t_p_std}
        loss.time_sampler = LossTimeSampler(**{**parts, field: value})

    return property(lambda loss: getattr(loss.time_sampler, field), write)


class FlowObjective(ConditioningAttrs089, Hooks089):
    """Mixin of the flow objectives (Flow Matching, EqM, Energy Matching): the parts they are
    built from (set in their constructors by `_set_flow_parts`) and the one ``forward`` they
    share. An objective implements ``training_losses`` (its terms) and, when its model is not
    called as ``model(x, **model_kwargs)``, `probe_model`. ``t_sampler``, ``t_p_mean`` and
    ``t_p_std`` read and write torchebm 0.8.9's attributes through `time_sampler`."""

    _retired_hooks: ClassVar[dict[str, str]] = {
        "_sample_t": "pass `t_sampler=`, a callable `(batch, *, device, dtype, generator) -> t`",
        "_probe_forward": "override `probe_model`",
    }

    #: The trained network (callable).
    model: Any
    #: The path $x_t = \alpha(t) x_1 + \sigma(t) x_0$ between noise and data.
    interpolant: BaseInterpolant
    #: How noise and data samples are paired.
    coupling: BaseCoupling
    #: How the training times are drawn.
    time_sampler: LossTimeSampler
    #: Optional per-sample weight ``w(t)`` of the loss.
    loss_weight_fn: Callable[[torch.Tensor], torch.Tensor] | None
    #: How the model is called (named in the error of a model that refuses the call).
    _model_call: tuple[str, ...] = ENERGY_CALL
    __setstate__ = accept_089_pickle("conditioning")  # losses pickled whole by torchebm 0.8.9

    t_sampler = _time_option("kind")
    """``t_sampler`` of `time_sampler`: ``"uniform"``, ``"lognormal"`` or the callable
    (torchebm 0.8.9's attribute; a write of it, `t_p_mean` or `t_p_std` builds a new
    `time_sampler` with the constructor's checks, used from the next training call)."""
    t_p_mean = _time_option("t_p_mean")
    """``t_p_mean`` of `time_sampler` (0.8.9's attribute; assignable, see `t_sampler`)."""
    t_p_std = _time_option("t_p_std")
    """``t_p_std`` of `time_sampler` (0.8.9's attribute; assignable, see `t_sampler`)."""

    def _set_flow_parts(
        self,
        *,
        model: Any,
        interpolant: Any,
        coupling: Any,
        default_coupling: str,
        t_sampler: Any,
        t_p_mean: float,
        t_p_std: float,
        loss_weight_fn: Any,
    ) -> None:
        """Check and set the parts: a callable model, the interpolant (default ``"linear"``),
        the coupling (default ``default_coupling``), the time sampler and the loss weight.

        Example:
            >>> self._set_flow_parts(  # doctest: +SKIP
            ...     **forward_kwargs(locals(), self._set_flow_parts), default_coupling="ot")
        """
        if not callable(model):
            raise TypeError(f"model must be callable (an nn.Module), got {type(model).__name__}")
        owner = type(self).__name__
        check_model_object(owner, model)
        self.model = model
        self.interpolant = resolve_interpolant(interpolant, default="linear", owner=owner)
        self.coupling = resolve_coupling(coupling, default=default_coupling, owner=owner)
        self.time_sampler = LossTimeSampler(t_sampler, t_p_mean, t_p_std)
        self.loss_weight_fn = check_loss_weight_fn(loss_weight_fn)

    def probe_model(self, x: torch.Tensor, model_kwargs: dict) -> Any:
        """The model's output on the samples ``x`` under ``model_kwargs``, called as the loss
        calls it (the one-time check that the model reads ``y`` probes one sample).

        Default ``model(x, **model_kwargs)`` (an energy); a time-conditioned objective
        calls its network at a fixed time.
        """
        return self.model(x, **model_kwargs)

    def compute_loss(
        self: Any, x: torch.Tensor, x0: Any = None, model_kwargs: Any = None, generator: Any = None
    ) -> torch.Tensor:
        """The scalar loss of ``training_losses`` (its coupling-weighted mean, else its mean)."""
        return batch_loss(
            self.training_losses(x, model_kwargs=model_kwargs, x0=x0, generator=generator)
        )

    def forward(
        self: Any,
        x: torch.Tensor,
        *,
        y: torch.Tensor | None = None,
        x0: torch.Tensor | None = None,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
        **legacy_model_kwargs: Any,
    ) -> torch.Tensor:
        """The loss of the data batch ``x`` ``(B, *event)``; a scalar.

        Args:
            x: Data batch (cast to the loss's device and dtype).
            y: Conditioning, shorthand for ``model_kwargs={"y": y}``.
            x0: Source samples shaped like ``x`` (default: standard normal).
            model_kwargs: Conditioning forwarded to the model.
            generator: Source of every random draw of the call (label dropout, source,
                coupling, times, negatives).
            **legacy_model_kwargs: Bare keyword conditioning, as torchebm 0.8.9 accepted it
                (deprecated: one ``DeprecationWarning``; use ``model_kwargs={...}``).

        Raises:
            NonFiniteError: the loss is NaN/inf under ``nan_policy="raise"`` (naming the
                first input, ``x`` or ``x0``, that holds NaN/inf and its rows).
        """
        x = autograd_ready(self.prepare_input(x))  # data made under inference_mode
        conditioning = loss_conditioning(
            self, x, model_kwargs, generator, legacy_model_kwargs, y=y,
            probe=lambda m: self.probe_model(x[:1], m),
        )  # fmt: skip
        return checked_loss(
            self,
            lambda: self.compute_loss(x, x0=x0, model_kwargs=conditioning, generator=generator),
            {"x": x, "x0": x0},
            conditioning,
        )


def _with_gradients(probe: Callable[[dict], Any], model: Any) -> Callable[[dict], Any]:
    """``probe`` for the check that the model reads ``y``, extended by its gradients.

    A model whose label path ends in a zero-initialised layer (AdaLN-Zero: `DiT`,
    `TimeConditionedMLP`) gives one output for every label until that layer has moved,
    which takes two optimizer steps; after the first one the output is no longer zero but
    the gradients of the other parameters already depend on ``y``. The returned probe gives
    the output followed by the sum, squared sum and a position-weighted sum of each
    trainable parameter's gradient (of the output's sum), so the check sees ``y`` there
    (also a zero-initialised label embedding, whose gradient moves to the row of ``y``); an
    all-zero output (at initialisation) is returned alone, and the check probes again at
    the next call. The trainable parameters are listed when the probe runs (the one-time
    check), not at every call that builds it.
    """

    def probe_with_gradients(conditioning: dict) -> Any:
        trainable = (
            [p for p in model.parameters() if p.requires_grad]
            if isinstance(model, nn.Module)
            else []
        )
        with torch.enable_grad():
            out = probe(conditioning)
            if not isinstance(out, torch.Tensor) or not out.requires_grad or not trainable:
                return out
            if bool((out == 0).all()):
                return out.detach()
            grads = autograd_grad(out.sum(), trainable, allow_unused=True)
        stats = [s.float() for g in grads if g is not None for s in _gradient_stats(g)]
        return torch.cat([out.detach().flatten().float(), torch.stack(stats)])

    return probe_with_gradients


def _gradient_stats(g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Sum, squared sum and a position-weighted sum of a gradient: the last tells apart
    gradients that only sit in other rows (a zero-initialised label embedding's row ``y``)."""
    flat = g.flatten().double()  # a float16 ramp overflows past 65504 elements
    ramp = torch.arange(1, flat.numel() + 1, device=g.device, dtype=torch.float64)
    return flat.sum(), flat.square().sum(), (flat * ramp).sum()


def loss_conditioning(
    loss: Any,
    x: torch.Tensor,
    model_kwargs: Any,
    generator: torch.Generator | None,
    legacy: dict | None = None,
    *,
    y: Any = None,
    probe: Callable[[dict], Any] | None = None,
) -> dict:
    """The conditioning of a loss's call on the data batch ``x`` (every loss's ``forward``).

    ``model_kwargs`` with ``legacy`` (deprecated bare keywords; one ``DeprecationWarning``)
    merged and the ``y=`` shorthand folded in (``y`` given both as ``y=`` and in
    ``model_kwargs`` is a `ConfigurationError`, as in torchebm 0.8.9); a tensor ``y`` must
    hold one label per sample; then the loss's label dropout. ``probe`` (``conditioning ->
    output`` of the model on one input, default ``loss.model(x[:1], **conditioning)``: an
    energy model) serves the one-time check that the model reads ``y``.
    """
    check_generator(generator)  # a seed or numpy Generator failed inside torch, or did nothing
    probe = probe or (lambda conditioning: loss.model(autograd_ready(x[:1]), **conditioning))
    conditioning = loss._resolve_model_kwargs(model_kwargs, legacy)
    if y is not None:
        if "y" in conditioning:
            raise ConfigurationError("pass y either as y= or in model_kwargs, not both")
        conditioning = loss._resolve_model_kwargs({**conditioning, "y": y})
    labels = conditioning.get("y")
    if isinstance(labels, torch.Tensor) and labels.ndim > 0 and labels.shape[0] != x.shape[0]:
        raise ShapeError(
            f"y must have one entry per sample of x (batch {x.shape[0]}), got shape "
            f"{tuple(labels.shape)}"
        )
    try:
        return loss.apply_conditioning(conditioning, _with_gradients(probe, loss.model), generator)
    except TypeError as err:  # the probe was the model's first call
        explain_loss_error(loss, err, conditioning)
        raise


def explain_loss_error(loss: Any, err: BaseException, conditioning: dict) -> None:
    """`explain_model_error` for a loss's model, called as the loss calls it: a field
    ``model(x, t, ...)`` for an objective whose ``_model_call`` is `FIELD_CALL`, else an
    energy ``model(x, ...)``."""
    model, call = getattr(loss, "model", None), getattr(loss, "_model_call", ENERGY_CALL)
    if model is not None:
        explain_model_error(type(loss).__name__, model, err, call, conditioning)


def checked_loss(
    owner: Any, compute: Callable[[], torch.Tensor], inputs: dict, conditioning: dict | None = None
) -> torch.Tensor:
    """``owner.apply_nan_policy(compute())``, a non-finite loss first traced to its inputs, a
    model that refuses the loss's call (under ``conditioning``) named (`explain_loss_error`).

    When the loss (or a coupling's cost) is NaN/inf, the first of ``inputs`` (name ->
    tensor or ``None``) that holds NaN/inf is named with its batch rows in a
    `NonFiniteError`. With ``nan_policy="raise"`` this costs nothing on a finite loss (the
    inputs are read only on the failure path); ``"warn"`` reads the loss once more;
    ``"deferred"`` and ``"ignore"`` never read the inputs, so a NaN input surfaces there as the
    non-finite loss.
    """
    try:
        loss = compute()
        if owner.nan_policy == "warn" and not bool(torch.isfinite(loss.detach()).all()):
            _blame_inputs(inputs, None)
        return owner.apply_nan_policy(loss)
    except NonFiniteError as err:
        _blame_inputs(inputs, err)
        raise
    except TypeError as err:
        explain_loss_error(owner, err, conditioning or {})
        raise


def _blame_inputs(inputs: dict, cause: BaseException | None) -> None:
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            try:
                check_finite_tensor(name, value)
            except NonFiniteError as err:
                raise err from cause


def _has_dtensor_params(module: Any) -> bool:
    """True when ``module`` holds FSDP2/DTensor parameters.

    Importing ``torch.distributed.tensor`` costs seconds; a DTensor parameter can only exist
    once it has been imported, so only look when it already is.
    """
    if not isinstance(module, nn.Module):
        return False
    dt_mod = sys.modules.get("torch.distributed.tensor")
    dtensor = getattr(dt_mod, "DTensor", None) if dt_mod is not None else None
    if dtensor is None:
        return False
    return any(isinstance(p, dtensor) for p in module.parameters())
