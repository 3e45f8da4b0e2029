r"""``ConditionalTransformer2D``: a DiT/SiT-style patch transformer for image-shaped fields."""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from torchebm.core import TorchEBMModule
from torchebm.core._module import check_bool
from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    check_int,
    check_positive,
    check_probability,
)
from torchebm.models._conditioning import check_input_dtype, number_time
from torchebm.models.components import (
    AdaLNZeroBlock,
    AdaLNZeroPatchHead,
    ConvPatchEmbed2d,
    LabelEmbedder,
    MLPTimestepEmbedder,
    build_2d_sincos_pos_embed,
)
from torchebm.models.components._compat_089 import (
    accept_089_keys,
    accept_089_pickle,
    transformer_2d_kwargs,
)
from torchebm.models.components._embeddings import add_position_table
from torchebm.models.components._transformer import cond_width

__all__ = ["ConditionalTransformer2D"]


def _check_config(net: Any, num_classes: Any, class_dropout_prob: float) -> None:
    """The constructor's checks across arguments (sizes already checked one by one)."""
    check_probability("class_dropout_prob", class_dropout_prob)
    if class_dropout_prob > 0 and num_classes is None:  # as DiT: not silently unused
        raise ConfigurationError(
            f"class_dropout_prob={class_dropout_prob} needs num_classes (got None)"
        )
    if net.input_size % net.patch_size:
        raise ValueError(
            f"input_size must be divisible by patch_size, got input_size={net.input_size}, "
            f"patch_size={net.patch_size}"
        )
    if net.embed_dim % net.num_heads:
        raise ValueError(
            f"embed_dim must be divisible by num_heads, got embed_dim={net.embed_dim}, "
            f"num_heads={net.num_heads}"
        )


class ConditionalTransformer2D(TorchEBMModule):
    r"""Conditional 2-D patch transformer (DiT backbone) mapping images to image-shaped fields.

    ``x (B, C_in, S, S)`` -> conv patch embedding ``(B, N, D)`` (``N = (S/p)^2``) -> plus a
    fixed 2-D sin-cos position embedding (a non-persistent buffer ``(1, N, D)``) -> ``depth``
    [`AdaLNZeroBlock`][torchebm.models.AdaLNZeroBlock] s -> [`AdaLNZeroPatchHead`][torchebm.models.AdaLNZeroPatchHead] -> ``(B, C_out, S, S)``.
    The head is zero-initialised, so the output is exactly zero at init.

    Conditioning ``c (B, cond_dim)`` drives every block through AdaLN. It is built from:

    * a conditioning vector ``(B, cond_dim)`` (used as is), or
    * flow/diffusion **times**: a Python number, a 0-d tensor, ``(B,)`` or ``(B, 1)``
      (what [`FlowSampler`][torchebm.samplers.FlowSampler] and EqM pass), embedded by a
      [`MLPTimestepEmbedder`][torchebm.models.MLPTimestepEmbedder] (``time_embedding=True``, the default), and/or
    * integer class labels ``y`` ``(B,)`` embedded by a [`LabelEmbedder`][torchebm.models.LabelEmbedder]
      (``num_classes`` given); the label embedding is added to the time/vector conditioning.

    The conditioning is passed positionally (``model(x, t)``), as ``cond=`` or as ``t=``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        input_size: Image side ``S`` (square images).
        patch_size: Patch side ``p``; must divide ``input_size``.
        embed_dim: Token dimension ``D`` (a multiple of 4 with the sin-cos embedding).
        depth: Number of transformer blocks.
        num_heads: Attention heads; must divide ``embed_dim``.
        cond_dim: Conditioning dimension (default ``embed_dim``).
        mlp_ratio: Hidden ratio of the blocks' MLPs.
        use_sincos_pos_embed: Fixed sin-cos position embedding (``True``) or none (``False``,
            as in torchebm 0.8.9; `DiT` with ``pos_embed="learnable"`` has a learned one).
        time_embedding: Build the timestep embedder so raw times are accepted.
        frequency_embedding_size: Sinusoidal features of the timestep embedder.
        num_classes: Number of classes for label conditioning (``None``: no labels).
        class_dropout_prob: Label dropout for classifier-free guidance training; when > 0 the
            null label id is ``num_classes`` (needs ``num_classes``).
        device: Device of the parameters.
        dtype: Dtype of the parameters (default: ``torch.get_default_dtype()``).

    Raises:
        ValueError: ``input_size`` not divisible by ``patch_size``, ``embed_dim`` not divisible
            by ``num_heads`` (or by 4 with the sin-cos embedding), other invalid sizes.
        ConfigurationError: ``class_dropout_prob > 0`` without ``num_classes``.

    Example:
        >>> net = ConditionalTransformer2D(in_channels=1, out_channels=1, input_size=8,
        ...                                patch_size=2, embed_dim=32, depth=2, num_heads=4)
        >>> x = torch.randn(3, 1, 8, 8)
        >>> net(x, torch.rand(3)).shape
        torch.Size([3, 1, 8, 8])

    References:
        Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT), ICCV 2023.
        Ma et al., "SiT: Exploring Flow and Diffusion-based Generative Models with Scalable
        Interpolant Transformers", ECCV 2024.
    """

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("x_embedder", transformer_2d_kwargs)
    #: Dtype the sin-cos table was built in (``None``: no table, or a 0.8.9 pickle).
    _pos_table_dtype: torch.dtype | None = None
    _pos_table_meta = False  # built on the meta device: computed after it leaves it

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        input_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        cond_dim: int | None = None,
        mlp_ratio: float = 4.0,
        use_sincos_pos_embed: bool = True,
        time_embedding: bool = True,
        frequency_embedding_size: int = 256,
        num_classes: int | None = None,
        class_dropout_prob: float = 0.0,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(device=device, dtype=dtype)
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.out_channels = check_int("out_channels", out_channels, minimum=1)
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.patch_size = check_int("patch_size", patch_size, minimum=1)
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.depth = check_int("depth", depth, minimum=0)
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        self.cond_dim = cond_width(cond_dim, self.embed_dim)
        check_positive("mlp_ratio", mlp_ratio)
        _check_config(self, num_classes, class_dropout_prob)
        self.grid_size = self.input_size // self.patch_size
        self.num_patches = self.grid_size**2
        self.use_sincos_pos_embed = check_bool("use_sincos_pos_embed", use_sincos_pos_embed)

        # the embedders in torchebm 0.8.9's parameter order (time, labels, patches): its
        # optimizer checkpoints index the parameters by position
        self.t_embedder = (
            MLPTimestepEmbedder(self.cond_dim, frequency_embedding_size)
            if check_bool("time_embedding", time_embedding)
            else None
        )
        self.num_classes = (
            None if num_classes is None else check_int("num_classes", num_classes, minimum=1)
        )
        self.y_embedder = (
            LabelEmbedder(self.num_classes, self.cond_dim, class_dropout_prob)
            if self.num_classes is not None
            else None
        )
        self.x_embedder = ConvPatchEmbed2d(
            in_channels=self.in_channels, embed_dim=self.embed_dim, patch_size=self.patch_size
        )
        if self.use_sincos_pos_embed:
            pe_dtype = self._torchebm_probe.dtype  # the parameters' (not rounded to float32)
            pe = build_2d_sincos_pos_embed(self.embed_dim, self.grid_size, dtype=pe_dtype)
            self.register_buffer("pos_embed", pe.unsqueeze(0), persistent=False)
            self._pos_table_dtype, self._pos_table_meta = pe_dtype, pe.is_meta
        else:  # none, as in 0.8.9 (its checkpoints and optimizer states have no entry for one)
            self.pos_embed = None
        self.blocks = nn.ModuleList(
            AdaLNZeroBlock(
                embed_dim=self.embed_dim,
                num_heads=self.num_heads,
                cond_dim=self.cond_dim,
                mlp_ratio=mlp_ratio,
            )
            for _ in range(self.depth)
        )
        self.final_layer = AdaLNZeroPatchHead(
            embed_dim=self.embed_dim,
            cond_dim=self.cond_dim,
            patch_size=self.patch_size,
            out_channels=self.out_channels,
        )
        # checkpoints of torchebm 0.8.9's ConditionalTransformer2D (DiT key names)
        accept_089_keys(self, {"patch_embed.": "x_embedder.", "head.": "final_layer."})
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)
            table = self.pos_embed
            self._pos_table_meta = (
                self._pos_table_dtype is not None and table is not None and table.is_meta
            )

    @property
    def null_label_id(self) -> int | None:
        """Label id that means "unconditional" (for `LabelClassifierFreeGuidance`)."""
        return None if self.y_embedder is None else self.y_embedder.null_label_id

    # ------------------------------------------------------------------ conditioning
    def _embed_condition(self, c: Any, batch: int) -> torch.Tensor:
        ref = self.x_embedder.proj.weight
        if isinstance(c, numbers.Real) and not isinstance(c, bool):
            return self._embed_time(number_time(c, batch, ref))
        if not isinstance(c, torch.Tensor):
            raise TypeError(
                f"the conditioning (cond/t) must be a number or a tensor, got {type(c).__name__}"
            )
        c = c.to(ref.device)
        if c.ndim == 0:
            return self._embed_time(c.expand(batch))
        if c.ndim == 1 and c.shape[0] in (batch, 1):
            return self._embed_time(c.expand(batch))
        if c.ndim == 2 and c.shape[0] in (batch, 1):
            if c.shape[1] == self.cond_dim:  # first: with cond_dim 1, (B, 1) is the vector
                return c.to(ref.dtype).expand(batch, -1)
            if c.shape[1] == 1:
                return self._embed_time(c.reshape(-1).expand(batch))
        raise ShapeError(
            f"conditioning must be times (a number, 0-d, ({batch},) or ({batch}, 1)) or a "
            f"vector ({batch}, {self.cond_dim}), got shape {tuple(c.shape)}"
        )

    def _embed_time(self, t: torch.Tensor) -> torch.Tensor:
        if self.t_embedder is None:
            raise ValueError(
                "raw times need the timestep embedder: construct ConditionalTransformer2D with "
                f"time_embedding=True, or pass a (B, {self.cond_dim}) conditioning vector"
            )
        return self.t_embedder(t)

    def forward(
        self,
        x: torch.Tensor,
        cond: Any = None,
        *,
        t: Any = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Evaluate the field.

        Args:
            x: Images ``(B, in_channels, input_size, input_size)``.
            cond: Times (number, 0-d, ``(B,)``, ``(B, 1)``) or a ``(B, cond_dim)`` vector
                (with ``cond_dim=1`` a ``(B, 1)`` tensor is the vector, as in torchebm 0.8.9:
                pass times as ``(B,)``).
            t: Keyword alias of ``cond`` (give one of them).
            y: Integer class labels ``(B,)`` (models built with ``num_classes``); in
                training mode labels are dropped to the null id with ``class_dropout_prob``.

        Returns:
            Tensor ``(B, out_channels, input_size, input_size)``.

        Raises:
            ValueError: no conditioning at all, both ``cond`` and ``t``, labels without
                ``num_classes``, or misaligned shapes.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ShapeError(
                f"x must have shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        check_input_dtype(type(self).__name__, x, self.x_embedder.proj.weight.dtype)
        if cond is not None and t is not None:
            raise ValueError("give the conditioning once: positionally / as cond=, or as t=")
        c_in = cond if cond is not None else t
        if c_in is None and y is None:
            raise ValueError(
                "ConditionalTransformer2D needs conditioning: times or a (B, cond_dim) vector "
                "(positionally, cond= or t=) and/or class labels y="
            )
        batch = x.shape[0]
        c = None if c_in is None else self._embed_condition(c_in, batch)
        if y is not None:
            if self.y_embedder is None:
                raise ValueError(
                    "labels y were given but the model has no label embedder; construct it "
                    "with num_classes=..."
                )
            if not isinstance(y, torch.Tensor) or y.reshape(-1).shape[0] != batch:
                shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise ShapeError(f"y must be an integer tensor of shape ({batch},), got {shape}")
            y_emb = self.y_embedder(y, training=self.training)
            c = y_emb if c is None else c + y_emb
        h = add_position_table(self, self.x_embedder(x), self.grid_size)
        for block in self.blocks:
            h = block(h, c)
        return self.final_layer(h, c)
