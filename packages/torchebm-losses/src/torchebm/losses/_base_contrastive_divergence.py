r"""`BaseContrastiveDivergence`: the negative phase, the replay buffer and the CD loop.

Moved here from `torchebm.core._base_loss` (only the contrastive-divergence losses use
it); `from torchebm.core import BaseContrastiveDivergence` keeps working through core's
lazy export when `torchebm-losses` is installed.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from torchebm.core import BaseLoss, BaseSampler, expand_t_like_x, warn_once
from torchebm.core._module import check_bool, forward_kwargs, warn_user
from torchebm.core.errors import (
    ConfigurationError,
    NonFiniteError,
    ShapeError,
    check_energies,
    check_int,
    check_positive,
    check_probability,
)
from torchebm.flows._utils import (
    check_model_object,
    check_sampler_model,
    checked_loss,
    explain_loss_error,
    holds_rows,
    loss_conditioning,
)
from torchebm.integrators._compat_089 import ConditioningAttrs089, accept_089_pickle, overridden
from torchebm.integrators._state import autograd_ready, eager_under_compile
from torchebm.losses._positional_089 import split_dtype

__all__ = ["BaseContrastiveDivergence"]


def _allocate_loaded_chains(
    loss: Any,
    state_dict: dict,
    prefix: str,
    _meta: Any,
    _strict: bool,
    _missing: list,
    _unexpected: list,
    error_msgs: list,
) -> None:
    """Load pre-hook: a checkpoint's replay buffer loads into a loss that has none yet.

    The chains and their ages are allocated at the checkpoint's shape (a torchebm 0.8.9
    checkpoint has no ages: they start at 0); a buffer of another ``buffer_size``, or one
    loaded into a loss that is not persistent, is an error that names the mismatch.
    """
    buffer, age = prefix + "replay_buffer", prefix + "buffer_age"
    if buffer not in state_dict:
        return
    if not loss.persistent:  # the chains would be loaded and never used
        error_msgs.append(
            f"the checkpoint holds a replay buffer (persistent contrastive divergence) but "
            f"this {type(loss).__name__} has persistent=False"
        )
        return
    chains = state_dict[buffer].shape[0]
    if chains != loss.buffer_size:
        error_msgs.append(
            f"replay_buffer in the checkpoint has {chains} chains but this loss has "
            f"buffer_size={loss.buffer_size}"
        )
        return
    if age not in state_dict:
        state_dict[age] = torch.zeros(chains, dtype=torch.long)
    for name, dtype in (("replay_buffer", loss.dtype), ("buffer_age", torch.long)):
        if getattr(loss, name) is None:
            shape = state_dict[prefix + name].shape
            setattr(loss, name, torch.empty(shape, dtype=dtype, device=loss.device))


def _sync_host_pointer(loss: Any, _incompatible_keys: Any) -> None:
    """Load post-hook: the host copy of ``buffer_ptr`` follows the loaded pointer."""
    loss._host.ptr = int(loss.buffer_ptr)


@dataclass
class _HostState:
    """Host-side bookkeeping of the replay buffer: ``ptr`` mirrors ``buffer_ptr``;
    ``starts`` caches the strata (first rows, widths) of the batch size in use."""

    ptr: int = 0
    starts: dict = field(default_factory=dict)
    #: during a `negative_phase` that calls a subclass's `get_start_points`: the call's
    #: conditioning (for the base method, if the override calls it) and what the base drew
    phase: dict | None = None


def _takes_keyword(method: Any, name: str) -> bool:
    """Whether ``method`` accepts the keyword ``name`` (a subclass's override written for
    torchebm 0.8.9 may not: ``update_buffer(samples)``, ``initialize_buffer`` without
    ``model_kwargs``)."""
    params = inspect.signature(method).parameters.values()
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def _same_conditioning(first: dict | None, now: dict | None) -> bool:
    """Whether ``now`` is the conditioning the persistent chains were first run under
    (``first``; ``None``: no call yet): the same keys and equal values."""
    if first is None:
        return True
    now = now or {}
    if first.keys() != now.keys():
        return False
    for key, value in first.items():
        other = now[key]
        if isinstance(value, torch.Tensor) or isinstance(other, torch.Tensor):
            same = (
                isinstance(value, torch.Tensor)
                and isinstance(other, torch.Tensor)
                and value.shape == other.shape
                and bool(torch.equal(value, other.to(value.device)))
            )
        else:
            same = value is other or value == other
        if not same:
            return False
    return True


class BaseContrastiveDivergence(ConditioningAttrs089, BaseLoss):
    r"""Base of the contrastive-divergence family: owns the negative phase and the loop.

    A call ``loss_fn(x)`` runs

    1. [`negative_phase`][torchebm.losses.BaseContrastiveDivergence.negative_phase]: start points (the data for CD-k, the replay buffer for
       persistent CD, see [`get_start_points`][torchebm.losses.BaseContrastiveDivergence.get_start_points]), ``k_steps`` of the sampler from them
       under ``torch.no_grad()``, and the FIFO replay-buffer update when persistent;
    2. [`compute_loss`][torchebm.losses.BaseContrastiveDivergence.compute_loss] (the one method a subclass implements) on the data and the
       detached negatives;
    3. the non-finite policy of [`BaseLoss`][torchebm.core.BaseLoss];

    and returns ``(loss, negatives)``.

    The sampler is duck-typed: any object with
    ``sample(x=start, n_steps=k, model_kwargs=..., generator=...)`` returning a tensor
    shaped like ``start`` (``model_kwargs``/``generator`` are passed only when given).
    A scheduled sampler hyper-parameter (``LangevinDynamics(step_size=LinearScheduler(...))``)
    runs over the ``k_steps`` of each negative phase and restarts at the next call (each
    ``sample()`` resets its schedules): it does not anneal across training, and
    ``loss.step_schedulers()`` does not move it. To anneal over training, schedule the
    loss's own parameters, or set the sampler's value between calls
    (``sampler.step_size = ...``).

    Persistent mode keeps a replay buffer of ``buffer_size`` chains (IGEBM, Du & Mordatch
    2019; JEM, Grathwohl et al. 2020): a batch of ``B`` draws one uniform random row from
    each of ``B`` strata of consecutive rows (widths ``buffer_size // B`` or one more) that
    cover the whole buffer, so every chain can be continued; each drawn row is
    re-initialised from fresh noise $\mathcal N(0, \texttt{init\_noise\_scale}^2 I)$ with
    probability ``new_sample_ratio`` (5 % in the IGEBM/JEM recipe), runs ``k_steps``
    sampler steps, and the results are written back FIFO at the buffer pointer. With
    ``buffer_size == batch size`` this is exactly Tieleman's persistent CD. The buffer,
    its pointer and the per-chain age (MCMC steps since the chain was fresh noise) are
    buffers of the module: they are in ``state_dict``, move with ``.to()`` (and, when only
    the model was moved, e.g. ``loss.model.double()``, follow the loss's dtype and device at
    the next call, so chains are not rounded), and load into a
    fresh loss without a prior [`initialize_buffer`][torchebm.losses.BaseContrastiveDivergence.initialize_buffer] call (a torchebm 0.8.9 buffer, saved
    without ages, loads with ages 0).

    The keyword-only options ``nan_policy``, ``cfg_dropout``, ``null_condition``,
    ``check_conditioning``, ``dtype`` and ``device`` are those of every loss: see
    [`BaseLoss`][torchebm.core.BaseLoss].

    The model is registered twice (``model`` and ``sampler.model``). With
    ``torch.func.functional_call(loss, params, ...)`` pass ``tie_weights=False``: with the
    default ``True``, torch (pytorch/pytorch#164759) restores a module reachable by two paths
    wrongly and leaves the given tensors in the model after the call (the value inside the
    call is right).

    Args:
        model: Energy model $E_\theta$ mapping ``(B, *event)`` to ``(B,)``. ``None``
            takes ``sampler.model``.
        sampler: Sampler producing the negatives (e.g. ``LangevinDynamics``).
        k_steps: Sampler steps per call (default 1, as in torchebm 0.8.9). ``None`` takes
            the sampler's ``n_steps`` attribute when it has an int one, else 10.
        persistent: Keep a replay buffer of chains across calls (PCD).
        buffer_size: Number of chains in the replay buffer.
        new_sample_ratio: Probability that a persistent start point is replaced by fresh
            noise before sampling.
        init_steps: Sampler steps run on the fresh-noise buffer when it is created, without
            conditioning (the buffer's chains belong to no batch): with a model that
            requires ``model_kwargs``, pass ``init_steps=0``.
        init_noise_scale: Standard deviation of the noise that initialises and
            re-initialises chains (torchebm 0.8.9 initialised with 0.01 and never
            re-initialised). A ``torch.dtype`` here (0.8.9's eighth position) is taken as
            ``dtype`` with one ``DeprecationWarning``.

    Raises:
        TypeError: neither ``model`` nor ``sampler.model`` is given, or ``sampler`` has no
            ``sample`` method.
        ValueError: a hyper-parameter is out of range.

    Warns:
        UserWarning: ``sampler.model`` holds none of ``model``'s trainable parameters (the
            negatives come from another model: a mistake unless meant, e.g. an EMA copy).

    References:
        - Hinton, "Training products of experts by minimizing contrastive divergence",
          Neural Computation 2002.
        - Tieleman, "Training restricted Boltzmann machines using approximations to the
          likelihood gradient", ICML 2008.
        - Du & Mordatch, "Implicit generation and modeling with energy-based models",
          NeurIPS 2019.
    """

    model: Any
    sampler: Any
    __setstate__ = accept_089_pickle("conditioning")  # losses pickled whole by torchebm 0.8.9
    # None until the first persistent call, initialize_buffer() or a state_dict load
    replay_buffer: torch.Tensor
    buffer_age: torch.Tensor
    buffer_ptr: torch.Tensor

    def __init__(
        self,
        model: Any = None,
        sampler: Any = None,
        k_steps: int | None = 1,
        persistent: bool = False,
        buffer_size: int = 100,
        new_sample_ratio: float = 0.0,
        init_steps: int = 0,
        init_noise_scale: float = 1.0,
        *,
        nan_policy: str = "raise",
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        init_noise_scale, dtype = split_dtype(type(self).__name__, init_noise_scale, dtype)
        super().__init__(**forward_kwargs(locals(), super().__init__))
        self._schedulers_dict()  # ``loss.schedulers`` reads {} before any schedule, as in 0.8.9
        if sampler is None:
            raise TypeError(
                f"{type(self).__name__} requires a sampler (e.g. "
                "torchebm.samplers.LangevinDynamics(model, ...)), got None"
            )
        if not callable(getattr(sampler, "sample", None)):
            raise TypeError(
                f"sampler must have a sample(x=..., n_steps=...) method, got {type(sampler).__name__}"
            )
        if model is None:
            model = getattr(sampler, "model", None)
            if model is None:
                raise TypeError(
                    f"{type(self).__name__} needs a model: pass model=... or a sampler with a "
                    "'model' attribute"
                )
        if not callable(model):
            raise TypeError(f"model must be callable (an nn.Module), got {type(model).__name__}")
        check_sampler_model(check_model_object(type(self).__name__, model), sampler)
        self.model = model
        self.sampler = sampler
        if k_steps is None:
            n = getattr(sampler, "n_steps", None)
            k_steps = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 10
        self.k_steps = check_int("k_steps", k_steps, minimum=1)
        if not isinstance(persistent, bool):
            raise TypeError(f"persistent must be a bool, got {persistent!r}")
        self.persistent = persistent
        self.buffer_size = check_int("buffer_size", buffer_size, minimum=1)
        self.new_sample_ratio = check_probability("new_sample_ratio", new_sample_ratio)
        self.init_steps = check_int("init_steps", init_steps, minimum=0)
        self.init_noise_scale = check_positive("init_noise_scale", init_noise_scale)
        # Lazily shaped persistent state: None until the first persistent call (or a load).
        self.register_buffer("replay_buffer", None)
        self.register_buffer("buffer_age", None)
        self.register_buffer("buffer_ptr", torch.zeros((), dtype=torch.long))
        # host copy of buffer_ptr (no device read in the hot path), in a plain holder so
        # that updating it skips nn.Module.__setattr__; ``starts``: per-(n, size, device)
        # strata of the stratified draw
        self._host = _HostState()
        # the conditioning persistent chains run under (set by the first call; not saved)
        self._chains_conditioning: dict | None = None
        self.register_load_state_dict_pre_hook(_allocate_loaded_chains)
        self.register_load_state_dict_post_hook(_sync_host_pointer)

    def __repr__(self) -> str:
        extra = self.extra_repr()  # a subclass's own hyper-parameters
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, "
            f"sampler={type(self.sampler).__name__}, k_steps={self.k_steps}, "
            f"persistent={self.persistent}{extra and ', ' + extra})"
        )

    # ------------------------------------------------------------------ replay buffer
    @property
    def buffer_initialized(self) -> bool:
        """Whether the replay buffer exists (created by a persistent call or loaded). 0.8.9
        code sets it to ``True`` after making ``replay_buffer`` itself (a no-op here); ``False``
        drops the buffer (the next persistent call creates one)."""
        return self.replay_buffer is not None

    @buffer_initialized.setter
    def buffer_initialized(self, value: bool) -> None:
        if not check_bool("buffer_initialized", value):
            self.replay_buffer = self.buffer_age = None  # type: ignore[assignment]  # (as before a call)

    @property
    def _buffer_ptr_int(self) -> int:
        """0.8.9's name of the host copy of ``buffer_ptr`` (its method bodies set it)."""
        return self._ptr

    @_buffer_ptr_int.setter
    def _buffer_ptr_int(self, value: int) -> None:
        self._set_ptr(value)

    def _noise(self, shape, like: torch.Tensor, generator, scale: float) -> torch.Tensor:
        noise = torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
        return noise if scale == 1.0 else noise.mul_(scale)  # 1.0 * v is v: no multiply

    def initialize_buffer(
        self,
        data_shape_no_batch: tuple[int, ...] | torch.Size,
        buffer_chunk_size: int = 1024,
        init_noise_scale: float | None = None,
        generator: torch.Generator | None = None,
        model_kwargs: dict | None = None,
    ) -> torch.Tensor | None:
        r"""Create the replay buffer: ``buffer_size`` chains of fresh noise, optionally burnt in.

        A no-op (returning the current buffer) unless the loss is persistent and the buffer
        does not exist yet. With ``init_steps > 0`` the sampler is run for ``init_steps``
        steps on chunks of at most ``buffer_chunk_size`` chains.

        Args:
            data_shape_no_batch: Event shape of one sample, e.g. ``(2,)`` or ``(3, 32, 32)``.
            buffer_chunk_size: Chains per sampler call during the burn-in.
            init_noise_scale: Noise standard deviation (default: the constructor's).
            generator: Source of randomness for the noise and the burn-in.
            model_kwargs: Conditioning of the burn-in's model calls (the same for every
                chain: the first batch's, when the loss creates the buffer itself).

        Returns:
            The buffer, shape ``(buffer_size, *data_shape_no_batch)``, or ``None`` when
            the loss is not persistent.
        """
        if not self.persistent:
            return None
        if self.replay_buffer is not None:
            return self.replay_buffer
        chunk = check_int("buffer_chunk_size", buffer_chunk_size, minimum=1)
        scale = (
            self.init_noise_scale
            if init_noise_scale is None
            else check_positive("init_noise_scale", init_noise_scale)
        )
        shape = tuple(int(s) for s in data_shape_no_batch)
        probe = torch.empty(0, device=self.device, dtype=self.dtype)
        buf = self._noise((self.buffer_size, *shape), probe, generator, scale)
        if self.init_steps > 0:
            for lo in range(0, self.buffer_size, chunk):
                part = buf[lo : lo + chunk]
                buf[lo : lo + chunk] = self._run_sampler(
                    part, self.init_steps, model_kwargs or {}, generator
                )
        with torch.inference_mode(False):  # made in a first call under inference_mode (e.g. a
            # validation loss), inference tensors would refuse the training steps' in-place updates
            self.replay_buffer = buf = buf.clone() if buf.is_inference() else buf
            self.buffer_age = torch.full(
                (self.buffer_size,), self.init_steps, dtype=torch.long, device=buf.device
            )
        self._set_ptr(0)
        return buf

    @property
    def _ptr(self) -> int:
        """Host copy of ``buffer_ptr``."""
        return self._host.ptr

    def _set_ptr(self, ptr: int) -> None:
        self._host.ptr = int(ptr)
        self.buffer_ptr.fill_(self._host.ptr)

    def _check_buffer_shape(self, x: torch.Tensor) -> None:
        if tuple(self.replay_buffer.shape[1:]) != tuple(x.shape[1:]):
            raise ShapeError(
                f"x has event shape {tuple(x.shape[1:])} but the replay buffer holds chains of "
                f"shape {tuple(self.replay_buffer.shape[1:])}"
            )

    def _draw_start(
        self, x: torch.Tensor, generator: torch.Generator | None, model_kwargs: dict | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Start points for a batch and, when persistent, their ages (``(B,)`` long)."""
        if not self.persistent:
            # a BaseSampler never modifies its starting chains; a duck-typed one might
            start = x.detach()
            return (start if isinstance(self.sampler, BaseSampler) else start.clone()), None
        # every per-sample value (a tensor, array or list of prompts, inside dicts and tuples)
        per_row = [
            k
            for k, v in (model_kwargs or {}).items()
            if x.shape[0] > 1 and holds_rows(v, x.shape[0])
        ]
        # the conditioning of the chains in the buffer (a new buffer takes a new one)
        first = (
            getattr(self, "_chains_conditioning", None) if self.replay_buffer is not None else None
        )
        if per_row or not _same_conditioning(first, model_kwargs):
            # the buffer's rows carry no conditioning: a chain would change label
            raise ConfigurationError(
                f"{type(self).__name__} with persistent chains got "
                + (
                    f"per-sample conditioning {per_row} (one row per sample of x: a tensor "
                    f"or array of leading dimension {x.shape[0]}, or a list of {x.shape[0]} "
                    "items; a value shared by every sample that has as many items passes "
                    "as a tuple)"
                    if per_row
                    else "a conditioning other than the one its chains were run under"
                )
                + ": the replay buffer's chains keep no conditioning, so a chain run under "
                "one label would be continued under another (wrong per-class laws); train a "
                "conditional model with non-persistent ContrastiveDivergence (persistent "
                "chains take one conditioning, the same at every call)"
            )
        if first is None:
            self._chains_conditioning = dict(model_kwargs or {})
        if self.replay_buffer is None:
            init = self.initialize_buffer
            kwargs = {"model_kwargs": model_kwargs} if _takes_keyword(init, "model_kwargs") else {}
            init(x.shape[1:], generator=generator, **kwargs)
            if self.replay_buffer is not None and self.buffer_age is None:
                # a 0.8.9 override that set `replay_buffer` only: its chains are init_steps old
                if len(self.replay_buffer) != self.buffer_size:
                    raise ConfigurationError(
                        f"initialize_buffer made {len(self.replay_buffer)} chains, but "
                        f"buffer_size is {self.buffer_size}"
                    )
                self.buffer_age = torch.full(
                    (len(self.replay_buffer),), self.init_steps, dtype=torch.long,
                    device=self.replay_buffer.device,
                )  # fmt: skip
                self._set_ptr(0)
        self._check_buffer_shape(x)
        buf = self.replay_buffer
        if buf.dtype != x.dtype or buf.device != x.device:  # only the model moved: follow it
            self.replay_buffer = buf = buf.to(device=x.device, dtype=x.dtype)
            self.buffer_age = self.buffer_age.to(x.device)
        n, size = x.shape[0], self.buffer_size
        if size < n:
            warn_user(
                f"{type(self).__name__}: buffer_size ({size}) is smaller than the batch ({n}); "
                "drawing buffer rows with replacement"
            )
            idx = torch.randint(0, size, (n,), generator=generator, device=buf.device)
        elif size % n == 0:  # n strata of equal width
            idx = self._strata(n, buf.device)[0] + torch.randint(
                0, size // n, (n,), generator=generator, device=buf.device
            )
        else:  # widths size // n or size // n + 1: every row of the buffer can be drawn
            lo, width = self._strata(n, buf.device)
            u = torch.rand(n, generator=generator, device=buf.device, dtype=torch.float32)
            idx = lo + torch.minimum((u * width).long(), width - 1)
        start = buf.index_select(0, idx)  # (buf has x's dtype and device: see above)
        age = self.buffer_age.index_select(0, idx)
        if self.new_sample_ratio > 0:
            u = torch.rand(n, generator=generator, device=buf.device, dtype=torch.float32)
            fresh = u < self.new_sample_ratio
            noise = self._noise(start.shape, start, generator, self.init_noise_scale)
            start = torch.where(expand_t_like_x(fresh, start), noise, start)
            age.masked_fill_(fresh, 0)  # a fresh gather: restarted chains have age 0
        return start, age

    def _forget_diverged(
        self, ptr: int, n: int, x: torch.Tensor, generator: torch.Generator | None
    ) -> str | None:
        """After a call whose loss was not finite: fresh noise, of age 0, in the buffer rows
        it wrote back (``n`` rows from ``ptr`` on in FIFO order, all of them for
        ``n >= buffer_size``), which would start later calls; the sentence that says so.
        ``None`` (nothing done) when the data itself is not finite, or when a subclass's own
        ``negative_phase``/``update_buffer`` wrote the rows."""
        buf, size = self.replay_buffer, self.buffer_size
        hooks = ("negative_phase", "update_buffer")
        if not self.persistent or buf is None or not bool(torch.isfinite(x).all()):
            return None
        if any(overridden(self, hook, BaseContrastiveDivergence) for hook in hooks):
            return None
        rows = torch.arange(ptr, ptr + min(n, size), device=buf.device) % size
        noise = self._noise((len(rows), *buf.shape[1:]), buf, generator, self.init_noise_scale)
        buf.index_copy_(0, rows, noise)
        self.buffer_age.index_fill_(0, rows, 0)
        return (
            f"The {len(rows)} chains this call wrote to the replay buffer restart from fresh "
            "noise (written back, diverged chains would start later calls)"
        )

    def _strata(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        r"""First rows $\lfloor i\,S/n\rfloor$ and widths of the ``n`` strata that
        partition the ``S = buffer_size`` rows, computed once per batch size."""
        key = (n, self.buffer_size, device)
        strata = self._host.starts.get(key)
        if strata is None:
            bounds = torch.arange(n + 1, device=device) * self.buffer_size // n
            strata = (bounds[:-1], bounds[1:] - bounds[:-1])
            self._host.starts = {key: strata}  # one entry: the batch size rarely changes
        return strata

    def get_start_points(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Chain start points for the batch ``x`` (``(B, *event)``).

        Non-persistent (CD-k): a detached copy of the data. Persistent: one uniform row of
        each of ``B`` strata covering the replay buffer (created on first use), each replaced
        by fresh noise with probability ``new_sample_ratio``.

        Args:
            x: Data batch `(B, *event)`.
            generator: Source of the strata rows and the fresh noise.
        """
        phase = self._host.phase  # in `negative_phase`, called by a subclass's override
        start, age = self._draw_start(x, generator, None if phase is None else phase["kwargs"])
        if phase is not None:
            phase["drawn"] = (start, age)
        return start

    def get_negative_samples(
        self,
        x: torch.Tensor | None,
        batch_size: int,
        data_shape: tuple[int, ...] | torch.Size,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""torchebm 0.8.9's draw of fresh chains (``forward`` does not use it).

        Without a replay buffer (not persistent, or not created yet): ``batch_size`` draws
        of $\mathcal N(0, \texttt{init\_noise\_scale}^2 I)$. With one: the first
        ``max(1, int(batch_size * new_sample_ratio))`` rows are such noise and the others
        are buffer rows drawn uniformly with replacement. The buffer is not changed.

        Args:
            x: Unused (kept for 0.8.9's signature).
            batch_size: Number of chains ``B`` (>= 1).
            data_shape: Event shape of one chain.
            generator: Source of randomness.

        Returns:
            ``(B, *data_shape)`` on the loss's device and dtype.
        """
        n = check_int("batch_size", batch_size, minimum=1)
        probe = torch.empty(0, device=self.device, dtype=self.dtype)
        out = self._noise(
            (n, *(int(s) for s in data_shape)), probe, generator, self.init_noise_scale
        )
        buf = self.replay_buffer
        if self.persistent and buf is not None:
            self._check_buffer_shape(out)
            n_new = max(1, int(n * self.new_sample_ratio))
            idx = torch.randint(
                0, self.buffer_size, (n - n_new,), generator=generator, device=buf.device
            )
            out[n_new:] = buf.index_select(0, idx).to(out.dtype)
        return out

    def update_buffer(self, samples: torch.Tensor, ages: torch.Tensor | None = None) -> None:
        """Write ``samples`` into the replay buffer FIFO at the pointer (wrapping around).

        A batch at least as large as the buffer replaces it with its last ``buffer_size``
        rows. No-op when the loss is not persistent or the buffer does not exist.

        Args:
            samples: New chain states, shape ``(n, *event)``.
            ages: MCMC steps each sample has run since it was fresh noise, ``(n,)``
                (default ``k_steps``).
        """
        if not self.persistent or self.replay_buffer is None:
            return
        buf, size = self.replay_buffer, self.buffer_size
        samples = samples.detach().to(device=buf.device, dtype=buf.dtype)
        n = samples.shape[0]
        if ages is None:
            ages = torch.full((n,), self.k_steps, dtype=torch.long, device=buf.device)
        ages = ages.to(device=buf.device, dtype=torch.long)
        age = self.buffer_age
        if n >= size:
            buf.copy_(samples[n - size :])
            age.copy_(ages[n - size :])
            self._set_ptr(0)
            return
        # FIFO at the pointer as (at most) two contiguous slice copies, no index tensor
        p = self._ptr
        first = min(n, size - p)
        buf.narrow(0, p, first).copy_(samples.narrow(0, 0, first))
        age.narrow(0, p, first).copy_(ages.narrow(0, 0, first))
        if first < n:
            buf.narrow(0, 0, n - first).copy_(samples.narrow(0, first, n - first))
            age.narrow(0, 0, n - first).copy_(ages.narrow(0, first, n - first))
        self._set_ptr((p + n) % size)

    def mix_buffer_across_ranks(
        self, process_group: Any = None, generator: torch.Generator | None = None
    ) -> None:
        """Shuffle the replay buffers of all ranks together (a collective call).

        Every rank all-gathers the buffers, rank 0 of the group draws one permutation of
        the pooled chains (broadcast to all), and each rank keeps its own slice; the
        pointer is untouched. A no-op without an initialised process group or with one
        rank.

        Args:
            process_group: Group whose ranks mix their buffers (``None``: the default group).
            generator: Source of rank 0's permutation, drawn on its device (``None``: the
                global CPU generator).

        Raises:
            RuntimeError: the loss is not persistent, or its buffer does not exist yet.
        """
        if not self.persistent:
            raise RuntimeError("mix_buffer_across_ranks requires persistent=True")
        if self.replay_buffer is None:
            raise RuntimeError(
                "mix_buffer_across_ranks requires an initialised replay buffer; call the loss "
                "or initialize_buffer() first"
            )
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        world = dist.get_world_size(process_group)
        if world == 1:
            return
        rank = dist.get_rank(process_group)
        buf, age = self.replay_buffer, self.buffer_age
        bufs = [torch.empty_like(buf) for _ in range(world)]
        ages = [torch.empty_like(age) for _ in range(world)]
        dist.all_gather(bufs, buf.contiguous(), group=process_group)
        dist.all_gather(ages, age.contiguous(), group=process_group)
        total = world * self.buffer_size
        if rank == 0:  # on the generator's device: a CUDA generator cannot draw on the CPU
            dev = "cpu" if generator is None else generator.device
            perm = torch.randperm(total, generator=generator, device=dev).to(buf.device)
        else:
            perm = torch.empty(total, dtype=torch.long, device=buf.device)
        src = dist.get_global_rank(process_group, 0) if process_group is not None else 0
        dist.broadcast(perm, src=src, group=process_group)
        mine = perm[rank * self.buffer_size : (rank + 1) * self.buffer_size]
        buf.copy_(torch.cat(bufs)[mine])
        age.copy_(torch.cat(ages)[mine])

    # ------------------------------------------------------------------ negative phase
    def _run_sampler(
        self,
        start: torch.Tensor,
        n_steps: int,
        model_kwargs: dict,
        generator: torch.Generator | None,
        reset_schedulers: bool = True,
    ) -> torch.Tensor:
        """``sampler.sample(x=start, n_steps=n_steps, ...)`` under no-grad, detached (a
        library sampler's schedules continue from the last call with ``reset_schedulers=False``:
        one negative phase run in segments)."""
        kw: dict[str, Any] = {}
        if not reset_schedulers and isinstance(self.sampler, BaseSampler):
            kw["reset_schedulers"] = False
        if model_kwargs:
            kw["model_kwargs"] = model_kwargs
        if generator is not None:
            kw["generator"] = generator
        with torch.no_grad():
            out = self.sampler.sample(x=start, n_steps=n_steps, **kw)
        if isinstance(out, tuple):  # (samples, diagnostics) from a sampler configured so
            out = out[0]
        if not isinstance(out, torch.Tensor) or out.shape != start.shape:
            raise ShapeError(
                f"sampler.sample returned {getattr(out, 'shape', type(out).__name__)}, expected "
                f"a tensor of the start points' shape {tuple(start.shape)}"
            )
        out = out.detach()  # never the start points themselves (CD-k's are the data, uncopied)
        return out.clone() if out.data_ptr() == start.data_ptr() else out

    def negative_phase(
        self,
        x: torch.Tensor,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw start points, run ``k_steps`` of the sampler, update the buffer.

        A subclass's own `get_start_points` and `update_buffer` (the hooks of torchebm 0.8.9,
        whose `update_buffer` took no ``ages``) are called in their place.

        Args:
            x: Data batch ``(B, *event)`` (already on the loss's device/dtype).
            model_kwargs: Conditioning for the sampler's model.
            generator: Source of randomness.

        Returns:
            Detached negatives, shape ``(B, *event)``.
        """
        if not overridden(self, "get_start_points", BaseContrastiveDivergence):
            start, age = self._draw_start(x, generator, model_kwargs)
        else:  # a subclass's own start points (0.8.9's hook)
            outer, phase = self._host.phase, {"kwargs": model_kwargs, "drawn": None}
            self._host.phase = phase
            try:  # (the override may call the loss again: each call keeps its own phase)
                start = self.get_start_points(x, generator)
            finally:
                self._host.phase = outer
            # the ages of what the base drew when the override returns it, else unknown
            drawn = phase["drawn"]
            age = drawn[1] if drawn is not None and drawn[0] is start else None
        negatives = self._run_sampler(start, self.k_steps, model_kwargs or {}, generator)
        if self.persistent:
            ages = None if age is None else age + self.k_steps
            own = overridden(self, "update_buffer", BaseContrastiveDivergence)
            if not own or _takes_keyword(self.update_buffer, "ages"):
                self.update_buffer(negatives, ages=ages)
            else:  # 0.8.9's signature, update_buffer(samples): the ages default to k_steps
                self.update_buffer(negatives)
        return negatives

    def energy(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        """Energies ``model(x, **model_kwargs)`` ``(B,)`` of ``x`` ``(B, *event)``, under the
        loss's autocast, checked to be ``(B,)`` (what ``compute_loss`` evaluates).

        Args:
            x: Samples `(B, *event)`.
            model_kwargs: Conditioning keywords of the model, or ``None``.
        """
        x = autograd_ready(x)  # made under inference_mode (no conditioning: no dict copy)
        with self.autocast_context():
            e = self.model(x, **autograd_ready(model_kwargs)) if model_kwargs else self.model(x)
        return check_energies("the model", e, x.shape[0])

    @abstractmethod
    def compute_loss(
        self,
        x: torch.Tensor,
        negatives: torch.Tensor,
        *,
        model_kwargs: dict,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Scalar loss from the data batch and the detached negatives.

        Args:
            x: Data batch `(B, *event)`.
            negatives: Detached sampler output `(N, *event)`.
            model_kwargs: Conditioning of the energy model.
            generator: Source of any randomness of the loss.
            **options: Per-call overrides a subclass accepts.
        """

    #: per-call option names still accepted by ``forward`` (deprecated; one warning)
    _call_options: tuple[str, ...] = ()

    def forward(
        self,
        x: torch.Tensor,
        *args: Any,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ):
        r"""Contrastive-divergence loss on the batch ``x``.

        Args:
            x: Data batch, shape ``(B, *event)``; cast to the loss's device/dtype.
            *args: Only the deprecated seed form ``loss_fn(x, model)``: the model this loss
                was built with (one ``DeprecationWarning``).
            model_kwargs: Conditioning forwarded to the model and the sampler.
            generator: Source of every random draw of the call.
            **kwargs: Deprecated (one ``DeprecationWarning`` each): per-call
                ``energy_reg_weight``, ``add_noise_to_real`` or ``noise_scale`` (set them in the
                constructor), else bare keyword conditioning (use ``model_kwargs={...}``).

        Returns:
            ``(loss, negatives)``: the scalar loss and the detached negatives
            ``(B, *event)``. The seed form ``loss_fn(x, model)`` (deprecated) returns the
            loss only.

        Raises:
            TypeError: unexpected positional arguments or a non-tensor ``x``.
            ValueError: the seed form's ``model`` is not the model this loss was built with.
            ShapeError: ``x`` is not batched, or the model's energies are not ``(B,)``.
            NonFiniteError: the loss is NaN/inf (``nan_policy="raise"``), or ``x`` holds
                NaN/inf (named with its rows).
        """
        seed_form = False
        if args:
            other = args[0]
            known = (self.model, getattr(self.sampler, "model", None))
            if len(args) == 1 and isinstance(other, nn.Module):
                if not any(other is m for m in known):
                    raise ValueError(
                        f"{type(self).__name__}(x, model): the model passed positionally is not "
                        "the model this loss was built with; build the loss with that model"
                    )
                warn_once(
                    f"{type(self).__name__}.forward(x, model)",
                    f"{type(self).__name__}(x, model) is deprecated: the model is taken from "
                    "the loss; call loss, negatives = loss_fn(x)",
                    DeprecationWarning,
                )
                seed_form = True
            else:
                raise TypeError(
                    f"{type(self).__name__}.forward takes one positional argument (x), got "
                    f"{1 + len(args)}"
                )
        options = {k: kwargs.pop(k) for k in self._call_options if k in kwargs}
        if options:
            warn_once(
                f"{type(self).__name__}.forward options {sorted(options)}",
                f"passing {sorted(options)} to {type(self).__name__}.forward is deprecated; "
                "set them in the constructor",
                DeprecationWarning,
            )
        x = self.prepare_input(x)
        conditioning = loss_conditioning(self, x, model_kwargs, generator, kwargs)
        # the FIFO rows this call writes back start at the pointer (0 for a new buffer)
        ptr = self._host.ptr if self.replay_buffer is not None else 0
        try:
            # host bookkeeping (buffer pointer, start points) and a sampler: eager if compiled
            negatives = eager_under_compile(self.negative_phase)(x, conditioning, generator)
        except TypeError as err:  # a sampler of its own kind calls the model first
            explain_loss_error(self, err, conditioning)
            raise
        # a non-finite loss is first traced to the data, which no sampler sees under PCD
        try:
            loss = checked_loss(
                self,
                lambda: self.compute_loss(
                    x, negatives, model_kwargs=conditioning, generator=generator, **options
                ),
                {"x": x},
                conditioning,
            )
        except NonFiniteError as err:
            # eager: traced, `overridden` saw the hooks as a subclass's and nothing restarted
            forget = eager_under_compile(self._forget_diverged)
            note = forget(ptr, negatives.shape[0], x, generator)
            if note is None:
                raise
            raise NonFiniteError(f"{err}. {note}", indices=err.indices, step=err.step) from err
        if self.nan_policy == "warn" and not bool(torch.isfinite(loss.detach())):
            forget = eager_under_compile(self._forget_diverged)
            note = forget(ptr, negatives.shape[0], x, generator)
            if note is not None:  # (checked_loss has warned of the loss)
                warn_user(f"{type(self).__name__}: {note}", RuntimeWarning)
        if seed_form:
            return loss
        return loss, negatives
