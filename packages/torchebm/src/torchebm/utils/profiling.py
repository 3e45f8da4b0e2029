"""Alias of ``torchebm.utils`` at the torchebm 0.8.9 module path ``torchebm.utils.profiling``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. ``record_function`` is ``torch.profiler.record_function``.
"""

from torch.profiler import record_function

from torchebm.utils import profile_context

__all__ = ["profile_context", "record_function"]
