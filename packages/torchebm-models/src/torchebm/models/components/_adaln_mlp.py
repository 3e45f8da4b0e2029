r"""AdaLN-Zero blocks for token-free (vector) inputs: `AdaLNZeroMLPBlock`, `AdaLNZeroLinearHead`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from torchebm.core.errors import ShapeError, check_int, check_positive
from torchebm.models.components._compat_089 import accept_089_keys
from torchebm.models.components._transformer import FeedForward

__all__ = ["AdaLNZeroMLPBlock", "AdaLNZeroLinearHead"]


def _cond_dim(cond_dim: int | None, embed_dim: int) -> int:
    return embed_dim if cond_dim is None else check_int("cond_dim", cond_dim, minimum=1)


def _check_cond(cond: torch.Tensor, cond_dim: int) -> None:
    if cond.ndim != 2 or cond.shape[-1] != cond_dim:
        raise ShapeError(f"cond must have shape (B, {cond_dim}), got {tuple(cond.shape)}")


class AdaLNZeroMLPBlock(nn.Module):
    r"""Residual MLP block with AdaLN-Zero conditioning on vectors `(B, D)`.

    $$ h \leftarrow h + g(c) \odot \mathrm{MLP}\big(\mathrm{LN}(h)\,(1 + s(c)) + b(c)\big), $$

    with $(b, s, g) = \mathrm{Linear}(\mathrm{SiLU}(c))$ zero-initialised, so the block is
    the identity at init.

    Args:
        embed_dim: Width $D$.
        cond_dim: Conditioning width (default ``embed_dim``).
        mlp_ratio: Hidden width of the MLP as a multiple of $D$.
        act_layer: Activation factory (default ``GELU(approximate="tanh")``).
        eps: LayerNorm epsilon.

    Example:
        >>> blk = AdaLNZeroMLPBlock(embed_dim=32, cond_dim=16)
        >>> blk(torch.randn(4, 32), torch.randn(4, 16)).shape
        torch.Size([4, 32])

    References:
        Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT), ICCV 2023.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        cond_dim: int | None = None,
        mlp_ratio: float = 4.0,
        act_layer: Callable[[], nn.Module] | None = None,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.cond_dim = _cond_dim(cond_dim, self.embed_dim)
        self.norm = nn.LayerNorm(
            self.embed_dim, elementwise_affine=False, eps=check_positive("eps", eps)
        )
        self.mlp = FeedForward(self.embed_dim, mlp_ratio, act_layer=act_layer)
        modulation = nn.Linear(self.cond_dim, 3 * self.embed_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), modulation)
        nn.init.zeros_(modulation.weight)
        nn.init.zeros_(modulation.bias)
        accept_089_keys(self, {"modulation.": "adaLN_modulation."})

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x`` `(B, D)` and ``cond`` `(B, cond_dim)` -> `(B, D)`."""
        _check_cond(cond, self.cond_dim)
        shift, scale, gate = self.adaLN_modulation(cond).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class AdaLNZeroLinearHead(nn.Module):
    r"""Output head for vectors: modulated LayerNorm then a zero-initialised `Linear(D, out_dim)`.

    Args:
        embed_dim: Input width $D$.
        cond_dim: Conditioning width (default ``embed_dim``).
        out_dim: Output width.
        eps: LayerNorm epsilon.

    Example:
        >>> head = AdaLNZeroLinearHead(embed_dim=32, out_dim=2)
        >>> head(torch.randn(4, 32), torch.randn(4, 32)).abs().max().item()
        0.0

    References:
        Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT), ICCV 2023.
    """

    def __init__(
        self, *, embed_dim: int, cond_dim: int | None = None, out_dim: int, eps: float = 1e-6
    ):
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.cond_dim = _cond_dim(cond_dim, self.embed_dim)
        self.out_dim = check_int("out_dim", out_dim, minimum=1)
        self.norm = nn.LayerNorm(
            self.embed_dim, elementwise_affine=False, eps=check_positive("eps", eps)
        )
        modulation = nn.Linear(self.cond_dim, 2 * self.embed_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), modulation)
        self.linear = nn.Linear(self.embed_dim, self.out_dim)
        for layer in (self.linear, modulation):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        accept_089_keys(self, {"modulation.": "adaLN_modulation.", "proj.": "linear."})

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x`` `(B, D)` and ``cond`` `(B, cond_dim)` -> `(B, out_dim)`."""
        _check_cond(cond, self.cond_dim)
        shift, scale = self.adaLN_modulation(cond).chunk(2, dim=-1)
        return self.linear(self.norm(x) * (1 + scale) + shift)
