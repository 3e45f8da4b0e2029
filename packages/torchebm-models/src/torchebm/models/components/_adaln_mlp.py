r"""AdaLN-Zero blocks for token-free (vector) inputs: `AdaLNZeroMLPBlock`, `AdaLNZeroLinearHead`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from torchebm.core.errors import check_int
from torchebm.models.components._compat_089 import (
    accept_089_keys,
    accept_089_pickle,
    head_kwargs,
    mlp_block_kwargs,
)
from torchebm.models.components._transformer import (
    FeedForward,
    adaln_chunks,
    adaln_modulation,
    cond_width,
    modulate,
    plain_layer_norm,
    zero_init,
)

__all__ = ["AdaLNZeroMLPBlock", "AdaLNZeroLinearHead"]


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

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("adaLN_modulation", mlp_block_kwargs)

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
        self.cond_dim = cond_width(cond_dim, self.embed_dim)
        self.norm = plain_layer_norm(self.embed_dim, eps)
        self.mlp = FeedForward(self.embed_dim, mlp_ratio, act_layer=act_layer)
        self.adaLN_modulation = adaln_modulation(self.cond_dim, self.embed_dim, 3)
        accept_089_keys(self, {"modulation.": "adaLN_modulation."})

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x`` `(B, D)` and ``cond`` `(B, cond_dim)` -> `(B, D)`.

        Args:
            x: Hidden features `(B, D)`.
            cond: Conditioning vectors `(B, cond_dim)`, giving shift, scale and gate.
        """
        shift, scale, gate = adaln_chunks(self.adaLN_modulation, self.cond_dim, cond, 3)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


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

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("adaLN_modulation", head_kwargs)

    def __init__(
        self, *, embed_dim: int, cond_dim: int | None = None, out_dim: int, eps: float = 1e-6
    ):
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.cond_dim = cond_width(cond_dim, self.embed_dim)
        self.out_dim = check_int("out_dim", out_dim, minimum=1)
        self.norm = plain_layer_norm(self.embed_dim, eps)
        self.adaLN_modulation = adaln_modulation(self.cond_dim, self.embed_dim, 2)
        self.linear = nn.Linear(self.embed_dim, self.out_dim)
        zero_init(self.linear)
        accept_089_keys(self, {"modulation.": "adaLN_modulation.", "proj.": "linear."})

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x`` `(B, D)` and ``cond`` `(B, cond_dim)` -> `(B, out_dim)`.

        Args:
            x: Hidden features `(B, D)`.
            cond: Conditioning vectors `(B, cond_dim)`, giving shift and scale.
        """
        shift, scale = adaln_chunks(self.adaLN_modulation, self.cond_dim, cond, 2)
        return self.linear(modulate(self.norm(x), shift, scale))
