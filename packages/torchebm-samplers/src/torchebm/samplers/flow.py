"""0.8.9 import path `torchebm.samplers.flow`; new code imports these names from `torchebm.samplers`."""

from torchebm.samplers import FlowSampler, PredictionType

__all__ = ["FlowSampler", "PredictionType"]
