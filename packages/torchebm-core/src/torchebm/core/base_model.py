"""0.8.9 import path `torchebm.core.base_model`; new code imports these names from `torchebm.core`."""

from torchebm.core import _base_model, _test_functions
from torchebm.core._base_model import *  # noqa: F403
from torchebm.core._test_functions import *  # noqa: F403

__all__ = [*_base_model.__all__, *_test_functions.__all__]
