"""Uniform draws forced to 0 (monkeypatch targets): a Metropolis test must then accept
exactly what its acceptance probability allows (``log u`` of ``u = 0`` accepted anything)."""

from __future__ import annotations

import torch


def zero_uniform_(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """Stands in for ``torch.Tensor.uniform_``: fills with 0."""
    return self.zero_()


def zero_rand(*size, generator=None, **kwargs) -> torch.Tensor:
    """Stands in for ``torch.rand``: zeros of the requested shape, dtype and device."""
    shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
    return torch.zeros(shape, **kwargs)
