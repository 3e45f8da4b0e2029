"""Alias of ``torchebm.core`` at the torchebm 0.8.9 module path ``torchebm.core.base_module``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.core``.
"""

from torchebm.core import TorchEBMModule, substitute_condition

__all__ = ["TorchEBMModule", "substitute_condition"]
