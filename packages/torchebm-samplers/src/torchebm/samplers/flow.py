"""0.8.9 import path `torchebm.samplers.flow`; new code imports these names from `torchebm.samplers`."""

# the `X as X` imports: names 0.8.9's module imported, for code that imported them from here
from torchebm.core import BaseInterpolant as BaseInterpolant
from torchebm.core import BaseSampler as BaseSampler
from torchebm.core import BaseScheduler as BaseScheduler
from torchebm.core import expand_t_like_x as expand_t_like_x
from torchebm.integrators import BaseRungeKuttaIntegrator as BaseRungeKuttaIntegrator
from torchebm.integrators import BaseSDERungeKuttaIntegrator as BaseSDERungeKuttaIntegrator
from torchebm.integrators import resolve_integrator as resolve_integrator
from torchebm.interpolants import CosineInterpolant as CosineInterpolant
from torchebm.interpolants import LinearInterpolant as LinearInterpolant
from torchebm.interpolants import VariancePreservingInterpolant as VariancePreservingInterpolant
from torchebm.interpolants import resolve_interpolant as resolve_interpolant
from torchebm.samplers import FlowSampler, PredictionType

__all__ = ["FlowSampler", "PredictionType"]
