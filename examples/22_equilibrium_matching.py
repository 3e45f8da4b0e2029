"""Equilibrium Matching on eight Gaussians: learn an energy, sample it by gradient descent."""

import torch
from _common import steps

from torchebm.datasets import make_eight_gaussians
from torchebm.losses import EquilibriumMatchingLoss
from torchebm.models import EqMEnergy, MLPVelocity
from torchebm.samplers import GradientDescentSampler
from torchebm.visualization import plot_samples

torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
data = make_eight_gaussians(20000, generator=gen)

field = MLPVelocity(2, hidden_dims=(128, 128), time_conditioned=False)
loss_fn = EquilibriumMatchingLoss(field, energy_type="dot")  # E(x) = x . f(x)
optimizer = torch.optim.Adam(field.parameters(), lr=2e-3)
n_steps = steps(3000, 50)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, n_steps)
for _ in range(n_steps):
    batch = data[torch.randint(0, len(data), (1024,), generator=gen)]
    loss = loss_fn(batch, generator=gen)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()

energy = EqMEnergy(field, "dot")
samples = GradientDescentSampler(energy, step_size=0.01).sample(
    x=torch.randn(2000, 2, generator=gen), n_steps=300
)
radius = samples.norm(dim=1)
print(f"sample radius {radius.mean().item():.3f} +- {radius.std().item():.3f} (data: 2.000)")
plot_samples(samples, data[:2000], model=energy, kind="energy", clip=12).savefig(
    "eqm_eight_gaussians.png", dpi=80
)
