"""A warning names the user's line, however many library frames lie between.

Python shows a ``DeprecationWarning`` only when it is attributed to ``__main__`` and a
``RuntimeWarning``/``UserWarning`` says where it came from by its file and line: both must
be the caller's, not a torchebm, torch or ``abc`` (``ABCMeta.__new__``) frame.
"""

from __future__ import annotations

import inspect
import sys
import warnings

import torch

import torchebm.core as core
from torchebm.core import BaseLoss, ConstantScheduler, LinearScheduler
from torchebm.core._module import _WARNED


def test_subclassing_a_deprecated_alias_names_the_class_statement():
    _WARNED.discard("torchebm.core.GaussianEnergy")  # once per process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class Mine(core.GaussianEnergy):  # was attributed to <frozen abc>, hidden from scripts
            pass

    [w] = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert "use torchebm.core.GaussianModel" in str(w.message)
    assert (w.filename, w.lineno) == (__file__, inspect.getsourcelines(Mine)[1])


class _Loss(BaseLoss):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum()


def test_a_scheduler_state_not_loaded_names_the_load_state_dict_call():
    src, dst = _Loss(), _Loss()
    src.register_scheduler("weight", ConstantScheduler(1.0))
    dst.register_scheduler("weight", LinearScheduler(1.0, 0.0, 10))
    state = src.state_dict()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        dst.load_state_dict(state)  # torch's load_state_dict -> set_extra_state -> warning

    [w] = [w for w in caught if "not loaded" in str(w.message)]
    assert "'weight'" in str(w.message) and "ConstantScheduler" in str(w.message)
    assert (w.filename, w.lineno) == (__file__, line)
