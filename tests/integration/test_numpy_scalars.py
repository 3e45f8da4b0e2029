"""numpy scalars are accepted wherever a Python number is (as check_int/check_positive do
everywhere else); these five call sites used a bare isinstance and refused np.float32(0.25)
with a message saying the value was out of its range."""

from __future__ import annotations

import math

import numpy as np
import torch

from torchebm.core import GaussianModel
from torchebm.flows import probability_flow_log_likelihood, trimmed_mean
from torchebm.losses import SlicedScoreMatching
from torchebm.metrics import grid_log_partition
from torchebm.models import DiT


def test_numpy_scalars_are_numbers():
    values = torch.tensor([1.0, 2.0, 3.0, 100.0])
    assert trimmed_mean(values, np.float32(0.25)) == trimmed_mean(values, 0.25)
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    assert SlicedScoreMatching(model, n_projections=np.int64(5)).n_projections == 5
    net = DiT(input_size=np.int64(8), in_channels=1, patch_size=2, embed_dim=16, depth=1)
    assert net(torch.zeros(1, 1, 8, 8), torch.zeros(1)).shape == (1, 1, 8, 8)
    log_z = grid_log_partition(model, log_tol=np.float32(-40.0)).log_z
    assert abs(log_z - math.log(2 * math.pi)) < 1e-4
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    a = probability_flow_log_likelihood(lambda z, t: -z, x, t_noise=np.float32(0.0))
    b = probability_flow_log_likelihood(lambda z, t: -z, x, t_noise=0.0)
    torch.testing.assert_close(a, b)


def test_a_numpy_array_of_bandwidths_is_a_sequence_of_bandwidths():
    # an ndarray is not a Sequence: "bandwidth must be a positive number" named a type the
    # docstring does not limit it to
    from torchebm.metrics import mmd2

    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    y = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        mmd2(x, y, bandwidth=np.array([0.5, 1.0])), mmd2(x, y, bandwidth=[0.5, 1.0])
    )


def test_ais_base_mean_of_a_list_names_the_accepted_types():
    import pytest

    from torchebm.samplers import AnnealedImportanceSampling

    with pytest.raises(TypeError, match="base_mean must be a number or a tensor"):
        AnnealedImportanceSampling(GaussianModel(torch.zeros(2), torch.eye(2)), base_mean=[0, 0])
