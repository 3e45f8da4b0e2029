"""0.8.9 import path `torchebm.samplers.gradient_descent`; new code imports these names from `torchebm.samplers`."""

# the `X as X` imports: names 0.8.9's module imported, for code that imported them from here
from torchebm.core import BaseModel as BaseModel
from torchebm.core import BaseSampler as BaseSampler
from torchebm.core import BaseScheduler as BaseScheduler
from torchebm.samplers import GradientDescentSampler, NesterovSampler

__all__ = ["GradientDescentSampler", "NesterovSampler"]
