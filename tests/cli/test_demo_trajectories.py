"""The trajectories the demos plot: which chain states they keep."""

import torch

from torchebm.cli._demos import DemoContext, _mcmc_in_chunks
from torchebm.cli._progress import Progress
from torchebm.core import HarmonicModel
from torchebm.samplers import GradientDescentSampler


def test_chunked_trajectory_ends_at_the_returned_sample():
    # it kept steps 1, 4, ..., 298 of the eqm demo's 300 (chunks of 15, every 3rd from the
    # first), so the trajectory panel's "end" stars were not the samples
    demo = DemoContext(
        torch.zeros(4, 2),
        torch.zeros(4, 2),
        1,
        4,
        torch.device("cpu"),
        torch.Generator().manual_seed(0),
        lambda total, desc: Progress(total, desc, enabled=False),
        lambda msg: None,
    )
    x0 = torch.tensor([[2.0, -1.0], [0.5, 3.0]], dtype=torch.float64)
    h, n_steps = 0.01, 300
    sampler = GradientDescentSampler(HarmonicModel(), step_size=h)
    x, traj, _ = _mcmc_in_chunks(demo, sampler, x0, n_steps, "sample")
    kept = torch.cat(traj, dim=1)
    # gradient descent on |x|^2 / 2: x_k = (1 - h)^k x_0; chunks of 15, every 3rd step
    # counted back from each chunk's end: steps 3, 6, ..., 300
    steps = torch.arange(3, n_steps + 1, 3, dtype=torch.float64)
    expected = (1 - h) ** steps[None, :, None] * x0[:, None, :]
    torch.testing.assert_close(kept.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kept[:, -1], x)
