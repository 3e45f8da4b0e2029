r"""``BaseTrainer``: the training loop shared by every TorchEBM objective.

The trainer owns the loop (batch splitting, device moves, gradient accumulation, mixed
precision, gradient synchronisation, optimizer/LR/hyper-parameter scheduler steps,
callbacks, checkpoints); a subclass customises one step by overriding
[`BaseTrainer.compute_loss`][torchebm.losses.BaseTrainer.compute_loss]. It never imports a concrete loss: any callable
``loss_fn(x, [model_kwargs=...], [generator=...])`` returning a scalar tensor, a
``(loss, ...)`` tuple or a dict with a ``"loss"`` entry works.

It lives in ``torchebm-losses`` (the public home of every training objective; only the
losses subclass it) and is exported as ``torchebm.losses.BaseTrainer``;
``from torchebm.core import BaseTrainer`` keeps working through core's lazy export.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import io
import math
import numbers
import os
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import BatchSampler, SequentialSampler

from torchebm.core import BaseLoss, BaseScheduler, Schedulable, renamed_kwargs, warn_once
from torchebm.core import distributed as _d
from torchebm.core._module import check_bool, warn_user
from torchebm.core._schedulable import _subtree_schedulers
from torchebm.core._training import _plain
from torchebm.core.errors import (
    ConfigurationError,
    NonFiniteError,
    check_generator,
    check_in,
    check_int,
)

__all__ = ["BaseTrainer", "TrainerCallback"]

_FORMAT = "torchebm.trainer/1"
_OLD_KEYS = {"model_state_dict", "optimizer_state_dict"}  # a torchebm 0.8.9 trainer checkpoint
_NAN_POLICIES = ("raise", "skip", "ignore")
_HOOKS = (
    "on_train_start",
    "on_epoch_start",
    "on_batch_start",
    "on_batch_end",
    "on_epoch_end",
    "on_train_end",
)


class TrainerCallback:
    """No-op base for trainer callbacks; override the hooks you need.

    Any object with some of these methods works as a callback (duck typing); the hooks
    are called in list order with the trainer as first argument.
    """

    def on_train_start(self, trainer: BaseTrainer) -> None:
        """Before the first epoch of [`BaseTrainer.train`][torchebm.losses.BaseTrainer.train].

        Args:
            trainer: The calling [`BaseTrainer`][torchebm.losses.BaseTrainer].
        """

    def on_epoch_start(self, trainer: BaseTrainer, epoch: int) -> None:
        """Before the first batch of ``epoch`` (0-based).

        Args:
            trainer: The calling [`BaseTrainer`][torchebm.losses.BaseTrainer].
            epoch: The starting epoch (0-based).
        """

    def on_batch_start(self, trainer: BaseTrainer, batch_idx: int) -> None:
        """Before [`BaseTrainer.train_step`][torchebm.losses.BaseTrainer.train_step] of batch ``batch_idx`` of the epoch.

        Args:
            trainer: The calling [`BaseTrainer`][torchebm.losses.BaseTrainer].
            batch_idx: Index of the coming batch in the epoch.
        """

    def on_batch_end(self, trainer: BaseTrainer, batch_idx: int, metrics: dict) -> None:
        """After the step; ``metrics`` holds detached tensors (no host sync was made).

        Args:
            trainer: The calling [`BaseTrainer`][torchebm.losses.BaseTrainer].
            batch_idx: Index of the batch in the epoch.
            metrics: The step's metrics.
        """

    def on_epoch_end(self, trainer: BaseTrainer, epoch: int, metrics: dict) -> None:
        """After epoch ``epoch``; ``metrics`` holds float means (global means when
        distributed). ``trainer.epoch`` already counts it (``epoch + 1``), so a checkpoint
        saved here resumes with the next epoch.

        Args:
            trainer: The calling [`BaseTrainer`][torchebm.losses.BaseTrainer].
            epoch: The finished epoch (0-based).
            metrics: The epoch's mean metrics.
        """

    def on_train_end(self, trainer: BaseTrainer, history: dict) -> None:
        """After the last epoch.

        Args:
            trainer: The calling [`BaseTrainer`][torchebm.losses.BaseTrainer].
            history: What `train` returns: each metric's per-epoch values.
        """


def _order_source(loader: Any) -> Any:
    """What decides the batch order of ``loader``.

    ``None``: nothing to restore (a sequence, a sampler with ``set_epoch`` such as
    ``DistributedSampler``, or a ``SequentialSampler``); a ``torch.Generator``: the
    sampler's generator (``DataLoader(shuffle=True, generator=g)``); ``"global"``: the
    global CPU RNG (a sampler whose ``generator`` is ``None``, e.g. ``DataLoader(shuffle=True)``);
    ``"unknown"``: anything else (an iterable without a sampler, a custom sampler).
    """
    if isinstance(loader, Sequence):
        return None
    src = getattr(loader, "batch_sampler", None)
    if src is None or isinstance(src, BatchSampler):  # torch's own: the order is its sampler's
        src = getattr(loader, "sampler", None)
    if hasattr(src, "set_epoch") or isinstance(src, SequentialSampler):
        return None
    gen = getattr(src, "generator", "unknown")
    return "global" if gen is None else gen if isinstance(gen, torch.Generator) else "unknown"


def _order_kind(src: Any) -> Any:
    if isinstance(src, torch.Generator):
        return "generator"
    return "sequential" if src is None else src


def _order_state(src: Any) -> dict[str, Any] | None:
    """The current state of the RNG that orders a loader (see `_order_source`) and of the
    global CPU RNG (a dataset's random augmentation in the main process draws from it), or
    ``None`` (an order that cannot be restored)."""
    if src == "unknown":
        return None
    state = {"source": _order_kind(src), "global": torch.get_rng_state()}
    if isinstance(src, torch.Generator):
        state["state"] = src.get_state()
    return state


def _plain_metrics(metrics: Any) -> dict[str, Any]:
    """``validate_fn``'s dict made storable with ``torch.load(weights_only=True)``.

    One-element tensors and numpy scalars become Python numbers, other tensors are detached
    to the CPU; anything else that cannot be stored raises ``TypeError`` naming the key.
    """
    out = {}
    for key, value in dict(metrics).items():
        if isinstance(value, torch.Tensor):
            value = value.item() if value.numel() == 1 else value.detach().cpu()
        out[key] = _plain(f"validate_fn's value for key {key!r}", value)
    return out


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    if name == "**":  # a VAR_KEYWORD parameter
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return name in params


def _without_tensors(value: Any) -> Any:
    """``value`` with every tensor replaced by ``None``, through plain dicts, lists and tuples
    (a subclass of them is kept whole: ``weights_only`` may refuse it)."""
    if isinstance(value, torch.Tensor):
        return None
    if type(value) in (dict, collections.OrderedDict):
        return {k: _without_tensors(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return [_without_tensors(v) for v in value]
    return value


def _check_loadable(state: dict[str, Any]) -> None:
    """A `TypeError` unless ``torch.load(weights_only=True)`` reads a checkpoint's ``state``
    back: every part but its tensors, written and read in memory, so that a checkpoint that
    cannot be resumed is refused when saved, not found out when resumed."""
    parts = {k: v for k, v in state.items() if k != "ranks"}
    ranks = enumerate(state.get("ranks") or [])
    parts.update((f"ranks[{i}].{k}", v) for i, rank in ranks for k, v in rank.items())
    for where, value in parts.items():
        buffer = io.BytesIO()
        try:  # an unpicklable value (a local lambda) fails in torch.save already
            torch.save(_without_tensors(value), buffer)
            buffer.seek(0)
            torch.load(buffer, weights_only=True)
        except Exception as err:  # torch's UnpicklingError names the offending global
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TypeError(
                f"the checkpoint's {where} holds a value that torch.load(weights_only=True) "
                f"cannot read back, so it could not be resumed ({first}); keep the states of "
                "callbacks and of the schedulers of the loss and sampler to plain values, "
                "tensors and containers of them (e.g. float(x) for a numpy scalar, "
                "torch.as_tensor(a) for an array)"
            ) from err


def _check_equal_epochs(loader: Iterable[Any]) -> None:
    """`ConfigurationError` on every rank when the ranks' loaders have different numbers of
    batches (a collective): every training step all-reduces gradients (DDP's or the trainer's),
    so a rank with more batches waited in a collective the others never joined (gloo aborted
    the run; NCCL would hang). A loader without ``len`` is not checked."""
    try:
        n = len(cast(Any, loader))
    except (TypeError, NotImplementedError):  # no len (an iterable dataset's loader)
        n = -1
    counts = [c - 1 for c in _d.gather_sizes(n + 1)]
    if min(counts) >= 0 and len(set(counts)) > 1:
        raise ConfigurationError(
            f"the ranks' loaders have different numbers of batches per epoch, {counts} (by "
            "rank): every rank must run the same number of training steps; shard the data "
            "with torch.utils.data.DistributedSampler (equal shards) or drop the extra batches"
        )


def _callable_without_arguments(fn: Callable) -> bool:
    try:
        inspect.signature(fn).bind()
    except TypeError:
        return False
    except ValueError:  # pragma: no cover - no signature (builtins): assume it can
        return True
    return True


def _check_arguments(
    model: Any,
    optimizer: Any,
    loss_fn: Any,
    *,
    dtype: Any,
    amp_dtype: Any,
    max_grad_norm: Any,
    callbacks: Any,
    generator: Any,
    seed: Any,
    lr_scheduler: Any,
    unshard_during_step: Any,
    sync_gradients: Any,
) -> None:
    """The type and range checks of `BaseTrainer.__init__` (errors name the argument)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    if amp_dtype not in (torch.float16, torch.bfloat16):
        raise ConfigurationError(
            f"amp_dtype must be torch.float16 or torch.bfloat16, got {amp_dtype!r}"
        )
    if max_grad_norm is not None:
        if isinstance(max_grad_norm, bool) or not isinstance(max_grad_norm, numbers.Real):
            raise TypeError(f"max_grad_norm must be a positive number, got {max_grad_norm!r}")
        if not (math.isfinite(max_grad_norm) and float(max_grad_norm) > 0):
            raise ConfigurationError(
                f"max_grad_norm must be positive and finite, got {max_grad_norm!r}"
            )
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list, got {type(callbacks).__name__}")
    if generator is not None and seed is not None:
        raise ConfigurationError("pass either generator or seed, not both")
    check_generator(generator)
    if lr_scheduler is not None and not hasattr(lr_scheduler, "step"):
        raise TypeError(
            f"lr_scheduler must be a torch.optim.lr_scheduler, got {type(lr_scheduler).__name__}"
        )
    if isinstance(lr_scheduler, BaseScheduler):
        raise TypeError(
            f"lr_scheduler must be a torch.optim.lr_scheduler, got the torchebm "
            f"{type(lr_scheduler).__name__}: it schedules a sampler's or a loss's parameter "
            "and would leave the learning rate unchanged; for its values as learning rates "
            "use torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: value(k) / lr)"
        )
    if getattr(lr_scheduler, "optimizer", optimizer) is not optimizer:
        raise ConfigurationError(
            f"lr_scheduler {type(lr_scheduler).__name__} steps another optimizer than the "
            "trainer's (its .optimizer is not optimizer=): the learning rate would never "
            "change; build it on the optimizer passed to the trainer"
        )
    if lr_scheduler is not None and not _callable_without_arguments(lr_scheduler.step):
        raise ConfigurationError(
            f"lr_scheduler {type(lr_scheduler).__name__}.step() needs arguments (e.g. "
            "ReduceLROnPlateau's metrics), but the trainer calls step() after every optimizer "
            "step; step it yourself from a callback (on_epoch_end) instead"
        )
    if unshard_during_step is not None and not isinstance(unshard_during_step, bool):
        raise TypeError(f"unshard_during_step must be a bool or None, got {unshard_during_step!r}")
    if sync_gradients is not None and not isinstance(sync_gradients, bool):
        raise TypeError(f"sync_gradients must be a bool or None, got {sync_gradients!r}")


def _check_trains_model(model: nn.Module, optimizer: Any, loss_fn: Any) -> None:
    """`ConfigurationError` when the optimizer steps none of ``model``'s trainable
    parameters (nothing would train it); a warning when ``loss_fn``, a module with
    parameters, registers none of them (a loss on another model, unless it reaches this one
    through an unregistered reference)."""
    own = {id(p) for p in model.parameters() if p.requires_grad}
    if not own:
        return
    if not own & {id(p) for group in optimizer.param_groups for p in group["params"]}:
        raise ConfigurationError(
            f"optimizer steps none of the parameters of model ({type(model).__name__}); "
            "build it over model.parameters()"
        )
    theirs = {id(p) for p in loss_fn.parameters()} if isinstance(loss_fn, nn.Module) else set()
    if theirs and not own & theirs:
        inner = type(getattr(loss_fn, "model", loss_fn)).__name__
        warn_user(
            f"loss_fn ({type(loss_fn).__name__}, built on {inner}) registers no parameter of model "
            f"({type(model).__name__}): if it is built on another model its gradients do not "
            "reach this one; build the loss on this model"
        )


class BaseTrainer:
    r"""Training loop with gradient accumulation, DDP/FSDP2 support and exact resume.

    One [`train_step`][torchebm.losses.BaseTrainer.train_step] = one micro-batch: ``zero_grad`` at the start of an
    accumulation window, ``loss / grad_accum_steps`` back-propagated, and at the end of
    the window an optimizer step, an LR-scheduler step and a step of the loss's
    hyper-parameter schedulers (``loss_fn.step_schedulers()``). `step` counts
    optimizer steps. Windows count micro-batches, not epochs: a window may span an epoch
    boundary, and when [`train`][torchebm.losses.BaseTrainer.train] returns in the middle of
    one, its gradients stay pending (in ``.grad`` and in checkpoints) until the next
    ``train_step`` completes it; choose a number of batches per epoch divisible by
    ``grad_accum_steps`` to step at every epoch end.

    Distributed training (launch with ``torchrun``; see ``docs/distributed.md``):

    * **DDP**: wrap the model in ``DistributedDataParallel`` and build the loss with the
      *wrapped* model (so that energies go through DDP's forward), the sampler with the
      bare ``model.module``. Gradients are averaged by DDP; accumulation windows use
      ``no_sync()``. The losses that train through ``torch.autograd.grad`` in x (score
      matching, explicit-energy EqM, Energy Matching) are averaged too, but not under
      ``DDP(static_graph=True)``, which they refuse.
    * **FSDP2** (``fully_shard``): pass the sharded model; accumulation windows use
      ``set_requires_gradient_sync(False)``; checkpoints hold the full (gathered) state.
    * **plain model under an initialised process group** (``sync_gradients=None`` or
      ``True``): parameters are broadcast from rank 0 at construction and the trainer
      averages gradients with one all-reduce per optimizer step. This is the simplest
      mode for energy models that the sampler calls in many ways.
    * **tensors the optimizer steps outside the model** (a learnable parameter of the loss,
      e.g. a temperature or a log-partition estimate): no DDP or FSDP reducer sees them, so
      in every mode (unless ``sync_gradients=False``) the trainer broadcasts them from rank
      0 at construction and averages their gradients with the all-reduce above (one per
      optimizer step); the gradients DDP or FSDP already averaged are not averaged again.

    Reproducibility: pass ``seed`` (a [`rank_generator`][torchebm.core.distributed.rank_generator]
    is built, a different stream per rank) or ``generator``; it is forwarded to every
    ``loss_fn`` call that takes ``generator``. The global RNG is never used by the
    trainer. [`state_dict`][torchebm.losses.BaseTrainer.state_dict] holds model, optimizer, grad scaler, LR scheduler, the
    loss's own state (replay buffers, scheduler states; per rank), the generator state
    (per rank), the state of every callback that has ``state_dict`` and ``load_state_dict``
    (per rank; plain values and tensors, for ``weights_only`` loads), the counters and the
    history, so that a run resumed with
    [`load_checkpoint`][torchebm.losses.BaseTrainer.load_checkpoint] continues bit-identically (on the same hardware).

    The batch order is part of that contract: a resumed epoch skips the batches already
    trained, so the loader must yield them in the same order again. A sequence, a
    ``SequentialSampler`` and a sampler with ``set_epoch`` (``DistributedSampler``) do so by
    themselves; for a shuffling sampler driven by a ``torch.Generator``
    (``DataLoader(shuffle=True, generator=g)``) or by the global CPU RNG
    (``DataLoader(shuffle=True)``; worker processes, persistent or not, included) the
    checkpoint holds that generator's state at the start of the interrupted epoch (at an
    epoch end: the state the next epoch starts from), with the global CPU RNG's for every
    one of these loaders, and the first
    [`train_epoch`][torchebm.losses.BaseTrainer.train_epoch] after loading restores them
    before iterating: the skipped batches are loaded again, so a dataset's random
    augmentation in the main process (``num_workers=0``) draws the same again; draws the
    model makes from the global RNG are not replayed. Any other order (a custom sampler, an
    ``IterableDataset``, an iterable without a sampler) is not restored: a mid-epoch resume
    then warns once.

    Args:
        model: The trained module (plain, ``DistributedDataParallel`` or FSDP2-sharded).
        optimizer: Optimizer over ``model``'s parameters and any other tensor trained with
            them (e.g. a learnable parameter of the loss).
        loss_fn: Callable returning the loss (usually an ``nn.Module`` holding ``model``).
        device: Move ``model`` and ``loss_fn`` there (default: leave them where they are;
            batches go to the model's device).
        dtype: Cast ``model``, ``loss_fn`` and the floating tensors of each batch to this
            floating dtype (default: leave).
        use_mixed_precision: Autocast around each step (CUDA; on the CPU with
            ``amp_dtype=torch.bfloat16``; elsewhere it warns and is off), with a
            ``GradScaler`` for float16. Do not wrap ``train()`` in an autocast context of
            your own: its weight-cast cache outlives the optimizer steps inside it, and
            the first layers then see stale weights (no gradient).
        grad_accum_steps: Micro-batches per optimizer step (int ``>= 1``).
        callbacks: List of [`TrainerCallback`][torchebm.losses.TrainerCallback]-like objects
            (one with ``state_dict``/``load_state_dict`` is checkpointed with the trainer).
        generator: Generator for the loss's random draws.
        seed: Build ``rank_generator(seed, device)`` instead (exclusive with ``generator``).
        amp_dtype: ``torch.float16`` (default, with loss scaling) or ``torch.bfloat16``.
        max_grad_norm: Clip the global gradient norm to this value before each step: the
            norm of the gradients of every tensor the optimizer steps (its
            ``param_groups``, a loss's parameter included), as ``clip_grad_norm_`` over them.
        lr_scheduler: A ``torch.optim.lr_scheduler`` of ``optimizer``, stepped after every
            optimizer step (its ``step()`` must take no argument: ``ReduceLROnPlateau`` is
            refused; a torchebm scheduler, which sets no learning rate, too).
        step_loss_schedulers: Advance the loss's schedules after every optimizer step
            (default ``True``): ``loss_fn.step_schedulers()``, or for a wrapper module those
            of the losses it holds, each once. A function ``loss_fn`` (a lambda, a partial,
            a bound method) that calls a scheduled loss gets a warning: the trainer can
            neither step nor checkpoint those schedules; pass the loss module (or an
            ``nn.Module`` around it) instead.
        sync_gradients: ``None`` (auto: average gradients by all-reduce when a process
            group with several ranks is initialised and the model is neither DDP nor
            FSDP; tensors the optimizer steps outside the model are averaged in every mode),
            ``True`` (force) or ``False`` (never; e.g. independent per-rank runs).
        nan_policy: What to do when a window's loss or gradients are NaN/inf, checked once
            per optimizer step (one host read of one boolean, agreed across ranks):
            ``"raise"`` (default) raises [`NonFiniteError`][torchebm.core.errors.NonFiniteError]
            naming the step and the tensors with non-finite gradients (the model's
            parameter names, ``loss_fn.<name>`` for the loss's own, else
            ``param_groups[g][i]``; every tensor the optimizer steps is checked); ``"skip"``
            drops the window's gradients, warns and counts `skipped_steps` (the
            optimizer and schedulers do not step); ``"ignore"`` checks nothing (no host
            synchronisation at all). With fp16 loss scaling the gradient check is left to
            the ``GradScaler``, which skips overflowing steps itself (counted in
            `skipped_steps`, no scheduler steps, `step` unchanged). NaN/inf in a *batch*
            is refused by the loss before any backward pass under its ``"raise"`` or
            ``"warn"`` policy (a ``NonFiniteError`` on that rank alone, which ends a
            multi-rank run); build the loss with ``nan_policy="ignore"`` for ``"skip"`` to
            drop such a window on every rank instead.
        unshard_during_step: FSDP2 only: run each micro-batch's forward and backward inside
            [`unsharded`][torchebm.core.distributed.unsharded] (weights gathered once per step
            instead of once per model call; required by losses that back-propagate through
            ``torch.autograd.grad``). ``None`` (default): on for score-matching losses.

    Raises:
        TypeError: wrong argument types.
        ValueError: ``grad_accum_steps < 1``, ``max_grad_norm <= 0``, both ``seed`` and
            ``generator``, a DDP model whose loss holds the unwrapped module, or an
            optimizer stepping none of the model's trainable parameters
            (`ConfigurationError`).

    Warns:
        UserWarning: ``loss_fn`` is a module with parameters, none of them the model's.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> loss_fn = lambda x: model(x).square().mean()  # any batch -> scalar loss
        >>> trainer = BaseTrainer(model, torch.optim.Adam(model.parameters()), loss_fn, seed=0)
        >>> loader = torch.utils.data.DataLoader(torch.randn(64, 2), batch_size=16)
        >>> history = trainer.train(loader, num_epochs=2)
        >>> len(history["train"]), trainer.epoch
        (2, 2)
        >>> path = trainer.save_checkpoint("ckpt.pt")  # resume: trainer.load_checkpoint(path)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[..., Any],
        device: Any = None,
        dtype: torch.dtype | None = None,
        use_mixed_precision: bool = False,
        grad_accum_steps: int = 1,
        callbacks: Sequence[Any] | None = None,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        amp_dtype: torch.dtype = torch.float16,
        max_grad_norm: float | None = None,
        lr_scheduler: Any = None,
        step_loss_schedulers: bool = True,
        sync_gradients: bool | None = None,
        nan_policy: str = "raise",
        unshard_during_step: bool | None = None,
    ):
        _check_arguments(
            model,
            optimizer,
            loss_fn,
            dtype=dtype,
            amp_dtype=amp_dtype,
            max_grad_norm=max_grad_norm,
            callbacks=callbacks,
            generator=generator,
            seed=seed,
            lr_scheduler=lr_scheduler,
            unshard_during_step=unshard_during_step,
            sync_gradients=sync_gradients,
        )
        _check_trains_model(model, optimizer, loss_fn)
        self.grad_accum_steps = check_int("grad_accum_steps", grad_accum_steps, minimum=1)
        callbacks = [] if callbacks is None else callbacks

        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.callbacks = list(callbacks)
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.lr_scheduler = lr_scheduler
        self.step_loss_schedulers = check_bool("step_loss_schedulers", step_loss_schedulers)
        self.nan_policy = check_in("nan_policy", nan_policy, _NAN_POLICIES)

        if device is not None or dtype is not None:
            kw = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
            cast(Any, model).to(**kw)
            if isinstance(loss_fn, nn.Module):
                cast(Any, loss_fn).to(**kw)
        self.device = self._resolve_device(device)
        self._batch_dtype = dtype

        self._setup_distribution(model, loss_fn, sync_gradients, unshard_during_step)

        if seed is not None:
            generator = _d.rank_generator(seed, self.device)
        self.generator = generator

        self.use_mixed_precision = self._mixed_precision(model, use_mixed_precision, amp_dtype)
        self.amp_dtype = amp_dtype
        self.scaler = (
            torch.amp.GradScaler("cuda")
            if self.use_mixed_precision and amp_dtype == torch.float16
            else None
        )

        if step_loss_schedulers and not isinstance(loss_fn, nn.Module):
            _warn_about_unstepped_schedules(loss_fn)
        inner_loss = _d.unwrap_model(loss_fn) if isinstance(loss_fn, nn.Module) else loss_fn
        fwd = inner_loss.forward if isinstance(inner_loss, nn.Module) else loss_fn  # compiled too
        self._loss_takes_generator = _accepts(fwd, "generator")
        self._loss_takes_model_kwargs = _accepts(fwd, "model_kwargs")
        if (
            generator is not None
            and isinstance(loss_fn, nn.Module)
            and any(isinstance(m, BaseLoss) for m in loss_fn.modules())  # one, or a wrapper
            and not self._loss_takes_generator
            and _accepts(fwd, "**")
        ):  # a forward(x, **kwargs) around a built-in loss: its draws are the global RNG's
            warn_user(
                f"{type(loss_fn).__name__}.forward takes **kwargs but no generator parameter: "
                "the trainer does not pass it its generator, so any random draws of the loss "
                "come from the global RNG (seed= does not make them reproducible, a resumed "
                "run differs); add a generator=None keyword and pass it on"
            )

        self.step = 0
        self.epoch = 0
        self.skipped_steps = 0
        self._micro = 0
        self._window_ok: torch.Tensor | None = None
        self._batch_in_epoch = 0
        # this rank's metric sums and batch count of the epoch so far (kept in checkpoints)
        self._epoch_sums: dict[str, torch.Tensor] = {}
        self._epoch_count = 0
        self.history: dict[str, list] = {"train": [], "val": []}
        # the loader's order RNG (see _order_source): the last loader's source, the state at
        # the start of the current epoch, and whether a loaded one waits for train_epoch
        self._order_src: Any = None
        self._order_rng: dict[str, Any] | None = None
        self._order_pending = False
        self._started_loaders: weakref.WeakSet = weakref.WeakSet()  # persistent workers running

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (``pickle``, ``torch.save``, ``copy.deepcopy``) without the weak set of
        started loaders, which cannot be pickled: a copy starts its loaders' workers anew.
        Inside a gradient-accumulation window the pending gradients go with it (torch drops a
        parameter's ``.grad`` when it copies or pickles it)."""
        state = {**self.__dict__, "_started_loaders": None}
        if self._micro:
            state["_pending_grads"] = [p.grad for p in self._checked_parameters()]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        grads = state.pop("_pending_grads", None)
        self.__dict__.update(state)
        self._started_loaders = weakref.WeakSet()
        for p, g in zip(self._checked_parameters() if grads else (), grads or (), strict=True):
            p.grad = g

    # ------------------------------------------------------------------ setup helpers
    def _setup_distribution(
        self, model: nn.Module, loss_fn: Any, sync_gradients: Any, unshard_during_step: Any
    ) -> None:
        """Detect DDP/FSDP, decide gradient all-reduce and unsharding, broadcast rank 0's weights."""
        self._is_ddp = isinstance(model, nn.parallel.DistributedDataParallel)
        self._is_fsdp = bool(_d._fsdp_modules(_d.unwrap_model(model), recurse=False))
        self._check_wrapping()
        world = _d.get_world_size()
        # stepped tensors outside the model (a learnable loss parameter) are averaged by the
        # trainer in every mode (no DDP/FSDP reducer sees them) unless sync_gradients=False
        self._sync_outside = world > 1 and sync_gradients is not False
        if sync_gradients is None:
            sync_gradients = world > 1 and not (self._is_ddp or self._is_fsdp)
        if sync_gradients and (self._is_ddp or self._is_fsdp):
            raise ConfigurationError(
                "sync_gradients=True is for plain models; DDP and FSDP models already "
                "synchronise gradients"
            )
        self.sync_gradients = bool(sync_gradients) and world > 1
        self._covered_ids = self._covered_parameter_ids(model, loss_fn)
        if unshard_during_step is None:
            from torchebm.losses._base_score_matching import BaseScoreMatching

            unshard_during_step = isinstance(loss_fn, BaseScoreMatching)
        self.unshard_during_step = bool(unshard_during_step) and self._is_fsdp
        if self.sync_gradients or self._sync_outside:
            own = list(model.parameters()) + list(model.buffers()) if self.sync_gradients else []
            with torch.no_grad():
                for t in own + self._outside_parameters():
                    _d.broadcast_tensor(t, src=0)

    @staticmethod
    def _covered_parameter_ids(model: nn.Module, loss_fn: Any) -> frozenset[int]:
        """Ids of the parameters whose gradients ``model`` itself handles (every one of the model)
        or a ``DistributedDataParallel`` module inside ``loss_fn`` reduces."""
        ids = {id(p) for p in model.parameters()}
        if isinstance(loss_fn, nn.Module):
            for m in loss_fn.modules():
                if isinstance(m, nn.parallel.DistributedDataParallel):
                    ids.update(id(p) for p in m.parameters())
        return frozenset(ids)

    def _optimizer_tensors(self) -> dict[int, torch.Tensor]:
        """``id -> tensor`` of every tensor the optimizer steps, once each, in ``param_groups``
        order."""
        return {id(p): p for group in self.optimizer.param_groups for p in group["params"]}

    def _stepped_parameters(self) -> list[torch.Tensor]:
        """Every tensor the optimizer steps, once each: the model's (in ``model.parameters()``
        order) first, then the others in ``param_groups`` order."""
        stepped = self._optimizer_tensors()
        own = [p for p in self.model.parameters() if id(p) in stepped]
        mine = {id(p) for p in own}
        return own + [p for k, p in stepped.items() if k not in mine]

    def _outside_parameters(self) -> list[torch.Tensor]:
        """Stepped tensors that no DDP/FSDP reducer averages (sharded ones are FSDP's)."""
        return [
            p
            for k, p in self._optimizer_tensors().items()
            if k not in self._covered_ids and not _d._is_dtensor(p)
        ]

    def _resolve_device(self, device: Any) -> torch.device:
        if device is not None:
            return torch.device(device)
        for p in self.model.parameters():
            if _d._is_dtensor(p):
                return cast(Any, p).to_local().device
            return p.device
        return torch.device("cpu")

    def _check_wrapping(self) -> None:
        if not self._is_ddp or not isinstance(self.loss_fn, nn.Module):
            return
        ids = {id(m) for m in self.loss_fn.modules()}
        if id(self.model.module) in ids and id(self.model) not in ids:
            raise ConfigurationError(
                "loss_fn holds the unwrapped module of the DistributedDataParallel model, so "
                "its gradients would not be synchronised; build the loss with the DDP-wrapped "
                "model (and the sampler with model.module)"
            )

    # ------------------------------------------------------------------ batches
    def _split_batch(self, batch: Any) -> tuple[torch.Tensor, dict]:
        """``(x, model_kwargs)`` from a tensor, a dict or a ``(data[, cond])`` tuple/list."""
        if isinstance(batch, torch.Tensor):
            x, kw = batch, {}
        elif isinstance(batch, dict):
            key = "x" if "x" in batch else "data" if "data" in batch else None
            if key is None:
                raise ValueError(
                    f"batch dict must have an 'x' or 'data' entry, got keys {sorted(batch)}"
                )
            x = batch[key]
            kw = {k: v for k, v in batch.items() if k != key}
        elif isinstance(batch, (tuple, list)):
            if len(batch) not in (1, 2):
                raise ValueError(
                    f"batch tuple/list must be (data,) or (data, cond), got length {len(batch)}"
                )
            x = batch[0]
            if len(batch) == 1 or batch[1] is None:
                kw = {}
            elif isinstance(batch[1], dict):
                kw = dict(batch[1])
            else:
                kw = {"y": batch[1]}
        else:
            raise TypeError(
                f"batch must be a Tensor, a dict or a (data, cond) tuple, got {type(batch).__name__}"
            )
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"batch data must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"batch data must have a non-empty batch, got shape {tuple(x.shape)}")
        return x, kw

    def _mixed_precision(self, model: Any, use_mixed_precision: Any, amp_dtype: Any) -> bool:
        """``use_mixed_precision`` checked, ``False`` where autocast cannot run (with a
        warning), and a warning where it would do nothing (float64 parameters)."""
        use = check_bool("use_mixed_precision", use_mixed_precision)
        cpu_bf16 = self.device.type == "cpu" and amp_dtype == torch.bfloat16
        if use and self.device.type != "cuda" and not cpu_bf16:
            warn_user(
                "use_mixed_precision requires CUDA (or amp_dtype=torch.bfloat16 on the CPU); "
                f"falling back to full precision on {self.device.type}"
            )
            return False
        if use and any(p.dtype == torch.float64 for p in model.parameters()):
            warn_user(
                "use_mixed_precision has no effect on the float64 parameters of the model: "
                "autocast casts float32 operations only (pass dtype=torch.float32 to train in "
                "mixed precision)"
            )
        return use

    def _to_device(self, x: torch.Tensor, kw: dict) -> tuple[torch.Tensor, dict]:
        """The batch on the trainer's device; floating tensors also in ``dtype`` when given
        (as torchebm 0.8.9 cast them: a float32 loader beside a float64 model)."""

        def move(v: torch.Tensor) -> torch.Tensor:
            cast = self._batch_dtype is not None and v.is_floating_point()
            return v.to(self.device, self._batch_dtype if cast else None, non_blocking=True)

        return move(x), {k: move(v) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}

    # ------------------------------------------------------------------ one step
    def compute_loss(self, x: torch.Tensor, model_kwargs: dict) -> Any:
        """Call ``loss_fn`` on one micro-batch; override to customise a step.

        Args:
            x: The micro-batch `(B, *event)`.
            model_kwargs: Its conditioning (empty when the batch has none).

        Returns:
            A scalar tensor, a tuple whose first entry is the scalar loss (e.g. contrastive
            divergence's ``(loss, negatives)``), or a dict with a scalar ``"loss"`` (other
            scalar tensor entries are reported as metrics).
        """
        kwargs: dict[str, Any] = {}
        if model_kwargs:
            kwargs["model_kwargs"] = model_kwargs
        if self.generator is not None and self._loss_takes_generator:
            kwargs["generator"] = self.generator
        return self.loss_fn(x, **kwargs)

    @staticmethod
    def _unpack(out: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        metrics: dict[str, torch.Tensor] = {}
        if isinstance(out, dict):
            if "loss" not in out:
                raise ValueError(f"loss_fn returned a dict without 'loss' (keys {sorted(out)})")
            loss = out["loss"]
            for k, v in out.items():
                if k != "loss" and isinstance(v, torch.Tensor) and v.numel() == 1:
                    metrics[k] = v.detach().reshape(())
        elif isinstance(out, (tuple, list)) and out:
            loss = out[0]
        else:
            loss = out
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(
                "loss_fn must return a scalar tensor (or a tuple/dict holding one), got "
                f"{type(loss).__name__}"
                + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else "")
            )
        if not loss.requires_grad:
            raise ValueError(
                "the loss does not require grad: loss_fn must depend differentiably on the "
                "model's parameters"
            )
        return loss.reshape(()), {"loss": loss.detach().reshape(()), **metrics}

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.use_mixed_precision:
            return torch.amp.autocast(device_type=self.device.type, dtype=self.amp_dtype)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _grad_sync(self, enabled: bool):
        if enabled or not (self._is_ddp or self._is_fsdp):
            yield
            return
        if self._is_ddp:
            with cast(Any, self.model).no_sync():
                yield
            return
        inner = cast(Any, _d.unwrap_model(self.model))
        inner.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            inner.set_requires_gradient_sync(True)

    def train_step(self, batch: Any, model_kwargs: dict | None = None) -> dict[str, torch.Tensor]:
        """Forward + backward of one micro-batch; an optimizer step at the end of a window.

        Args:
            batch: A tensor ``(B, ...)``, a dict with ``"x"``/``"data"`` (other entries are
                conditioning), or a ``(data, cond)`` tuple (a non-dict ``cond`` becomes
                ``{"y": cond}``).
            model_kwargs: Extra conditioning (wins over entries taken from ``batch``).

        Returns:
            ``{"loss": detached scalar, ...}`` (no host synchronisation).
        """
        x, kw = self._split_batch(batch)
        if model_kwargs is not None:
            if not isinstance(model_kwargs, dict):
                raise TypeError(f"model_kwargs must be a dict, got {type(model_kwargs).__name__}")
            kw.update(model_kwargs)
        x, kw = self._to_device(x, kw)
        if self._micro == 0:
            self.optimizer.zero_grad(set_to_none=True)
        last = self._micro == self.grad_accum_steps - 1
        unshard = _d.unsharded(self.model) if self.unshard_during_step else contextlib.nullcontext()
        with self._grad_sync(last), unshard:
            with self._autocast():
                out = self.compute_loss(x, kw)
            loss, metrics = self._unpack(out)
            scaled = loss / self.grad_accum_steps if self.grad_accum_steps > 1 else loss
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
        if self.nan_policy != "ignore":
            ok = torch.isfinite(metrics["loss"])
            prev = self._window_ok
            self._window_ok = ok if self._micro == 0 or prev is None else prev & ok
        self._micro += 1
        if last:
            self._micro = 0
            if self._optimizer_step():
                self.step += 1
        return metrics

    def _parameter_names(self) -> dict[int, str]:
        """Names of the checked tensors: the model's own, ``loss_fn.<name>`` for a parameter of
        the loss, else ``param_groups[g][i]``."""
        names = {id(p): n for n, p in _d.unwrap_model(self.model).named_parameters()}
        if isinstance(self.loss_fn, nn.Module):
            for n, p in self.loss_fn.named_parameters():
                names.setdefault(id(p), f"loss_fn.{n}")
        for g, group in enumerate(self.optimizer.param_groups):
            for i, p in enumerate(group["params"]):
                names.setdefault(id(p), f"param_groups[{g}][{i}]")
        return names

    def _checked_parameters(self) -> list[torch.Tensor]:
        """What the non-finite check reads: the model's parameters and every other tensor the
        optimizer steps."""
        own = list(self.model.parameters())
        mine = {id(p) for p in own}
        return own + [p for k, p in self._optimizer_tensors().items() if k not in mine]

    def _nonfinite_parameters(self) -> list[str]:
        names, bad = self._parameter_names(), []
        for p in self._checked_parameters():
            g = p.grad
            if g is None:
                continue
            g = cast(Any, g).to_local() if _d._is_dtensor(g) else g
            if not bool(torch.isfinite(g).all()):
                bad.append(names[id(p)])
        return bad

    def _window_is_finite(self) -> bool:
        """One host read: the window's losses and (without loss scaling) gradients are finite."""
        ok = self._window_ok if self._window_ok is not None else torch.tensor(True)
        if self.scaler is None:
            grads = [p.grad for p in self._checked_parameters() if p.grad is not None]
            if grads:
                local = [cast(Any, g).to_local() if _d._is_dtensor(g) else g for g in grads]
                dev = local[0].device
                ok = (
                    ok.to(dev) & torch.stack([torch.isfinite(g).all().to(dev) for g in local]).all()
                )
        if _d.get_world_size() > 1:
            ok = _d.all_reduce_mean(ok.float()) == 1.0
        return bool(ok)

    def _synchronise(self) -> None:
        """Average the gradients no reducer averages: the model's in plain mode, and in every
        mode (DDP and FSDP included) those of stepped tensors outside the model."""
        params: list[torch.Tensor] = []
        if self.sync_gradients:
            params += [p for p in self.model.parameters() if p.requires_grad]
        if self._sync_outside:
            params += self._outside_parameters()
        groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in params:  # the same order on every rank: one flat buffer per device and dtype
            groups.setdefault((p.device, p.dtype), []).append(p)
        for group in groups.values():
            _all_reduce_gradients(group)

    def _optimizer_step(self) -> bool:
        """Synchronise, check, clip and step; ``False`` if ``nan_policy="skip"`` dropped it."""
        if self.sync_gradients or self._sync_outside:
            self._synchronise()
        if self.nan_policy != "ignore" and not self._window_is_finite():
            bad = self._nonfinite_parameters()
            loss_ok = self._window_ok is None or bool(self._window_ok)
            parts = ([] if loss_ok else ["loss"]) + ([f"gradients of {bad}"] if bad else [])
            what = " and ".join(parts) or "loss or gradients on another rank"
            msg = (
                f"non-finite {what} at optimizer step {self.step} "
                f"(epoch {self.epoch}); lower the learning rate or the sampler step size, "
                "clip gradients (max_grad_norm), or regularise the energy"
            )
            if self.nan_policy == "raise":
                raise NonFiniteError(msg, indices=bad, step=self.step)
            warn_user(msg + "; skipping this step (nan_policy='skip')", RuntimeWarning)
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            return False
        if self.scaler is not None:
            if self.max_grad_norm is not None:
                self.scaler.unscale_(self.optimizer)
                _clip_grad_norm(self._stepped_parameters(), self.max_grad_norm)
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scaler.get_scale() < scale:  # an overflow: the scaler skipped the step
                self.skipped_steps += 1
                return False
        else:
            if self.max_grad_norm is not None:
                _clip_grad_norm(self._stepped_parameters(), self.max_grad_norm)
            self.optimizer.step()
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        if self.step_loss_schedulers:
            _step_loss_schedules(self.loss_fn)
        return True

    # ------------------------------------------------------------------ loops
    def _callback(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    def _restore_order(self, loader: Iterable[Any], skip: int) -> None:
        """Before iterating ``loader``: rewind its order RNG when resuming, record it otherwise."""
        src = _order_source(loader)
        persistent = getattr(loader, "persistent_workers", False)
        if src not in (None, "unknown") and persistent and loader not in self._started_loaders:
            # start the workers now: their first pass draws a base seed that the later passes
            # do not, so every epoch draws the same from the state recorded here
            iter(loader)
            self._started_loaders.add(loader)
        saved: Any = self._order_rng if skip > 0 or self._order_pending else None
        self._order_pending = False
        restored = saved is not None and saved["source"] == _order_kind(src)
        if restored:  # (a checkpoint of torchebm <= 0.9.0 holds "state" only)
            if "global" in saved or saved["source"] == "global":
                torch.set_rng_state(saved.get("global", saved.get("state")).cpu())
            if saved["source"] == "generator":  # (.cpu(): torch.load(map_location=) moved them)
                src.set_state(saved["state"].cpu())
        elif skip > 0 and src is not None:
            sampler = getattr(loader, "sampler", None)
            why = (
                f"its order comes from {type(loader if sampler is None else sampler).__name__}, "
                "which has neither set_epoch nor a torch.Generator"
                if src == "unknown"
                else "the checkpoint holds no state of the RNG that shuffles it (it was saved "
                "by an older torchebm or with another kind of loader)"
            )
            warn_once(
                "BaseTrainer.mid_epoch_order",
                f"resuming in the middle of an epoch ({skip} batches done), but the trainer "
                f"cannot restore the batch order of this loader: {why}. The first {skip} "
                "batches of a new pass are skipped, so the rest of the epoch matches the "
                "interrupted run only if the loader yields the same batches in the same order",
                UserWarning,
            )
        self._order_src = src
        self._order_rng = _order_state(src) if skip == 0 or restored else None

    @renamed_kwargs(dataloader="loader")
    def train_epoch(self, loader: Iterable[Any]) -> dict[str, float]:
        """One pass over ``loader``; returns the mean of each metric (global when distributed).

        The mean is over batches, each counting once whatever its size (as in torchebm 0.8.9):
        a short last batch weighs as much as a full one (65 samples in batches of 64: the
        single sample is half of the epoch's loss); use a loader with ``drop_last=True`` or
        equal batches for a per-sample mean.

        The model is put in training mode first, as in torchebm 0.8.9 (a ``validate_fn`` that
        calls ``model.eval()``, or a model built in eval mode, trains with BatchNorm and
        Dropout active).

        After [`load_checkpoint`][torchebm.losses.BaseTrainer.load_checkpoint] of a mid-epoch checkpoint the batches already
        trained in this epoch are skipped, so the run continues where it stopped (and their
        metrics, saved with it, still count in the epoch's means). The RNG that shuffles
        ``loader`` is first rewound to its state at the start of the interrupted epoch (see
        the class docstring for the loaders this covers; others warn once).

        Args:
            loader: Iterable of batches (a tensor, ``(x, ...)`` or a dict).

        Raises:
            ConfigurationError: in a distributed run, ranks whose loaders have different
                numbers of batches (compared at the start of the epoch: a collective).
        """
        cast(Any, self.model).train()  # as 0.8.9: a validate_fn's eval() ends here
        _check_equal_epochs(loader)
        skip = self._batch_in_epoch
        if skip == 0:
            self._epoch_sums, self._epoch_count = {}, 0
        self._restore_order(loader, skip)
        sums = self._epoch_sums
        for i, batch in enumerate(loader):
            if i < skip:
                continue
            self._callback("on_batch_start", i)
            metrics = self.train_step(batch)
            for k, v in metrics.items():
                v = v.to(torch.promote_types(v.dtype, torch.float32))  # float64 stays
                sums[k] = sums[k] + v if k in sums else v.clone()
            self._epoch_count += 1
            self._batch_in_epoch = i + 1  # all of the batch counted before on_batch_end
            self._callback("on_batch_end", i, metrics)
        self._batch_in_epoch = 0
        out = {}
        for k in sorted(sums):
            out[k] = float(_d.all_reduce_mean(sums[k] / max(self._epoch_count, 1)).item())
        return out

    @renamed_kwargs(dataloader="loader")
    def train(
        self,
        loader: Iterable[Any],
        num_epochs: int,
        validate_fn: Callable[[BaseTrainer], dict] | None = None,
    ) -> dict[str, list]:
        """Train until `epoch` reaches ``num_epochs`` (a total, so resuming continues).

        Calls ``loader.sampler.set_epoch(epoch)`` when available (``DistributedSampler``),
        so shuffling depends only on the epoch and a resumed run sees the same batches; a
        shuffling ``DataLoader`` without it has its generator restored on resume (see
        [`train_epoch`][torchebm.losses.BaseTrainer.train_epoch]).

        Args:
            loader: Iterable of batches (usually a ``DataLoader``).
            num_epochs: Total number of epochs (int ``>= 0``).
            validate_fn: Optional ``fn(trainer) -> dict`` run after each epoch. Its values are
                stored in ``history["val"]`` as plain Python values (one-element tensors and
                numpy scalars become numbers), so checkpoints load with ``weights_only=True``.

        Returns:
            ``{"train": [per-epoch metric dicts], "val": [...]}``.

        Raises:
            TypeError: ``validate_fn`` returned a value a checkpoint cannot hold (the error
                names its key).
        """
        num_epochs = check_int("num_epochs", num_epochs, minimum=0)
        if validate_fn is not None and not callable(validate_fn):
            raise TypeError(f"validate_fn must be callable, got {type(validate_fn).__name__}")
        self._callback("on_train_start")
        while self.epoch < num_epochs:
            sampler = getattr(loader, "sampler", None)
            if sampler is not None and hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)
            self._callback("on_epoch_start", self.epoch)
            metrics = self.train_epoch(loader)
            self.history["train"].append(metrics)
            if validate_fn is not None:
                self.history["val"].append(_plain_metrics(validate_fn(self)))
            self.epoch += 1  # first: a checkpoint saved in on_epoch_end resumes at the next
            self._callback("on_epoch_end", self.epoch - 1, metrics)
        self._callback("on_train_end", self.history)
        return self.history

    # ------------------------------------------------------------------ state
    def _model_prefixes(self) -> tuple[str, ...]:
        if not isinstance(self.loss_fn, nn.Module):
            return ()
        targets = {id(self.model), id(_d.unwrap_model(self.model))}
        return tuple(
            name + "."
            for name, m in self.loss_fn.named_modules(remove_duplicate=False)
            if name and id(m) in targets
        )

    def _loss_state(self) -> dict[str, Any]:
        if not hasattr(self.loss_fn, "state_dict"):
            return {}
        prefixes = self._model_prefixes()
        state = self.loss_fn.state_dict()
        return {k: v for k, v in state.items() if not (prefixes and k.startswith(prefixes))}

    def _load_loss_state(self, state: dict[str, Any]) -> None:
        if not hasattr(self.loss_fn, "load_state_dict"):
            return
        if isinstance(self.loss_fn, nn.Module):
            _materialise_none_buffers(self.loss_fn, state)
        prefixes = self._model_prefixes()
        if not isinstance(self.loss_fn, nn.Module):
            self.loss_fn.load_state_dict(state)
            return
        result = self.loss_fn.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not (prefixes and k.startswith(prefixes))]
        if missing or result.unexpected_keys:
            raise ValueError(
                "checkpoint loss state does not match loss_fn: missing keys "
                f"{missing}, unexpected keys {list(result.unexpected_keys)}"
            )

    def _stateful_callbacks(self) -> list[Any]:
        """The callbacks checkpointed with the trainer: those with ``state_dict`` and
        ``load_state_dict``, in list order."""
        return [
            cb
            for cb in self.callbacks
            if callable(getattr(cb, "state_dict", None))
            and callable(getattr(cb, "load_state_dict", None))
        ]

    def _rank_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"loss": self._loss_state()}
        state["generator"] = self.generator.get_state() if self.generator is not None else None
        state["callbacks"] = [
            {"type": type(cb).__name__, "state": cb.state_dict()}
            for cb in self._stateful_callbacks()
        ]
        state["epoch_sums"] = {k: v.detach().cpu() for k, v in self._epoch_sums.items()}
        state["epoch_count"] = self._epoch_count
        mid = self._batch_in_epoch > 0 or self._order_pending  # else: the next epoch's start
        state["loader_rng"] = self._order_rng if mid else _order_state(self._order_src)
        if self._micro != 0:
            if _d.is_sharded(self.model):
                raise NotImplementedError(
                    "checkpointing an FSDP model in the middle of a gradient-accumulation "
                    "window is not supported; save after an optimizer step"
                )
            # the model's parameters first, then the other tensors the optimizer steps
            state["grads"] = [
                None if p.grad is None else p.grad.detach().cpu()
                for p in self._checked_parameters()
            ]
            state["window_ok"] = None if self._window_ok is None else self._window_ok.cpu()
        return state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume; loadable with ``torch.load(weights_only=True)``.

        In a distributed run this is a **collective** (every rank must call it): FSDP2
        weights are gathered and every rank's own state (loss buffers, generator) is
        gathered to rank 0, so the returned dict is complete on rank 0 only.
        """
        return {
            "format": _FORMAT,
            "model": _d.model_state_dict(self.model),
            "optimizer": _d.optimizer_state_dict(self.model, self.optimizer),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "lr_scheduler": (
                self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None
            ),
            "counters": {
                "step": self.step,
                "epoch": self.epoch,
                "skipped_steps": self.skipped_steps,
                "micro": self._micro,
                "grad_accum_steps": self.grad_accum_steps,
                "batch_in_epoch": self._batch_in_epoch,
            },
            "history": {k: [dict(m) for m in v] for k, v in self.history.items()},
            "types": self._component_types(),
            "world_size": _d.get_world_size(),
            "ranks": _d._rank_list(self._rank_state()),
        }

    def _component_types(self) -> dict[str, str | None]:
        """Class names of the optimizer and LR scheduler (a checkpoint of other classes would
        load its hyper-parameters into these: a ``StepLR``'s ``gamma`` into an
        ``ExponentialLR``)."""
        sched = self.lr_scheduler
        return {
            "optimizer": type(self.optimizer).__name__,
            "lr_scheduler": None if sched is None else type(sched).__name__,
        }

    def _check_components(self, state: dict[str, Any], mine: dict[str, Any]) -> None:
        """Refuse a checkpoint whose LR scheduler, optimizer, generator or stateful callbacks
        this trainer cannot take (``mine``: this rank's entry), before anything is loaded."""
        if state.get("lr_scheduler") is not None and self.lr_scheduler is None:
            raise ValueError(
                "checkpoint holds an LR scheduler state but this trainer has no lr_scheduler, "
                "so the resumed learning rates would not follow the saved schedule; construct "
                "it with the same lr_scheduler="
            )
        saved_types = state.get("types") or {}  # absent from older checkpoints
        for name, mine_type in self._component_types().items():
            if saved_types.get(name) not in (None, mine_type):  # None: saved without one
                raise ValueError(
                    f"checkpoint holds the state of a {saved_types[name]} {name}, this trainer "
                    f"has a {mine_type}; construct it with the same {name} class"
                )
        if mine.get("generator") is not None and self.generator is None:
            raise ValueError(
                "checkpoint holds a generator state but this trainer has no generator; "
                "construct it with seed= or generator="
            )
        if mine.get("generator") is not None and self.generator is not None:
            saved_n, my_n = mine["generator"].numel(), self.generator.get_state().numel()
            if saved_n != my_n:  # a CPU generator's state is 5056 bytes, a CUDA one's 16
                raise ValueError(
                    f"checkpoint holds the state of another kind of generator ({saved_n} bytes) "
                    f"than this trainer's {self.generator.device.type} generator ({my_n} bytes): "
                    "it was saved on another device type; build the trainer (its model, or "
                    "generator=) on the device type it was saved from"
                )
        saved_callbacks = mine.get("callbacks") or []  # absent from older checkpoints
        saved_cb_types = [entry["type"] for entry in saved_callbacks]
        my_types = [type(cb).__name__ for cb in self._stateful_callbacks()]
        if saved_callbacks and saved_cb_types != my_types:
            raise ValueError(
                f"checkpoint holds the state of the callbacks {saved_cb_types}, this trainer's "
                f"callbacks with state_dict/load_state_dict are {my_types}; construct it with "
                "the same callbacks"
            )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a [`state_dict`][torchebm.losses.BaseTrainer.state_dict] (every rank passes the full dict).

        Every check below runs before anything is loaded; a model or loss state that does not
        fit (another architecture, another replay-buffer size) fails inside the load, and the
        trainer may then be partly loaded: build a new one.

        A torchebm 0.8.9 trainer checkpoint (``model_state_dict``, ``optimizer_state_dict``,
        optionally ``grad_scaler_state_dict``) restores the model, the optimizer and the grad
        scaler only (it holds no counters, history or generator state), with one warning.

        Args:
            state: The dict of `state_dict` (or a torchebm 0.8.9 checkpoint).

        Raises:
            ValueError: not a trainer state, saved with a different world size, another
                optimizer or LR-scheduler class or other callbacks with state, inside a
                gradient-accumulation window of another ``grad_accum_steps``, or holding
                an LR-scheduler or generator state this trainer has nothing to load into,
                or a generator state of another device type (a CUDA run resumed on a CPU).
        """
        if isinstance(state, dict) and "format" not in state and _OLD_KEYS <= state.keys():
            return self._load_089_checkpoint(state)
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(
                f"state must be a BaseTrainer state_dict (format {_FORMAT!r}), got "
                f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r}"
            )
        ranks = state["ranks"]
        world, rank = _d.get_world_size(), _d.get_rank()
        if not isinstance(ranks, list) or len(ranks) != world:
            n = len(ranks) if isinstance(ranks, list) else "?"
            raise ValueError(
                f"checkpoint holds per-rank state for world_size={n}, this run has "
                f"world_size={world}; resume with the same number of processes"
            )
        mine = ranks[rank]
        self._check_components(state, mine)
        saved_callbacks = mine.get("callbacks") or []  # absent from older checkpoints
        c = state["counters"]
        micro, accum = int(c["micro"]), c.get("grad_accum_steps")  # absent from older ones
        if micro and (micro >= self.grad_accum_steps or accum not in (None, self.grad_accum_steps)):
            raise ValueError(
                f"checkpoint was saved {micro} micro-batches into a gradient-accumulation window "
                f"of grad_accum_steps={accum if accum is not None else '?'}, this trainer has "
                f"grad_accum_steps={self.grad_accum_steps}; resume with the same value (or "
                "from a checkpoint saved after an optimizer step)"
            )
        self._load_loss_state(mine["loss"])  # first: a replay buffer of another size fails here
        _d.load_model_state_dict(self.model, state["model"])
        _d.load_optimizer_state_dict(self.model, self.optimizer, state["optimizer"])
        if self.lr_scheduler is not None and state.get("lr_scheduler") is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(c["step"]), int(c["epoch"])
        self.skipped_steps = int(c.get("skipped_steps", 0))
        self._micro, self._batch_in_epoch = micro, int(c["batch_in_epoch"])
        self.history = {k: [dict(m) for m in v] for k, v in state["history"].items()}
        for cb, entry in zip(self._stateful_callbacks(), saved_callbacks):
            cb.load_state_dict(entry["state"])
        self._epoch_sums = dict(mine.get("epoch_sums", {}))
        self._epoch_count = int(mine.get("epoch_count", 0))
        self._order_rng = mine.get("loader_rng")  # absent from older checkpoints
        self._order_pending = self._order_rng is not None
        gen_state = mine.get("generator")
        if gen_state is not None:
            cast(torch.Generator, self.generator).set_state(gen_state.cpu())
        grads = mine.get("grads")
        if grads is not None:
            params = self._checked_parameters()
            if len(grads) != len(params):  # older checkpoints: the model's parameters only
                params = list(self.model.parameters())
            if len(grads) != len(params):
                raise ValueError(
                    f"checkpoint holds {len(grads)} pending gradients, model has {len(params)} "
                    f"parameters and the optimizer steps {len(self._checked_parameters())} tensors"
                )
            for p, g in zip(params, grads):
                p.grad = None if g is None else g.to(device=p.device, dtype=p.dtype)
        window_ok = mine.get("window_ok")
        self._window_ok = None if window_ok is None else window_ok.to(self.device)

    def _load_089_checkpoint(self, state: dict[str, Any]) -> None:
        warn_once(
            "BaseTrainer.load_089_checkpoint",
            "loading a torchebm 0.8.9 trainer checkpoint: model, optimizer and grad scaler are "
            "restored; step, epoch, history and random state start from this trainer's",
            UserWarning,
        )
        _d.load_model_state_dict(self.model, state["model_state_dict"])
        _d.load_optimizer_state_dict(self.model, self.optimizer, state["optimizer_state_dict"])
        scaler_state = state.get("grad_scaler_state_dict")
        if self.scaler is not None and scaler_state is not None:
            self.scaler.load_state_dict(scaler_state)

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write [`state_dict`][torchebm.losses.BaseTrainer.state_dict] to ``path`` (rank 0 only, atomically); collective.

        Every rank returns after the file exists (barrier).

        Args:
            path: Destination file (parent folders are created).
        """
        path = Path(path)
        state = self.state_dict()
        problem = None
        if _d.is_main_process():  # refused now, not when the run is resumed
            try:
                _check_loadable(state)
            except TypeError as err:
                problem = str(err)
        # on every rank: a rank that went on to the barrier below waited for rank 0 forever
        problem = _d.broadcast_object(problem)
        if problem is not None:
            raise TypeError(problem)
        if _d.is_main_process():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            torch.save(state, tmp)
            os.replace(tmp, path)
        _d.barrier()
        return path

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = "cpu") -> None:
        """Read ``path`` with ``torch.load(weights_only=True)`` and [`load_state_dict`][torchebm.losses.BaseTrainer.load_state_dict] it.

        Every rank reads the same file (use a file system all nodes can read).

        Args:
            path: The checkpoint file.
            map_location: ``torch.load``'s ``map_location``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint path {str(path)!r} does not exist")
        self.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))


def _step_loss_schedules(loss_fn: Any) -> None:
    """Advance the schedules of ``loss_fn`` by one step, each once: its ``step_schedulers()``,
    or for a wrapper module those of the outermost ``Schedulable`` modules it holds (they are
    in its ``state_dict``, so a checkpoint resumes them). A function is not looked into: its
    schedules could not be checkpointed (the trainer warns about them at construction)."""
    if hasattr(loss_fn, "step_schedulers"):
        loss_fn.step_schedulers()
        return
    if not isinstance(loss_fn, nn.Module):
        return
    outer = _outermost_schedulables(loss_fn)
    if all(type(m).step_schedulers is Schedulable.step_schedulers for m in outer):
        for s in {id(s): s for m in outer for s in _subtree_schedulers(m)}.values():
            s.step()  # one scheduler two of them share is stepped once
    else:
        for m in outer:  # an override decides what its loss steps
            m.step_schedulers()


def _warn_about_unstepped_schedules(loss_fn: Any) -> None:
    """The construction warning of a function ``loss_fn`` that calls a scheduled loss."""
    if named := _scheduled_losses_named_by(loss_fn):
        warn_user(
            f"loss_fn is a {type(loss_fn).__name__}, not a module: the trainer can neither "
            f"step nor checkpoint the schedules of the scheduled losses it calls "
            f"({', '.join(named)}); pass the loss module (or an nn.Module around it) as loss_fn"
        )


def _scheduled_losses_named_by(fn: Any) -> list[str]:
    """Names of the scheduled ``Schedulable`` modules a function loss refers to: a bound
    method's object, a ``functools.partial``'s function and arguments, the cells of a
    closure and the globals its code names (one level; for the construction warning)."""
    refs: dict[str, Any] = {}
    if isinstance(fn, functools.partial):
        refs = {"partial": fn.func, **{f"args[{i}]": a for i, a in enumerate(fn.args)}}
        refs.update(fn.keywords)
    elif inspect.ismethod(fn):
        refs = {"self": fn.__self__}
    elif inspect.isfunction(fn):
        code, cells = fn.__code__, fn.__closure__ or ()
        for name, cell in zip(code.co_freevars, cells):
            with contextlib.suppress(ValueError):  # an empty cell
                refs[name] = cell.cell_contents
        refs.update((n, fn.__globals__[n]) for n in code.co_names if n in fn.__globals__)
    return [
        str(name)
        for name, obj in refs.items()
        if isinstance(obj, nn.Module)
        and any(m._schedulers_dict() for m in _outermost_schedulables(obj))
    ]


def _outermost_schedulables(root: nn.Module) -> list[Schedulable]:
    found: list[Schedulable] = []
    inside: list[str] = []  # the module-name prefixes of those found
    for name, module in root.named_modules():
        if isinstance(module, Schedulable) and not any(name.startswith(p) for p in inside):
            found.append(module)
            inside.append(f"{name}." if name else "")
    return found


def _all_reduce_gradients(params: list[torch.Tensor]) -> None:
    """Average the gradients of ``params`` (one device and dtype) over ranks with one flat
    all-reduce (DDP semantics).

    A parameter without a gradient on some rank counts as a zero gradient there; one
    without a gradient on every rank keeps ``grad = None`` (as in a single process, so
    optimizers skip it). Ranks therefore never disagree on the buffer layout.
    """
    if not params:
        return
    ref = params[0]
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    present = torch.tensor([p.grad is not None for p in params], dtype=ref.dtype, device=ref.device)
    flat = _d.all_reduce_mean(torch.cat([*(t.to(ref.dtype) for t in parts), present]))
    offset = 0
    for p, seen in zip(params, flat[-len(params) :].tolist()):
        n = p.numel()
        if seen > 0:
            avg = flat[offset : offset + n].view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = avg.clone()
            else:
                p.grad.copy_(avg)
        offset += n


def _clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` over every tensor the optimizer steps.

    When FSDP2's sharded gradients (``DTensor``) meet plain ones (a parameter outside the
    sharded model), the norms are combined here instead, so that no DTensor op receives a
    plain tensor (that needs DTensor's implicit replication of scalars): the sharded norm is
    gathered with ``full_tensor`` and every gradient is scaled by the same
    ``min(1, max_norm / (norm + 1e-6))`` as ``clip_grad_norm_`` would.
    """
    grads = [p.grad for p in params if p.grad is not None]
    sharded = [g for g in grads if _d._is_dtensor(g)]
    if not sharded or len(sharded) == len(grads):
        nn.utils.clip_grad_norm_(params, max_norm)
        return
    plain = [g for g in grads if not _d._is_dtensor(g)]
    dev = plain[0].device
    norms = [cast(Any, torch.linalg.vector_norm(torch.stack([g.norm() for g in sharded])))]
    norms = [norms[0].full_tensor().to(dev)] + [g.norm().to(dev) for g in plain]
    coef = torch.clamp(max_norm / (torch.linalg.vector_norm(torch.stack(norms)) + 1e-6), max=1.0)
    with torch.no_grad():
        for g in plain:
            g.mul_(coef.to(g.device))
        for g in sharded:
            cast(Any, g).to_local().mul_(coef.to(cast(Any, g).to_local().device))


def _materialise_none_buffers(module: nn.Module, state: dict[str, Any]) -> None:
    """Give lazily registered ``None`` buffers (e.g. a PCD replay buffer) a tensor to load into.

    Public means only: ``get_buffer`` tells a ``None`` buffer from anything else a key names;
    assigning a registered buffer keeps its persistence (``register_buffer`` runs); one that
    is not persistent (absent from its module's ``state_dict``) is set back to ``None``, so
    its key stays unexpected.
    """
    for key, value in state.items():
        try:
            if not isinstance(value, torch.Tensor) or module.get_buffer(key) is not None:
                continue
        except AttributeError:  # a parameter, extra state or a foreign key: not a buffer
            continue
        path, _, name = key.rpartition(".")
        sub = module.get_submodule(path)
        setattr(sub, name, torch.empty_like(value, device=_module_device(sub)))
        if name not in sub.state_dict(keep_vars=True):
            setattr(sub, name, None)


def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        if b is not None:
            return b.device
    return torch.device("cpu")
