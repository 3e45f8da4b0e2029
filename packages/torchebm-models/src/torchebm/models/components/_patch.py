r"""Patch tokenisation of images: ``patchify2d``/``unpatchify2d`` and a strided-conv embedding."""

from __future__ import annotations

import math

import torch
from torch import nn

from torchebm.core.errors import ShapeError, check_int, check_tensor
from torchebm.models.components._compat_089 import accept_089_pickle, patch_embed_kwargs

__all__ = ["patchify2d", "unpatchify2d", "ConvPatchEmbed2d"]


def patchify2d(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    r"""Cut images into non-overlapping ``p x p`` patches, flattened to tokens.

    Tokens are ordered row-major over the patch grid (``n = i * (W/p) + j``); each token's
    channels are ordered ``(row within patch, column within patch, channel)``, the layout
    [`unpatchify2d`][torchebm.models.unpatchify2d] and [`ConvPatchEmbed2d`][torchebm.models.ConvPatchEmbed2d] use.

    Args:
        x: Images ``(B, C, H, W)`` with ``H`` and ``W`` divisible by ``patch_size``.
        patch_size: Patch side ``p``.

    Returns:
        Tokens ``(B, (H/p)(W/p), p*p*C)``.

    Raises:
        ValueError: ``x`` is not 4-D or ``H``/``W`` is not divisible by ``p``.

    Example:
        >>> patchify2d(torch.zeros(2, 3, 8, 8), 4).shape
        torch.Size([2, 4, 48])
    """
    p = check_int("patch_size", patch_size, minimum=1)
    check_tensor("x", x, ndim=4)
    b, c, h, w = x.shape
    if h % p or w % p:
        raise ShapeError(f"image height and width must be divisible by patch_size={p}, got {h}x{w}")
    x = x.reshape(b, c, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, q, C)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify2d(
    tokens: torch.Tensor,
    patch_size: int,
    *,
    out_channels: int,
    grid_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    r"""Inverse of [`patchify2d`][torchebm.models.patchify2d] for a square patch grid.

    Args:
        tokens: ``(B, N, p*p*C)`` with ``N`` a perfect square.
        patch_size: Patch side ``p``.
        out_channels: Channels ``C`` of the image.
        grid_size: Token grid ``(gh, gw)`` with ``gh * gw = N`` (rectangular images);
            ``None`` means a square grid.

    Returns:
        Images ``(B, C, gh p, gw p)``.

    Raises:
        ValueError: the token dimension is not ``p*p*C`` or ``N`` is not a square.

    Example:
        >>> x = torch.randn(2, 3, 8, 8)
        >>> torch.equal(unpatchify2d(patchify2d(x, 4), 4, out_channels=3), x)
        True
    """
    p = check_int("patch_size", patch_size, minimum=1)
    c = check_int("out_channels", out_channels, minimum=1)
    check_tensor("tokens", tokens, ndim=3)
    b, n, d = tokens.shape
    if d != p * p * c:
        raise ShapeError(
            f"token dimension must be patch_size**2 * out_channels = {p * p * c}, got {d}"
        )
    if grid_size is None:
        gh = gw = math.isqrt(n)
        if gh * gw != n:
            raise ShapeError(
                f"number of tokens must be a perfect square, got {n}; pass grid_size for "
                "rectangular grids"
            )
    else:
        if not isinstance(grid_size, (tuple, list)) or len(grid_size) != 2:
            raise TypeError(f"grid_size must be None or a pair (h, w), got {grid_size!r}")
        gh, gw = (check_int("grid_size", g, minimum=1) for g in grid_size)  # (-4, -4) passed
        if gh * gw != n:
            raise ShapeError(f"grid_size {(gh, gw)} does not match {n} tokens")
    x = tokens.reshape(b, gh, gw, p, p, c)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, q)
    return x.reshape(b, c, gh * p, gw * p)


class ConvPatchEmbed2d(nn.Module):
    r"""Linear patch embedding as a stride-``p`` convolution: ``(B, C, H, W) -> (B, N, D)``.

    Equivalent to a linear map of [`patchify2d`][torchebm.models.patchify2d] tokens; the kernel is initialised
    Xavier-uniform on its flattened view and the bias to zero (as in DiT).

    Args:
        in_channels: Image channels ``C``.
        embed_dim: Token dimension ``D``.
        patch_size: Patch side ``p``.

    Example:
        >>> ConvPatchEmbed2d(in_channels=3, embed_dim=16, patch_size=4)(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 4, 16])

    References:
        Dosovitskiy et al., "An Image is Worth 16x16 Words" (ViT), ICLR 2021.
    """

    # objects pickled whole by torchebm 0.8.9
    __setstate__ = accept_089_pickle("embed_dim", patch_embed_kwargs)

    def __init__(self, *, in_channels: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.patch_size = check_int("patch_size", patch_size, minimum=1)
        self.proj = nn.Conv2d(
            self.in_channels, self.embed_dim, kernel_size=self.patch_size, stride=self.patch_size
        )
        w = self.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        if self.proj.bias is not None:  # always true (Conv2d with bias); narrows the type
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed images ``(B, C, H, W)`` (``H``, ``W`` divisible by ``p``) into ``(B, N, D)``.

        Args:
            x: Images `(B, in_channels, H, W)`.
        """
        check_tensor("x", x, ndim=4)
        _, c, h, w = x.shape
        if c != self.in_channels:
            raise ShapeError(f"x must have {self.in_channels} channels, got {c}")
        if h % self.patch_size or w % self.patch_size:
            raise ShapeError(
                f"image height and width must be divisible by patch_size={self.patch_size}, "
                f"got {h}x{w}"
            )
        return self.proj(x).flatten(2).transpose(1, 2)
