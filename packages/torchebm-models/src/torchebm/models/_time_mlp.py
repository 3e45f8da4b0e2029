r"""`TimeConditionedMLP`: an AdaLN-Zero (or concatenation) conditioned MLP for low-dimensional flows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from torchebm.core.errors import ConfigurationError, check_in, check_int
from torchebm.models._conditioning import build_embedders, check_input, condition_vector
from torchebm.models.components import AdaLNZeroLinearHead, AdaLNZeroMLPBlock
from torchebm.models.components._compat_089 import accept_089_pickle, time_mlp_kwargs
from torchebm.models.components._transformer import (
    _xavier_linear,
    activation_factory,
    cond_width,
)

__all__ = ["TimeConditionedMLP"]


def _tanh_gelu() -> nn.Module:
    return nn.GELU(approximate="tanh")


def _check_unconditional(num_classes: Any, t_embedder: Any, y_embedder: Any) -> None:
    """``cond_dim=0`` builds no embedder: refuse the options that need one."""
    given = [n for n, v in (("num_classes", num_classes), ("t_embedder", t_embedder),
                            ("y_embedder", y_embedder)) if v is not None]  # fmt: skip
    if given:
        raise ConfigurationError(
            f"cond_dim=0 builds an unconditional field, which takes no {', '.join(given)}; "
            "give cond_dim >= 1 to condition it"
        )


class TimeConditionedMLP(nn.Module):
    r"""MLP field $v(x, t, y)$ for vectors `(B, in_dim)`, with the DiT conditioning contract.

    ``conditioning="adaln_zero"`` (default): a linear stem, ``depth`` `AdaLNZeroMLPBlock`s
    and an `AdaLNZeroLinearHead`, all modulated by $c = e_t(t) + e_y(y) + \text{cond}$
    (zero field at init). ``"concat"``: a plain MLP on $[x, c]$ with ``depth`` hidden layers;
    with ``cond_dim=0`` an unconditional, time-invariant field on $x$ alone (``t`` is
    accepted and ignored, so the losses that always pass it drive it unchanged; as in
    torchebm 0.8.9, whose checkpoints of it load).

    Args:
        in_dim: Input width.
        out_dim: Output width (default ``in_dim``).
        hidden_dim: Hidden width.
        depth: Number of blocks / hidden layers ($\ge 1$).
        conditioning: ``"adaln_zero"`` or ``"concat"``.
        mlp_ratio: MLP width multiple inside each AdaLN block (default 4; adaln_zero only).
        activation: Activation factory (default tanh-GELU for adaln_zero, SiLU for concat).
        cond_dim: Conditioning width (default ``hidden_dim``; ``0``: no conditioning,
            ``"concat"`` only).
        num_classes: Build a label embedder (with a null class).
        class_dropout_prob: Label dropout while training.
        t_embedder: Custom time embedder.
        y_embedder: Custom label embedder (instead of ``num_classes``).

    Example:
        >>> net = TimeConditionedMLP(in_dim=2, hidden_dim=64, depth=2)
        >>> net(torch.randn(8, 2), torch.rand(8)).shape
        torch.Size([8, 2])

    References:
        Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT), ICCV 2023.
    """

    # objects pickled whole by torchebm 0.8.9 (it stored which embedders were its defaults)
    __setstate__ = accept_089_pickle(lambda s: "_default_t_embedder" in s, time_mlp_kwargs)

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int | None = None,
        hidden_dim: int = 256,
        depth: int = 3,
        conditioning: str = "adaln_zero",
        mlp_ratio: float | None = None,
        activation: Callable[[], nn.Module] | None = None,
        cond_dim: int | None = None,
        num_classes: int | None = None,
        class_dropout_prob: float = 0.0,
        t_embedder: nn.Module | None = None,
        y_embedder: nn.Module | None = None,
    ):
        super().__init__()
        self.in_dim = check_int("in_dim", in_dim, minimum=1)
        self.out_dim = self.in_dim if out_dim is None else check_int("out_dim", out_dim, minimum=1)
        self.hidden_dim = check_int("hidden_dim", hidden_dim, minimum=1)
        self.depth = check_int("depth", depth, minimum=1)
        self.conditioning = check_in("conditioning", conditioning, ("adaln_zero", "concat"))
        if conditioning == "concat" and mlp_ratio is not None:
            raise ConfigurationError("mlp_ratio applies only to conditioning='adaln_zero'")
        self.num_classes = num_classes
        if cond_dim == 0 and conditioning == "concat" and not isinstance(cond_dim, bool):
            _check_unconditional(num_classes, t_embedder, y_embedder)
            self.cond_dim = 0
            self.t_embedder, self.y_embedder = None, None
        else:
            self.cond_dim = cond_width(cond_dim, self.hidden_dim)
            self.t_embedder, self.y_embedder = build_embedders(
                self.cond_dim, num_classes, class_dropout_prob, t_embedder, y_embedder
            )
        if conditioning == "adaln_zero":
            act = activation_factory("activation", activation, _tanh_gelu)
            # Xavier-uniform with a zero bias, as DiT initialises its linears (and 0.8.9 this)
            self.stem = _xavier_linear(nn.Linear(self.in_dim, self.hidden_dim))
            self.blocks = nn.ModuleList(
                AdaLNZeroMLPBlock(
                    embed_dim=self.hidden_dim,
                    cond_dim=self.cond_dim,
                    mlp_ratio=4.0 if mlp_ratio is None else mlp_ratio,
                    act_layer=act,
                )
                for _ in range(self.depth)
            )
            self.head = AdaLNZeroLinearHead(
                embed_dim=self.hidden_dim, cond_dim=self.cond_dim, out_dim=self.out_dim
            )
        else:
            act = activation_factory("activation", activation, nn.SiLU)
            layers: list[nn.Module] = []
            width = self.in_dim + self.cond_dim
            for _ in range(self.depth):
                layers += [nn.Linear(width, self.hidden_dim), act()]
                width = self.hidden_dim
            layers.append(nn.Linear(self.hidden_dim, self.out_dim))
            self.net = nn.Sequential(*layers)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        *,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Field at ``x`` `(B, in_dim)` given times ``t`` `(B,)`, labels ``y`` and/or ``cond``.

        At least one of ``t``, ``y``, ``cond`` is given; their embeddings are summed into
        $c$. Each has one row per sample or a single row for the whole batch.

        Args:
            x: Inputs `(B, in_dim)`, of the parameters' dtype.
            t: Times `(B,)` or `(B, 1)` (or one time, a number or 0-d), embedded by
                ``t_embedder``.
            y: Integer labels `(B,)`, embedded by the label embedder (``num_classes`` or
                ``y_embedder`` at construction).
            cond: A conditioning vector `(B, cond_dim)` added as it is.

        Returns:
            The field `(B, out_dim)`.

        Raises:
            TypeError: ``x`` not a tensor, or not of the parameters' dtype.
            ShapeError: ``x`` not of shape ``(B, in_dim)``.
        """
        first = self.net[0] if self.conditioning == "concat" else self.stem
        check_input(type(self).__name__, x, (self.in_dim,), cast(torch.Tensor, first.weight).dtype)
        if self.cond_dim == 0:  # unconditional: t is ignored, labels have nowhere to go
            if y is not None or cond is not None:
                raise ConfigurationError(
                    f"{type(self).__name__} was built unconditional (cond_dim=0): it takes no "
                    "y or cond (t is accepted and ignored)"
                )
            return self.net(x)
        c = condition_vector(self, t, y, cond, batch=x.shape[0])
        if self.conditioning == "concat":
            return self.net(torch.cat([x, c.to(x.dtype)], dim=-1))
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, c)
        return self.head(h, c)
