"""A sampler's construction warning names the user's line, not the subclass's ``__init__``."""

from __future__ import annotations

import sys
import warnings

import torch

from torchebm.core import GaussianModel
from torchebm.samplers import LangevinDynamics


def test_device_mismatch_warning_names_the_constructor_call():
    model = GaussianModel(torch.zeros(2), torch.eye(2))  # on the CPU
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        sampler = LangevinDynamics(model, step_size=0.01, device="meta")  # was _langevin.py

    [w] = [w for w in caught if "differs from the device" in str(w.message)]
    assert str(w.message).startswith("LangevinDynamics: device='meta' differs")
    assert (w.filename, w.lineno) == (__file__, line)
    assert sampler.device == torch.device("cpu")  # the chains follow the model
