"""0.8.9 import path `torchebm.utils.profiling`; new code imports these names from `torchebm.utils`."""

from torch.profiler import record_function

from torchebm.utils import profile_context

__all__ = ["profile_context", "record_function"]
