"""0.8.9 import path `torchebm.samplers.gradient_descent`; new code imports these names from `torchebm.samplers`."""

from torchebm.samplers import GradientDescentSampler, NesterovSampler

__all__ = ["GradientDescentSampler", "NesterovSampler"]
