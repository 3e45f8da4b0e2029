r"""``ContrastiveDivergenceTrainer``: [`BaseTrainer`][torchebm.losses.BaseTrainer] preset for CD / PCD."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, cast

import torch
from torch import nn

from torchebm.core._module import warn_user
from torchebm.core.distributed import unwrap_model
from torchebm.core.errors import check_positive
from torchebm.losses._base_trainer import BaseTrainer
from torchebm.losses._contrastive_divergence import ContrastiveDivergence

__all__ = ["ContrastiveDivergenceTrainer"]


@contextlib.contextmanager
def _scratch_buffers(module: nn.Module) -> Iterator[None]:
    """Give ``module``'s buffers clones inside the block and put the originals back after.

    Forwards in the block (e.g. BatchNorm in train mode) update the clones only; the
    original tensors are neither changed nor version-bumped, so a backward pending through
    them still runs.
    """
    saved = [
        (mod, name, buf)
        for mod in module.modules()
        for name, buf in mod.named_buffers(recurse=False)
    ]
    for mod, name, buf in saved:
        setattr(mod, name, buf.clone())
    try:
        yield
    finally:
        for mod, name, buf in saved:
            setattr(mod, name, buf)


class ContrastiveDivergenceTrainer(BaseTrainer):
    r"""Train an energy model by contrastive divergence with a ready-made loop.

    Builds ``Adam(model.parameters(), lr=learning_rate)`` (unless an optimizer is given)
    and ``ContrastiveDivergence(model, sampler, k_steps, persistent, buffer_size,
    **loss_kwargs)``, then runs [`BaseTrainer`][torchebm.losses.BaseTrainer]'s loop. Each step
    reports ``loss``, ``pos_energy`` (mean $E_\theta$ of the data batch) and
    ``neg_energy`` (mean $E_\theta$ of the negatives), the two extra energies being
    evaluated without gradient on the bare model, whose buffers (e.g. BatchNorm running
    statistics) are restored afterwards: reporting them does not change the model. They use
    the batch's own conditioning: with the loss's label dropout (``cfg_dropout`` in
    ``loss_kwargs``) the loss saw some rows under the null condition, so ``pos_energy -
    neg_energy`` is then not the loss's contrastive term.

    Under DDP pass the wrapped model as ``model`` and build ``sampler`` on
    ``model.module`` (see ``docs/distributed.md``).

    Args:
        model: Energy model ``(B, *event) -> (B,)`` (plain, DDP or FSDP2).
        sampler: Sampler of the negatives (e.g. ``LangevinDynamics(model, ...)``).
        optimizer: Optimizer (default: Adam with ``learning_rate``).
        learning_rate: Adam learning rate when ``optimizer`` is ``None`` (``> 0``; beside an
            optimizer a value other than the default warns: it is not used).
        k_steps: Sampler steps per training step.
        persistent: Persistent CD (replay buffer).
        buffer_size: Chains in the replay buffer.
        device: See [`BaseTrainer`][torchebm.losses.BaseTrainer].
        dtype: See [`BaseTrainer`][torchebm.losses.BaseTrainer].
        use_mixed_precision: See [`BaseTrainer`][torchebm.losses.BaseTrainer] (handled by the
            trainer, not passed to the loss).
        grad_accum_steps: Micro-batches per optimizer step.
        callbacks: Trainer callbacks.
        loss_kwargs: Extra ``ContrastiveDivergence`` arguments (``init_steps``,
            ``energy_reg_weight``, ``new_sample_ratio``, ``nan_policy``, ...).
        **trainer_kwargs: Keyword arguments of [`BaseTrainer`][torchebm.losses.BaseTrainer]
            (``seed``, ``generator``, ``max_grad_norm``, ``lr_scheduler``, ``nan_policy``,
            ...).

    Example:
        >>> from torchebm.models import MLPEnergy  # torchebm-models and -samplers
        >>> from torchebm.samplers import LangevinDynamics
        >>> model = MLPEnergy(2)
        >>> trainer = ContrastiveDivergenceTrainer(model, LangevinDynamics(model, 0.01), seed=0)
        >>> loader = torch.utils.data.DataLoader(torch.randn(64, 2), batch_size=32)
        >>> history = trainer.train(loader, num_epochs=2)
        >>> len(history["train"])
        2

    References:
        - Hinton, "Training products of experts by minimizing contrastive divergence",
          Neural Computation 2002.
    """

    def __init__(
        self,
        model: nn.Module,
        sampler: Any,
        optimizer: torch.optim.Optimizer | None = None,
        learning_rate: float = 0.01,
        k_steps: int = 10,
        persistent: bool = False,
        buffer_size: int = 1000,
        device: Any = None,
        dtype: torch.dtype | None = None,
        use_mixed_precision: bool = False,
        grad_accum_steps: int = 1,
        callbacks: Sequence[Any] | None = None,
        *,
        loss_kwargs: dict[str, Any] | None = None,
        **trainer_kwargs: Any,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if optimizer is None:
            lr = check_positive("learning_rate", learning_rate)
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        elif learning_rate != 0.01:  # the default: given beside an optimizer, it did nothing
            warn_user(
                f"learning_rate={learning_rate!r} is ignored: the given optimizer keeps its own "
                "learning rate (set it in the optimizer)"
            )
        if loss_kwargs is not None and not isinstance(loss_kwargs, dict):
            raise TypeError(f"loss_kwargs must be a dict, got {type(loss_kwargs).__name__}")
        loss_fn = ContrastiveDivergence(
            model,
            sampler,
            k_steps=k_steps,
            persistent=persistent,
            buffer_size=buffer_size,
            **(loss_kwargs or {}),
        )
        super().__init__(
            model,
            optimizer,
            loss_fn,
            device=device,
            dtype=dtype,
            use_mixed_precision=use_mixed_precision,
            grad_accum_steps=grad_accum_steps,
            callbacks=callbacks,
            **trainer_kwargs,
        )

    def compute_loss(self, x: torch.Tensor, model_kwargs: dict) -> dict[str, torch.Tensor]:
        """The CD loss plus the mean energies of the data and of the negatives.

        Args:
            x: The micro-batch `(B, *event)`.
            model_kwargs: Its conditioning (empty when the batch has none).
        """
        loss, negatives = super().compute_loss(x, model_kwargs)
        bare = unwrap_model(self.model)
        loss_fn = cast(ContrastiveDivergence, self.loss_fn)
        x = loss_fn.prepare_input(x)  # as the loss casts it (a float64 numpy batch)
        negatives = loss_fn.prepare_input(negatives)
        with torch.no_grad(), _scratch_buffers(bare):
            pos = bare(x, **model_kwargs) if model_kwargs else bare(x)
            neg = bare(negatives, **model_kwargs) if model_kwargs else bare(negatives)
        return {"loss": loss, "pos_energy": pos.mean(), "neg_energy": neg.mean()}
