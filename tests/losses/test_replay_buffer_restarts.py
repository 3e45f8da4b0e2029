"""Persistent CD restarts: each chain is re-initialised from $\\mathcal N(0, s^2 I)$ noise
with probability ``new_sample_ratio`` (IGEBM/JEM), independently per chain.

Reference: the Bernoulli($p$) count and the Gaussian standard deviation, with tolerances of
4 standard errors at the sample size; a 5% error in $p$ (0.015 here, 6.5 standard errors)
or in $s$ (0.1, 15 standard errors) fails.
"""

from __future__ import annotations

import math

import torch
from _support.losses import Quadratic, TinyLangevin

from torchebm.losses import PersistentContrastiveDivergence

N, P, SCALE = 40_000, 0.3, 2.0


def test_restart_fraction_and_noise_scale_are_the_requested_ones():
    model = Quadratic(1.0)
    pcd = PersistentContrastiveDivergence(
        model,
        TinyLangevin(model),
        k_steps=1,
        buffer_size=N,
        new_sample_ratio=P,
        init_noise_scale=SCALE,
    )
    pcd.initialize_buffer((1,), generator=torch.Generator().manual_seed(0))
    pcd.replay_buffer.fill_(1000.0)  # kept chains are far from any restart
    start = pcd.get_start_points(torch.zeros(N, 1), generator=torch.Generator().manual_seed(1))
    fresh = start.squeeze(1).abs() < 500
    frac = fresh.double().mean().item()
    assert abs(frac - P) < 4 * math.sqrt(P * (1 - P) / N)  # 4 sd = 0.0092
    assert (start[~fresh] == 1000.0).all()
    n_fresh = int(fresh.sum())
    std = start[fresh].double().std().item()
    assert abs(std - SCALE) < 4 * SCALE / math.sqrt(2 * n_fresh)  # 4 sd = 0.033


def test_initial_buffer_is_noise_of_the_requested_scale():
    # the buffer starts as N(0, s^2 I): the constructor's init_noise_scale, or the one given
    # to initialize_buffer (4 standard errors of a std over 2 x 40,000 draws: 0.7% of s)
    for given, expected in ((None, SCALE), (0.5, 0.5)):
        model = Quadratic(1.0)
        pcd = PersistentContrastiveDivergence(
            model, TinyLangevin(model), buffer_size=N, init_noise_scale=SCALE
        )
        buf = pcd.initialize_buffer(
            (2,), init_noise_scale=given, generator=torch.Generator().manual_seed(0)
        ).double()
        n = buf.numel()
        assert abs(buf.mean().item()) < 4 * expected / math.sqrt(n)
        assert abs(buf.std().item() - expected) < 4 * expected / math.sqrt(2 * n), given
