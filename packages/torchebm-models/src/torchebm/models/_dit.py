r"""`DiT`: the Diffusion Transformer backbone with the ``forward(x, t, y, *, cond)`` contract,
and the twelve paper presets ``dit_s_2`` ... ``dit_xl_8``."""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from torchebm.core.errors import ConfigurationError, ShapeError, check_int, check_positive
from torchebm.models._conditioning import build_embedders, check_input, condition_vector
from torchebm.models.components import (
    AdaLNZeroBlock,
    AdaLNZeroPatchHead,
    ConvPatchEmbed2d,
    build_2d_sincos_pos_embed,
)
from torchebm.models.components._compat_089 import (
    accept_089_keys,
    accept_089_pickle,
    dit_kwargs,
)
from torchebm.models.components._embeddings import add_position_table
from torchebm.models.components._transformer import _xavier_linear, cond_width

__all__ = [
    "DiT",
    "dit_s_2",
    "dit_s_4",
    "dit_s_8",
    "dit_b_2",
    "dit_b_4",
    "dit_b_8",
    "dit_l_2",
    "dit_l_4",
    "dit_l_8",
    "dit_xl_2",
    "dit_xl_4",
    "dit_xl_8",
]

#: Widths, depths and heads of the DiT paper's model sizes (Peebles & Xie 2023, Table 1).
DIT_SIZES = {
    "S": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "B": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "L": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
    "XL": {"embed_dim": 1152, "depth": 28, "num_heads": 16},
}
_POS_EMBED = ("sincos", "learnable", None)


def _size(input_size: Any, p: int) -> tuple[int, int]:
    size = (input_size, input_size) if isinstance(input_size, numbers.Integral) else input_size
    if not isinstance(size, (tuple, list)) or len(size) != 2:  # None or 2.5 failed in tuple()
        raise ConfigurationError(f"input_size must be an int or (H, W), got {input_size!r}")
    h, w = (check_int("input_size", s, minimum=1) for s in size)
    if h % p or w % p:
        raise ConfigurationError(f"input_size {(h, w)} must be divisible by patch_size={p}")
    return h, w


class DiT(nn.Module):
    r"""Diffusion Transformer: patchify, AdaLN-Zero transformer blocks, patch head.

    Images `(B, C, H, W)` become $N = (H/p)(W/p)$ tokens (a stride-$p$ convolution) plus a
    position embedding; each block is modulated by the conditioning vector
    $c = e_t(t) + e_y(y) + \text{cond}$ (whichever are given); the head maps back to
    `(B, out_channels, H, W)`. The last modulation layers and the head are zero-initialised,
    so a fresh model is the zero field.

    Checkpoints saved by torchebm 0.8.9's `DiT` load with a strict ``load_state_dict`` (its
    key names are renamed on load).

    Args:
        input_size: Image side, or `(H, W)`.
        in_channels: Image channels.
        patch_size: Patch side $p$ (divides $H$ and $W$).
        out_channels: Output channels (default ``in_channels``).
        embed_dim: Token width.
        depth: Number of transformer blocks.
        num_heads: Attention heads (divides ``embed_dim``).
        mlp_ratio: MLP width as a multiple of ``embed_dim``.
        cond_dim: Conditioning width (default ``embed_dim``).
        num_classes: Build a label embedder with a null class (id ``num_classes``).
        class_dropout_prob: Label dropout while training (classifier-free guidance).
        t_embedder: Custom time embedder ``t -> (B, cond_dim)`` (default sinusoidal MLP).
        y_embedder: Custom label embedder (instead of ``num_classes``).
        head_dim: Width of optional head blocks (default ``embed_dim``, no projection).
        head_depth: Number of extra blocks at width ``head_dim`` before the head.
        head_num_heads: Heads of those blocks (default ``num_heads``).
        pos_embed: ``"sincos"`` (fixed), ``"learnable"`` or ``None``.

    Example:
        >>> net = DiT(input_size=8, in_channels=3, patch_size=2, embed_dim=32, depth=2,
        ...           num_heads=4, num_classes=10)
        >>> net(torch.randn(2, 3, 8, 8), torch.rand(2), torch.tensor([1, 2])).shape
        torch.Size([2, 3, 8, 8])

    References:
        Peebles & Xie, "Scalable Diffusion Models with Transformers", ICCV 2023.
    """

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("x_embedder", dit_kwargs)
    #: Dtype the sin-cos table was built in (``None``: no fixed table, or a 0.8.9 pickle).
    _pos_table_dtype: torch.dtype | None = None
    _pos_table_meta = False  # built on the meta device: computed after it leaves it

    pos_embed: torch.Tensor | None

    def __init__(
        self,
        *,
        input_size: int | tuple[int, int],
        in_channels: int,
        patch_size: int = 2,
        out_channels: int | None = None,
        embed_dim: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        cond_dim: int | None = None,
        num_classes: int | None = None,
        class_dropout_prob: float = 0.0,
        t_embedder: nn.Module | None = None,
        y_embedder: nn.Module | None = None,
        head_dim: int | None = None,
        head_depth: int = 0,
        head_num_heads: int | None = None,
        pos_embed: str | None = "sincos",
    ):
        super().__init__()
        p = self.patch_size = check_int("patch_size", patch_size, minimum=1)
        self.input_size = _size(input_size, p)
        self.grid_size = (self.input_size[0] // p, self.input_size[1] // p)
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.out_channels = (
            self.in_channels
            if out_channels is None
            else check_int("out_channels", out_channels, minimum=1)
        )
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.depth = check_int("depth", depth, minimum=0)
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        self.cond_dim = cond_width(cond_dim, self.embed_dim)
        self.head_dim = (
            self.embed_dim if head_dim is None else check_int("head_dim", head_dim, minimum=1)
        )
        self.head_depth = check_int("head_depth", head_depth, minimum=0)
        check_positive("mlp_ratio", mlp_ratio)
        if pos_embed not in _POS_EMBED:
            raise ConfigurationError(f"pos_embed must be one of {_POS_EMBED}, got {pos_embed!r}")
        self.pos_embed_type = pos_embed
        self.num_classes = num_classes
        self.t_embedder, self.y_embedder = build_embedders(
            self.cond_dim, num_classes, class_dropout_prob, t_embedder, y_embedder
        )
        self.x_embedder = ConvPatchEmbed2d(
            in_channels=self.in_channels, embed_dim=self.embed_dim, patch_size=p
        )
        self._build_pos_embed(pos_embed)
        self.blocks = nn.ModuleList(
            self._block(self.embed_dim, self.num_heads, mlp_ratio) for _ in range(self.depth)
        )
        self.head_proj = (  # Xavier with a zero bias, as every linear of the blocks (0.8.9)
            _xavier_linear(nn.Linear(self.embed_dim, self.head_dim))
            if self.head_dim != self.embed_dim
            else None
        )
        heads = (
            self.num_heads
            if head_num_heads is None
            else check_int("head_num_heads", head_num_heads, minimum=1)
        )
        if self.head_depth and self.head_dim % heads:
            raise ValueError(
                "head_dim must be divisible by head_num_heads (default num_heads), got "
                f"head_dim={self.head_dim}, head_num_heads={heads}"
            )
        self.head_blocks = nn.ModuleList(
            self._block(self.head_dim, heads, mlp_ratio) for _ in range(self.head_depth)
        )
        self.final_layer = AdaLNZeroPatchHead(
            embed_dim=self.head_dim,
            cond_dim=self.cond_dim,
            patch_size=p,
            out_channels=self.out_channels,
            grid_size=self.grid_size,
        )
        accept_089_keys(self, {"patch_embed.": "x_embedder.", "head.": "final_layer."})

    def _block(self, width: int, heads: int, mlp_ratio: float) -> AdaLNZeroBlock:
        return AdaLNZeroBlock(
            embed_dim=width, num_heads=heads, cond_dim=self.cond_dim, mlp_ratio=mlp_ratio
        )

    def _build_pos_embed(self, kind: str | None) -> None:
        n = self.grid_size[0] * self.grid_size[1]
        if kind == "sincos":
            # in the dtype of the parameters nn.Linear makes (float64 under a float64 default)
            pe_dtype = torch.get_default_dtype()
            pe = build_2d_sincos_pos_embed(self.embed_dim, self.grid_size, dtype=pe_dtype)
            self.register_buffer("pos_embed", pe.unsqueeze(0), persistent=False)
            self._pos_table_dtype, self._pos_table_meta = pe_dtype, pe.is_meta
        elif kind == "learnable":
            self.pos_embed = nn.Parameter(torch.zeros(1, n, self.embed_dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.pos_embed = None

    @property
    def null_label_id(self) -> int | None:
        """Label id meaning "unconditional" (for classifier-free guidance), or ``None``."""
        return getattr(self.y_embedder, "null_label_id", None)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        *,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Field at ``x`` `(B, in_channels, H, W)`; returns `(B, out_channels, H, W)`.

        Args:
            x: Images.
            t: Times `(B,)` (or one time, a number or 0-d), embedded by ``t_embedder``.
            y: Labels `(B,)` (models with a label embedder); dropped to the null class with
                ``class_dropout_prob`` in training mode. Leaving it out adds no label
                embedding: that is not the unconditional field label dropout trains (pass
                ``y`` full of the null label, ``num_classes``, for that one).
            cond: Precomputed conditioning `(B, cond_dim)`, added to the others.

        Raises:
            TypeError: ``x`` not a tensor, or not of the parameters' dtype.
            ShapeError: ``x`` not of shape ``(B, in_channels, *input_size)``.
        """
        dtype = self.x_embedder.proj.weight.dtype
        check_input(type(self).__name__, x, (self.in_channels, None, None), dtype)
        c = condition_vector(self, t, y, cond, batch=x.shape[0])
        if tuple(x.shape[-2:]) != self.input_size:
            raise ShapeError(
                f"x has spatial size {tuple(x.shape[-2:])}, expected input_size={self.input_size}"
            )
        h = add_position_table(self, self.x_embedder(x), self.grid_size)
        for block in self.blocks:
            h = block(h, c)
        if self.head_proj is not None:
            h = self.head_proj(h)
        for block in self.head_blocks:
            h = block(h, c)
        return self.final_layer(h, c)


def _preset(size: str, patch: int, kwargs: dict[str, Any]) -> DiT:
    return DiT(**{**DIT_SIZES[size], "patch_size": patch, **kwargs})


def dit_s_2(**kwargs: Any) -> DiT:
    """DiT-S/2: width 384, depth 12, 6 heads, patch 2.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=384``, ``depth=12``, ``num_heads=6`` or ``patch_size=2``
            given here replaces the S/2 value.
    """
    return _preset("S", 2, kwargs)


def dit_s_4(**kwargs: Any) -> DiT:
    """DiT-S/4: width 384, depth 12, 6 heads, patch 4.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=384``, ``depth=12``, ``num_heads=6`` or ``patch_size=4``
            given here replaces the S/4 value.
    """
    return _preset("S", 4, kwargs)


def dit_s_8(**kwargs: Any) -> DiT:
    """DiT-S/8: width 384, depth 12, 6 heads, patch 8.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=384``, ``depth=12``, ``num_heads=6`` or ``patch_size=8``
            given here replaces the S/8 value.
    """
    return _preset("S", 8, kwargs)


def dit_b_2(**kwargs: Any) -> DiT:
    """DiT-B/2: width 768, depth 12, 12 heads, patch 2.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=768``, ``depth=12``, ``num_heads=12`` or ``patch_size=2``
            given here replaces the B/2 value.
    """
    return _preset("B", 2, kwargs)


def dit_b_4(**kwargs: Any) -> DiT:
    """DiT-B/4: width 768, depth 12, 12 heads, patch 4.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=768``, ``depth=12``, ``num_heads=12`` or ``patch_size=4``
            given here replaces the B/4 value.
    """
    return _preset("B", 4, kwargs)


def dit_b_8(**kwargs: Any) -> DiT:
    """DiT-B/8: width 768, depth 12, 12 heads, patch 8.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=768``, ``depth=12``, ``num_heads=12`` or ``patch_size=8``
            given here replaces the B/8 value.
    """
    return _preset("B", 8, kwargs)


def dit_l_2(**kwargs: Any) -> DiT:
    """DiT-L/2: width 1024, depth 24, 16 heads, patch 2.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=1024``, ``depth=24``, ``num_heads=16`` or ``patch_size=2``
            given here replaces the L/2 value.
    """
    return _preset("L", 2, kwargs)


def dit_l_4(**kwargs: Any) -> DiT:
    """DiT-L/4: width 1024, depth 24, 16 heads, patch 4.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=1024``, ``depth=24``, ``num_heads=16`` or ``patch_size=4``
            given here replaces the L/4 value.
    """
    return _preset("L", 4, kwargs)


def dit_l_8(**kwargs: Any) -> DiT:
    """DiT-L/8: width 1024, depth 24, 16 heads, patch 8.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=1024``, ``depth=24``, ``num_heads=16`` or ``patch_size=8``
            given here replaces the L/8 value.
    """
    return _preset("L", 8, kwargs)


def dit_xl_2(**kwargs: Any) -> DiT:
    """DiT-XL/2: width 1152, depth 28, 16 heads, patch 2.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=1152``, ``depth=28``, ``num_heads=16`` or ``patch_size=2``
            given here replaces the XL/2 value.
    """
    return _preset("XL", 2, kwargs)


def dit_xl_4(**kwargs: Any) -> DiT:
    """DiT-XL/4: width 1152, depth 28, 16 heads, patch 4.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=1152``, ``depth=28``, ``num_heads=16`` or ``patch_size=4``
            given here replaces the XL/4 value.
    """
    return _preset("XL", 4, kwargs)


def dit_xl_8(**kwargs: Any) -> DiT:
    """DiT-XL/8: width 1152, depth 28, 16 heads, patch 8.

    Args:
        **kwargs: Other [`DiT`][torchebm.models.DiT] arguments (``input_size``, ``in_channels``,
            ...); one of ``embed_dim=1152``, ``depth=28``, ``num_heads=16`` or ``patch_size=8``
            given here replaces the XL/8 value.
    """
    return _preset("XL", 8, kwargs)
