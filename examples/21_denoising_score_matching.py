"""Denoising score matching: no MCMC in training; Langevin dynamics samples the result.

For data N(0, s^2 I) the optimal energy of DSM with noise sigma is quadratic with
curvature 1 / (s^2 + sigma^2): the learned energy is checked against it.
"""

import torch
from _common import steps

from torchebm.losses import DenoisingScoreMatching
from torchebm.models import MLPEnergy
from torchebm.samplers import LangevinDynamics

torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
s, sigma = 0.5, 0.1
data = s * torch.randn(20000, 2, generator=gen)

model = MLPEnergy(2, hidden_dims=(64, 64))
loss_fn = DenoisingScoreMatching(model, noise_scale=sigma)
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
for _ in range(steps(3000, 100)):
    batch = data[torch.randint(0, len(data), (256,), generator=gen)]
    loss = loss_fn(batch, generator=gen)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

# curvature of the learned energy along a line through the origin, against the closed form
r = torch.linspace(-0.5, 0.5, 11)
line = torch.stack([r, torch.zeros_like(r)], dim=1)
grad = model.gradient(line)[:, 0]
slope = (grad * r).sum() / (r * r).sum()
print(
    f"learned curvature {slope.item():.3f}, optimum 1/(s^2 + sigma^2) = {1 / (s**2 + sigma**2):.3f}"
)

sampler = LangevinDynamics(model, step_size=0.01)
samples = sampler.sample(dim=2, n_samples=4000, n_steps=steps(1000, 100), generator=gen)
print(f"sample std {samples.std(0).tolist()} (the smoothed data: {(s**2 + sigma**2) ** 0.5:.3f})")
