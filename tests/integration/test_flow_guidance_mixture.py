"""Classifier-free guidance of a flow on a two-class Gaussian mixture, with exact fields.

Class 0 is the left component of the 1-D mixture, class 1 the two others; the unconditional
field is the whole mixture's. With the exact conditional fields, guidance scale 1 must
transport noise to the class's law (its exact 1-D flow map is the monotone rearrangement
of the CDFs), scale 0 to the whole mixture, and another scale must integrate the combined
field $(1 - w)\\,v_\\varnothing + w\\,v_y$ (reference: a float64 RK4 at a fine step).
"""

from __future__ import annotations

import pytest
import torch
from _support.mixture_paths import F64, Mixture, mixture_1d
from torch import nn

from torchebm.models import ClassifierFreeGuidance
from torchebm.samplers import FlowSampler

NULL = 2
FULL = mixture_1d()
CLASSES = [
    Mixture([1.0], FULL.m[:1], FULL.S[:1]),
    Mixture(FULL.w[1:] / FULL.w[1:].sum(), FULL.m[1:], FULL.S[1:]),
]


class LabelledField(nn.Module):
    """The exact velocity of the class ``y`` (``y == NULL``: of the whole mixture)."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for label, mix in ((0, CLASSES[0]), (1, CLASSES[1]), (NULL, FULL)):
            rows = y == label
            if rows.any():
                out[rows] = mix.at("linear", x[rows], t[rows])["velocity"]
        return out


def _start() -> tuple[torch.Tensor, torch.Tensor]:
    x0 = torch.randn(24, 1, dtype=F64, generator=torch.Generator().manual_seed(0))
    return x0, torch.arange(24) % 2


def _sample(scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x0, y = _start()
    guided = ClassifierFreeGuidance(LabelledField(), guidance_scale=scale, null_condition=NULL)
    fs = FlowSampler(guided, integrator="rk4", dtype=F64)
    return x0, y, fs.sample(x=x0.clone(), n_steps=200, y=y)


@pytest.mark.parametrize("scale", [1.0, 0.0])
def test_scale_one_samples_the_class_and_scale_zero_the_mixture(scale):
    x0, y, out = _sample(scale)
    for label in (0, 1):
        rows = y == label
        law = CLASSES[label] if scale == 1.0 else FULL
        want = law.transport("linear", x0[rows], 0.0, 1.0)
        torch.testing.assert_close(out[rows], want, rtol=0, atol=1e-5)


def test_guided_field_is_integrated_as_the_combined_field():
    w = 2.5
    x0, y, out = _sample(w)

    def field(x: torch.Tensor, t: float) -> torch.Tensor:
        v = torch.empty_like(x)
        for label in (0, 1):
            rows = y == label
            cond = CLASSES[label].at("linear", x[rows], t)["velocity"]
            uncond = FULL.at("linear", x[rows], t)["velocity"]
            v[rows] = (1 - w) * uncond + w * cond
        return v

    x, n = x0.clone(), 500  # classic RK4 in float64 at h = 2e-3
    h = 1.0 / n
    for i in range(n):
        t = i * h
        k1 = field(x, t)
        k2 = field(x + 0.5 * h * k1, t + 0.5 * h)
        k3 = field(x + 0.5 * h * k2, t + 0.5 * h)
        k4 = field(x + h * k3, t + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-5)
