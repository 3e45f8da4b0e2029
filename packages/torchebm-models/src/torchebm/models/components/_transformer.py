r"""Transformer blocks with adaptive layer norm (AdaLN-Zero) conditioning, as in DiT/SiT."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchebm.core import renamed_kwargs
from torchebm.core.errors import ShapeError, check_int, check_positive, check_probability
from torchebm.models.components._compat_089 import (
    accept_089_keys,
    accept_089_pickle,
    attention_kwargs,
    block_kwargs,
    feed_forward_kwargs,
    head_kwargs,
)
from torchebm.models.components._patch import unpatchify2d

__all__ = [
    "modulate",
    "FeedForward",
    "MultiheadSelfAttention",
    "AdaLNZeroBlock",
    "AdaLNZeroPatchHead",
]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r"""Adaptive affine modulation $x (1 + \text{scale}) + \text{shift}$.

    Args:
        x: Tokens ``(B, N, D)``.
        shift: ``(B, D)`` (broadcast over the ``N`` tokens) or ``(B, N, D)``.
        scale: Same shape as ``shift``.

    Returns:
        Tensor shaped like ``x``.

    Example:
        >>> modulate(torch.ones(2, 3, 4), torch.zeros(2, 4), torch.ones(2, 4)).unique()
        tensor([2.])
    """
    given = (shift, scale)
    if shift.ndim == x.ndim - 1:
        shift = shift.unsqueeze(1)
    if scale.ndim == x.ndim - 1:
        scale = scale.unsqueeze(1)
    for name, v, g in (("shift", shift, given[0]), ("scale", scale, given[1])):
        if not _broadcasts_to(v.shape, x.shape):
            raise ShapeError(
                f"modulate: {name} must have shape (B, D) or (B, N, D) for x of shape "
                f"{tuple(x.shape)}, got {tuple(g.shape)}"
            )
    return x * (1 + scale) + shift


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether ``shape`` broadcasts to ``target`` without enlarging it (shape arithmetic
    only: ``torch.broadcast_shapes`` costs ~20 us a call)."""
    n = len(target) - len(shape)
    return n >= 0 and all(a == 1 or a == target[i + n] for i, a in enumerate(shape))


def activation_factory(name: str, factory: Any, default: Callable[[], nn.Module]) -> Callable:
    """``factory`` (``default`` for ``None``) if it is a callable making a module, such as
    ``nn.SiLU``; an instance (``nn.SiLU()``, called later without input) or a non-callable is
    a ``TypeError`` naming ``name``."""
    if factory is None:
        return default
    if isinstance(factory, nn.Module) or not callable(factory):
        raise TypeError(
            f"{name} must be a callable that returns a new nn.Module (e.g. nn.SiLU, or "
            f"lambda: nn.GELU(approximate='tanh')), got {factory!r}"
        )
    return factory


def _xavier_linear(layer: nn.Linear) -> nn.Linear:
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def zero_init(*layers: nn.Linear) -> None:
    for layer in layers:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def cond_width(cond_dim: int | None, default: int) -> int:
    """The checked conditioning width ``cond_dim`` of an AdaLN-Zero module (``default`` when None)."""
    return default if cond_dim is None else check_int("cond_dim", cond_dim, minimum=1)


def plain_layer_norm(embed_dim: int, eps: float) -> nn.LayerNorm:
    """LayerNorm without affine parameters (AdaLN supplies the shift and scale)."""
    return nn.LayerNorm(embed_dim, elementwise_affine=False, eps=check_positive("eps", eps))


def adaln_modulation(cond_dim: int, embed_dim: int, n_chunks: int) -> nn.Sequential:
    """``SiLU -> Linear(cond_dim, n_chunks * embed_dim)``, the Linear zero-initialised."""
    linear = nn.Linear(cond_dim, n_chunks * embed_dim)
    zero_init(linear)
    return nn.Sequential(nn.SiLU(), linear)


def adaln_chunks(
    modulation: nn.Module, cond_dim: int, cond: torch.Tensor, n_chunks: int
) -> tuple[torch.Tensor, ...]:
    """Check ``cond`` `(B, cond_dim)` and split ``modulation(cond)`` into ``n_chunks``."""
    if cond.ndim != 2 or cond.shape[-1] != cond_dim:
        raise ShapeError(f"cond must have shape (B, {cond_dim}), got {tuple(cond.shape)}")
    return modulation(cond).chunk(n_chunks, dim=-1)


def check_tokens(x: torch.Tensor, embed_dim: int) -> None:
    """``x`` must be tokens `(B, N, embed_dim)` (else a `ShapeError`; LayerNorm's error named
    neither ``x`` nor the width)."""
    if x.ndim != 3 or x.shape[-1] != embed_dim:
        raise ShapeError(f"x must be tokens of shape (B, N, {embed_dim}), got {tuple(x.shape)}")


class FeedForward(nn.Module):
    r"""Token-wise MLP: ``Linear(D, rD) -> GELU(tanh) -> Dropout -> Linear(rD, D)``.

    Args:
        embed_dim: Token dimension ``D``.
        mlp_ratio: Hidden width ratio ``r`` (hidden width ``int(D * r)``).
        dropout: Dropout probability after the activation.
        act_layer: Factory of the activation module (default ``GELU(approximate="tanh")``).

    Example:
        >>> FeedForward(16)(torch.zeros(2, 5, 16)).shape
        torch.Size([2, 5, 16])
    """

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("fc1", feed_forward_kwargs)

    def __init__(
        self,
        embed_dim: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        act_layer: Callable[[], nn.Module] | None = None,
    ):
        super().__init__()
        embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        hidden = max(1, int(embed_dim * check_positive("mlp_ratio", mlp_ratio)))
        self.fc1 = _xavier_linear(nn.Linear(embed_dim, hidden))
        self.act = activation_factory(
            "act_layer", act_layer, partial(nn.GELU, approximate="tanh")
        )()
        self.drop = nn.Dropout(check_probability("dropout", dropout))
        self.fc2 = _xavier_linear(nn.Linear(hidden, embed_dim))
        accept_089_keys(self, {"net.0.": "fc1.", "net.3.": "fc2."})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D) -> (..., D)``.

        Args:
            x: Features `(..., D)`.
        """
        return self.fc2(self.drop(self.act(self.fc1(x))))


class MultiheadSelfAttention(nn.Module):
    r"""Multi-head self-attention with a fused ``qkv`` projection and SDPA.

    $$
    \mathrm{Attn}(X) = \mathrm{concat}_h\big(\mathrm{softmax}(Q_h K_h^\top / \sqrt{d_h}) V_h\big) W_o
    $$

    computed with `torch.nn.functional.scaled_dot_product_attention` (flash/memory
    efficient kernels where available); attention dropout only in training mode.

    Args:
        embed_dim: Token dimension ``D``.
        num_heads: Number of heads; must divide ``D``.
        dropout: Attention dropout probability.

    Raises:
        ValueError: ``embed_dim`` is not divisible by ``num_heads``.

    Example:
        >>> MultiheadSelfAttention(16, 4)(torch.zeros(2, 5, 16)).shape
        torch.Size([2, 5, 16])

    References:
        Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("proj", attention_kwargs)

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim must be divisible by num_heads, got embed_dim={embed_dim}, "
                f"num_heads={num_heads}"
            )
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = check_probability("dropout", dropout)
        self.qkv = _xavier_linear(nn.Linear(self.embed_dim, 3 * self.embed_dim))
        self.proj = _xavier_linear(nn.Linear(self.embed_dim, self.embed_dim))
        accept_089_keys(self, {"out_proj.": "proj."})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D) -> (B, N, D)``.

        Args:
            x: Tokens `(B, N, embed_dim)`.
        """
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ShapeError(f"x must have shape (B, N, {self.embed_dim}), got {tuple(x.shape)}")
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, d_h)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class AdaLNZeroBlock(nn.Module):
    r"""Transformer block conditioned by adaptive LayerNorm with zero-initialised gates.

    With $(\beta_1, \gamma_1, \alpha_1, \beta_2, \gamma_2, \alpha_2) =
    \mathrm{Linear}(\mathrm{SiLU}(c))$:

    $$
    \begin{aligned}
    x &\leftarrow x + \alpha_1 \odot \mathrm{Attn}(\mathrm{LN}(x)(1 + \gamma_1) + \beta_1) \\
    x &\leftarrow x + \alpha_2 \odot \mathrm{MLP}(\mathrm{LN}(x)(1 + \gamma_2) + \beta_2)
    \end{aligned}
    $$

    The modulation Linear is zero-initialised, so the block is the identity at init.
    LayerNorms have no affine parameters.

    Args:
        embed_dim: Token dimension ``D``.
        num_heads: Attention heads (ignored when ``attn`` is given).
        cond_dim: Conditioning dimension (default ``embed_dim``).
        mlp_ratio: Hidden ratio of the default [`FeedForward`][torchebm.models.FeedForward].
        attn: Replacement attention module ``(B, N, D) -> (B, N, D)``.
        mlp: Replacement MLP module ``(B, N, D) -> (B, N, D)``.
        eps: LayerNorm epsilon.

    Example:
        >>> blk = AdaLNZeroBlock(embed_dim=16, num_heads=4)
        >>> x = torch.randn(2, 5, 16)
        >>> torch.equal(blk(x, torch.randn(2, 16)), x)
        True

    References:
        Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT), ICCV 2023.
    """

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("adaLN_modulation", block_kwargs)

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int,
        cond_dim: int | None = None,
        mlp_ratio: float = 4.0,
        attn: nn.Module | None = None,
        mlp: nn.Module | None = None,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.cond_dim = cond_width(cond_dim, self.embed_dim)
        self.norm1 = plain_layer_norm(self.embed_dim, eps)
        self.attn = attn if attn is not None else MultiheadSelfAttention(self.embed_dim, num_heads)
        self.norm2 = plain_layer_norm(self.embed_dim, eps)
        self.mlp = mlp if mlp is not None else FeedForward(self.embed_dim, mlp_ratio)
        self.adaLN_modulation = adaln_modulation(self.cond_dim, self.embed_dim, 6)
        accept_089_keys(self, {"modulation.": "adaLN_modulation."})

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, D)`` and conditioning ``(B, cond_dim)`` -> tokens ``(B, N, D)``.

        Args:
            x: Tokens `(B, N, D)`.
            cond: Conditioning vectors `(B, cond_dim)`.
        """
        check_tokens(x, self.embed_dim)
        shift1, scale1, gate1, shift2, scale2, gate2 = adaln_chunks(
            self.adaLN_modulation, self.cond_dim, cond, 6
        )
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1))
        x = x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x


class AdaLNZeroPatchHead(nn.Module):
    r"""Output head: modulated LayerNorm, ``Linear(D, p*p*C)``, then [`unpatchify2d`][torchebm.models.unpatchify2d].

    Both the modulation and the projection are zero-initialised, so the head outputs exact
    zeros at init (the model starts as the zero field).

    Args:
        embed_dim: Token dimension ``D``.
        cond_dim: Conditioning dimension (default ``embed_dim``).
        patch_size: Patch side ``p``.
        out_channels: Output image channels ``C``.
        grid_size: Token grid ``(gh, gw)`` for rectangular images; ``None`` means square.
        eps: LayerNorm epsilon.

    Example:
        >>> head = AdaLNZeroPatchHead(embed_dim=16, patch_size=2, out_channels=3)
        >>> head(torch.randn(2, 16, 16), torch.randn(2, 16)).shape
        torch.Size([2, 3, 8, 8])

    References:
        Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT), ICCV 2023.
    """

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("adaLN_modulation", head_kwargs)

    def __init__(
        self,
        *,
        embed_dim: int,
        cond_dim: int | None = None,
        patch_size: int,
        out_channels: int,
        grid_size: tuple[int, int] | None = None,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.cond_dim = cond_width(cond_dim, self.embed_dim)
        self.patch_size = check_int("patch_size", patch_size, minimum=1)
        self.out_channels = check_int("out_channels", out_channels, minimum=1)
        self.grid_size: tuple[int, int] | None = (
            None if grid_size is None else (int(grid_size[0]), int(grid_size[1]))
        )
        self.norm_final = plain_layer_norm(self.embed_dim, eps)
        # the modulation first: torchebm 0.8.9's parameter order, which its optimizer
        # checkpoints index by position (the DiT reference registers linear first)
        self.adaLN_modulation = adaln_modulation(self.cond_dim, self.embed_dim, 2)
        self.linear = nn.Linear(self.embed_dim, self.patch_size**2 * self.out_channels)
        zero_init(self.linear)
        accept_089_keys(self, {"modulation.": "adaLN_modulation.", "proj.": "linear."})

    @renamed_kwargs(tokens="x")
    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, D)`` and ``(B, cond_dim)`` -> images ``(B, C, gh p, gw p)``.

        The token grid is ``grid_size`` when given, else square (``gh = gw = sqrt(N)``).
        ``tokens=`` is the torchebm 0.8.9 spelling of ``x`` (one ``DeprecationWarning``).

        Args:
            x: Tokens `(B, N, D)`.
            cond: Conditioning vectors `(B, cond_dim)`.
        """
        check_tokens(x, self.embed_dim)
        shift, scale = adaln_chunks(self.adaLN_modulation, self.cond_dim, cond, 2)
        tokens = self.linear(modulate(self.norm_final(x), shift, scale))
        return unpatchify2d(
            tokens, self.patch_size, out_channels=self.out_channels, grid_size=self.grid_size
        )
