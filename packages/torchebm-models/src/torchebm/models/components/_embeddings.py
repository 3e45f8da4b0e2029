r"""Conditioning embeddings: sinusoidal timestep embedder, label embedder, 2-D sin-cos positions."""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn

from torchebm.core._module import check_float_dtype
from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    check_generator,
    check_int,
    check_positive,
    check_probability,
)
from torchebm.models.components._compat_089 import (
    accept_089_keys,
    accept_089_pickle,
    label_embedder_kwargs,
    timestep_embedder_kwargs,
)

__all__ = [
    "MLPTimestepEmbedder",
    "LabelEmbedder",
    "build_2d_sincos_pos_embed",
    "sinusoidal_embedding",
]


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    r"""Sinusoidal features of scalar times, ``[cos(t f_k), sin(t f_k)]``.

    $$
    f_k = \exp\!\left(-\ln(\text{max\_period}) \, \frac{k}{\lfloor d/2 \rfloor}\right),
    \qquad k = 0, \dots, \lfloor d/2 \rfloor - 1,
    $$

    the cosines fill the first half of the channels and the sines the second; an odd ``dim``
    gets one trailing zero channel.

    Args:
        t: Times of any shape with ``B`` elements (flattened to ``(B,)``).
        dim: Number of output channels (>= 1).
        max_period: Longest period of the features.

    Returns:
        Tensor of shape ``(B, dim)`` in float32 (float64 for float64 ``t``).

    Example:
        >>> sinusoidal_embedding(torch.zeros(3), 4)
        tensor([[1., 1., 0., 0.],
                [1., 1., 0., 0.],
                [1., 1., 0., 0.]])

    References:
        Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (sec. 3.5).
    """
    dim = check_int("dim", dim, minimum=1)
    max_period = check_positive("max_period", max_period)
    if not isinstance(t, torch.Tensor):
        try:
            t = torch.as_tensor(t)
        except (TypeError, RuntimeError, ValueError):
            raise TypeError(
                f"t must be a tensor or a number (or a sequence of numbers) of times, got "
                f"{type(t).__name__}"
            ) from None
    if t.is_complex():
        raise TypeError(f"t must be a real tensor of times, got dtype {t.dtype}")
    work = torch.float64 if t.dtype == torch.float64 else torch.float32
    t = t.reshape(-1).to(work)
    half = dim // 2
    k = torch.arange(half, device=t.device, dtype=work)
    freqs = torch.exp(-math.log(max_period) * k / max(half, 1))
    args = t[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(t.shape[0], 1)], dim=-1)  # dim 1: (B, 0) + zeros
    return emb


class MLPTimestepEmbedder(nn.Module):
    r"""Embed scalar times into ``(B, out_dim)`` vectors: sinusoidal features, then an MLP.

    ``Linear(frequency_embedding_size, out_dim) -> SiLU -> Linear(out_dim, out_dim)``, weights
    drawn from $N(0, 0.02^2)$ as in DiT.

    Args:
        out_dim: Output (conditioning) dimension.
        frequency_embedding_size: Number of sinusoidal features fed to the MLP.

    Example:
        >>> emb = MLPTimestepEmbedder(32)
        >>> emb(torch.rand(5)).shape
        torch.Size([5, 32])

    References:
        Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT), ICCV 2023.
    """

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("out_dim", timestep_embedder_kwargs)

    def __init__(self, out_dim: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.out_dim = check_int("out_dim", out_dim, minimum=1)
        self.frequency_embedding_size = check_int(
            "frequency_embedding_size", frequency_embedding_size, minimum=1
        )
        fc1 = nn.Linear(self.frequency_embedding_size, self.out_dim)
        fc2 = nn.Linear(self.out_dim, self.out_dim)
        self.mlp = nn.Sequential(fc1, nn.SiLU(), fc2)
        nn.init.normal_(fc1.weight, std=0.02)
        nn.init.normal_(fc2.weight, std=0.02)
        nn.init.zeros_(fc1.bias)
        nn.init.zeros_(fc2.bias)

    @staticmethod
    def sinusoidal_embedding(
        t: torch.Tensor, dim: int, max_period: float = 10000.0
    ) -> torch.Tensor:
        """Sinusoidal features of times: ``(B,) -> (B, dim)`` (the module-level function).

        Args:
            t: Times of any shape with ``B`` elements.
            dim: Number of output channels (>= 1).
            max_period: Longest period of the features.
        """
        return sinusoidal_embedding(t, dim, max_period)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed times ``t`` (any shape, flattened to ``(B,)``) into ``(B, out_dim)``.

        Args:
            t: Times, a tensor with ``B`` elements.
        """
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
        w = cast(nn.Linear, self.mlp[0]).weight
        freq = sinusoidal_embedding(t.to(w.device), self.frequency_embedding_size)
        return self.mlp(freq.to(w.dtype))


class LabelEmbedder(nn.Module):
    r"""Embed integer class labels into ``(B, out_dim)`` vectors, with label dropout for CFG.

    With ``dropout_prob > 0`` the table has an extra *null* class with id ``num_classes``;
    during training each label is replaced by the null id with probability ``dropout_prob``
    (classifier-free guidance training). Weights drawn from $N(0, 0.02^2)$.

    Args:
        num_classes: Number of real classes.
        out_dim: Embedding dimension.
        dropout_prob: Probability of dropping a label to the null class while training.
        null_token: Give the table the null class; default ``dropout_prob > 0`` (``True``
            also lets a model with no training dropout run classifier-free guidance).

    Example:
        >>> emb = LabelEmbedder(10, 32, dropout_prob=0.1)
        >>> emb(torch.tensor([1, 2]), training=False).shape
        torch.Size([2, 32])

    References:
        Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022.
    """

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("embedding_table", label_embedder_kwargs)

    def __init__(
        self,
        num_classes: int,
        out_dim: int,
        dropout_prob: float = 0.0,
        *,
        null_token: bool | None = None,
    ):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.out_dim = check_int("out_dim", out_dim, minimum=1)
        self.dropout_prob = check_probability("dropout_prob", dropout_prob)
        use_null = self.dropout_prob > 0 if null_token is None else bool(null_token)
        if self.dropout_prob > 0 and not use_null:
            raise ValueError(
                f"dropout_prob={dropout_prob} drops labels to the null class: null_token=False "
                "is not accepted with it"
            )
        self.null_token = use_null
        self.embedding_table = nn.Embedding(self.num_classes + int(use_null), self.out_dim)
        nn.init.normal_(self.embedding_table.weight, std=0.02)
        accept_089_keys(self, {"embedding.": "embedding_table."})

    @property
    def null_label_id(self) -> int | None:
        """Id of the null class (``num_classes``), or ``None`` when there is none."""
        return self.num_classes if self.null_token else None

    def maybe_drop_labels(
        self,
        labels: torch.Tensor,
        *,
        force_drop_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Replace labels by the null id: where ``force_drop_mask`` is true, else at random.

        Args:
            labels: Integer labels ``(B,)``.
            force_drop_mask: Boolean ``(B,)``; when given, exactly these labels are dropped.
            generator: Source of the random drops (global RNG when ``None``).

        Raises:
            RuntimeError: there is no null class (``dropout_prob == 0``).
        """
        if self.null_label_id is None:
            raise RuntimeError(
                "LabelEmbedder has no null class to drop labels to: construct it with "
                f"dropout_prob > 0 (got {self.dropout_prob})"
            )
        if force_drop_mask is None:
            check_generator(generator)  # an int failed on generator.device
            u = torch.rand(
                labels.shape,
                generator=generator,
                device=generator.device if generator is not None else labels.device,
                dtype=torch.float32,
            )
            drop = u.to(labels.device) < self.dropout_prob
        else:
            if force_drop_mask.shape != labels.shape:
                raise ShapeError(
                    f"force_drop_mask must have the shape of labels {tuple(labels.shape)}, "
                    f"got {tuple(force_drop_mask.shape)}"
                )
            drop = force_drop_mask.to(device=labels.device, dtype=torch.bool)
        return torch.where(drop, torch.full_like(labels, self.null_label_id), labels)

    def _check_range(self, labels: torch.Tensor) -> None:
        """`ConfigurationError` naming the first label outside the table's ids (CPU labels)."""
        n = self.embedding_table.num_embeddings
        bad = (labels < 0) | (labels >= n)
        try:
            if labels.numel() == 0 or not bool(bad.any()):
                return
        except RuntimeError:  # under torch.func.vmap no Python test of values: the lookup's own
            return
        i = int(bad.nonzero()[0])
        null = f" ({self.num_classes} is the null class)" if self.null_token else ""
        if not self.null_token and int(labels[i]) == self.num_classes:  # a CFG null label
            null = (
                "; this table has no null class: build the model with class_dropout_prob > 0 "
                "(or a LabelEmbedder with null_token=True) to use the label "
                f"{self.num_classes} for classifier-free guidance"
            )
        raise ConfigurationError(
            f"labels must be class ids in [0, {n}), got {int(labels[i])} at index {i}{null}"
        )

    def forward(
        self,
        labels: torch.Tensor,
        *,
        training: bool,
        force_drop_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Embed ``labels`` ``(B,)`` -> ``(B, out_dim)``, dropping some when training or forced.

        Labels on the CPU (the usual case: from a data loader or written by hand) are checked
        to be ids of the table, ``0 <= y < num_classes`` (``<= num_classes`` with the null
        class), at no device sync. Labels already on an accelerator are not: a range check
        there costs a host sync per call, so an id out of range fails in the embedding
        lookup (a device-side assert on CUDA).

        Args:
            labels: Integer labels `(B,)`.
            training: Whether to drop labels at random with ``dropout_prob``.
            force_drop_mask: Boolean `(B,)`; when given, exactly these labels are dropped.
            generator: Source of the random drops (global RNG when ``None``).

        Raises:
            TypeError: ``labels`` not an integer tensor (any integer dtype is taken).
            ShapeError: more than one id per sample (one-hot labels).
            ConfigurationError: a CPU label outside the table's ids.
        """
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
        if math.prod(labels.shape[1:]) > 1:  # (B, C): one-hot or several ids a row
            raise ShapeError(
                f"labels must hold one class id per sample, (B,) or (B, 1), got shape "
                f"{tuple(labels.shape)} (for one-hot labels pass labels.argmax(1))"
            )
        if labels.dtype not in (torch.int64, torch.int32):  # uint8/int16 ids: nn.Embedding
            labels = labels.long()  # takes int64 and int32 only
        labels = labels.reshape(-1)
        if labels.device.type == "cpu":  # a host read of host memory: no device sync
            self._check_range(labels)
        labels = labels.to(self.embedding_table.weight.device)
        if (training and self.dropout_prob > 0) or force_drop_mask is not None:
            labels = self.maybe_drop_labels(
                labels, force_drop_mask=force_drop_mask, generator=generator
            )
        return self.embedding_table(labels)


def build_2d_sincos_pos_embed(
    embed_dim: int,
    grid_size: int | tuple[int, int],
    *,
    device: Any = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Fixed 2-D sin-cos position embedding of a ``gh x gw`` token grid (``grid_size`` per side,
    or ``(gh, gw)``).

    Token ``n = i * gw + j`` (row ``i``, column ``j``, the order of
    `patchify2d`). The first ``embed_dim/2`` channels encode the column ``j`` and the
    last ``embed_dim/2`` the row ``i``, each as ``[sin(p w_k), cos(p w_k)]`` with
    $w_k = 10000^{-k/(D/4)}$, $k = 0, \dots, D/4 - 1$.

    Args:
        embed_dim: Channels ``D``; must be divisible by 4.
        grid_size: Tokens per side, or ``(gh, gw)`` for a rectangular grid (row-major).
        device: Device of the result.
        dtype: Dtype of the result.

    Returns:
        Tensor of shape ``(gh * gw, embed_dim)`` (``(grid_size**2, embed_dim)`` for a square grid).

    Raises:
        ValueError: ``embed_dim`` is not a positive multiple of 4, or ``grid_size < 1``.

    Example:
        >>> build_2d_sincos_pos_embed(8, 4).shape
        torch.Size([16, 8])

    References:
        He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022.
    """
    check_float_dtype("dtype", dtype)  # an integer dtype truncated sin/cos silently
    embed_dim = check_int("embed_dim", embed_dim, minimum=4)
    if isinstance(grid_size, (tuple, list)):
        gh, gw = (check_int("grid_size", g, minimum=1) for g in grid_size)
    else:
        gh = gw = check_int("grid_size", grid_size, minimum=1)
    if embed_dim % 4 != 0:
        raise ValueError(
            f"embed_dim must be divisible by 4 (sin and cos for each of 2 axes), got {embed_dim}"
        )
    quarter = embed_dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij"
    )

    def axis(p: torch.Tensor) -> torch.Tensor:
        a = p.reshape(-1, 1) * omega[None, :]
        return torch.cat([torch.sin(a), torch.cos(a)], dim=1)

    emb = torch.cat([axis(cols), axis(rows)], dim=1)
    return emb.to(device=device, dtype=dtype)


def add_position_table(
    module: Any, h: torch.Tensor, grid_size: int | tuple[int, int]
) -> torch.Tensor:
    """``h + module.pos_embed`` (tokens `(B, N, D)`), the table in ``h``'s dtype and device:
    a fixed sin-cos table recomputed after a dtype change (`converted_sincos_table`), a
    learned one as it is; ``h`` itself when the module has none."""
    pe = module.pos_embed
    if pe is None:
        return h
    if module._pos_table_dtype is not None and (
        pe.dtype != module._pos_table_dtype or module._pos_table_meta
    ):
        pe = converted_sincos_table(module, grid_size)  # after .double(), to_empty()
    return h + pe.to(device=h.device, dtype=h.dtype)


def converted_sincos_table(module: Any, grid_size: int | tuple[int, int]) -> torch.Tensor:
    r"""``module.pos_embed``, a fixed sin-cos table `(1, N, D)` built in the dtype
    ``module._pos_table_dtype``, once the module's dtype was converted since (the caller
    compares the two dtypes on each forward: the only cost when nothing changed).

    A dtype conversion (``.double()``, ``.to(torch.float64)``) casts the buffer, keeping
    the rounding of the dtype it was built in (3e-8 from float32 in a float64 model; 2e-4
    after ``.half().double()``). While the buffer still holds that cast of the table (directly
    or through one other floating dtype), it is recomputed once in float64 and cast to the new
    dtype (exact to its rounding); a table the user replaced is kept. Not in the
    ``state_dict`` (a non-persistent buffer, as in torchebm 0.8.9): checkpoints are unchanged.
    A table built on the meta device is computed at the first forward after ``to_empty()``.
    While ``torch.compile`` traces (``fullgraph=True`` refuses the data-dependent test), the
    cast table is used as it is, as before; an eager forward recomputes it.

    Args:
        module: A `DiT` or `ConditionalTransformer2D` with a fixed table.
        grid_size: Its token grid (``grid_size`` of `build_2d_sincos_pos_embed`).

    Returns:
        The table `(1, N, D)` in the buffer's current dtype and device.
    """
    pe: torch.Tensor = module.pos_embed
    built: torch.dtype = module._pos_table_dtype
    if torch.compiler.is_compiling():  # no data-dependent test (or buffer swap) in a graph
        return pe
    if getattr(module, "_pos_table_meta", False):  # built on the meta device
        return _rebuilt_after_meta(module, pe, grid_size)
    with torch.inference_mode(False), torch.no_grad():
        exact = build_2d_sincos_pos_embed(
            pe.shape[-1], grid_size, device=pe.device, dtype=torch.float64
        ).unsqueeze(0)
        # the table cast from `built` to the current dtype, possibly through one other
        # floating dtype with no forward in between (`.half().double()`)
        via = (built, torch.float16, torch.bfloat16, torch.float32)
        try:
            cast = pe.is_floating_point() and any(
                torch.equal(pe, exact.to(built).to(d).to(pe.dtype)) for d in via
            )
        except RuntimeError:  # stacked buffers under torch.func.vmap: no value test, as is
            return pe
        if cast:
            pe = exact.to(pe.dtype)
            module.pos_embed = pe  # the registered (non-persistent) buffer, replaced
    module._pos_table_dtype = pe.dtype
    return pe


def _rebuilt_after_meta(module: Any, pe: torch.Tensor, grid_size: Any) -> torch.Tensor:
    """The table of a module built on the meta device, computed once it has left it:
    ``to_empty()`` gives the non-persistent buffer uninitialised memory, and
    ``load_state_dict`` does not restore it (it is not in the state dict)."""
    if pe.is_meta:
        return pe
    with torch.inference_mode(False), torch.no_grad():
        exact = build_2d_sincos_pos_embed(
            pe.shape[-1], grid_size, device=pe.device, dtype=torch.float64
        )
        pe = exact.unsqueeze(0).to(pe.dtype)
        module.pos_embed = pe
    module._pos_table_meta, module._pos_table_dtype = False, pe.dtype
    return pe
