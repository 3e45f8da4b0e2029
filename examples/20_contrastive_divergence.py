"""Persistent contrastive divergence with Langevin negatives on two moons."""

import torch
from _common import steps

from torchebm.datasets import make_two_moons
from torchebm.losses import ContrastiveDivergence
from torchebm.models import MLPEnergy
from torchebm.samplers import LangevinDynamics
from torchebm.visualization import plot_samples, plot_training_curves

torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
data = make_two_moons(20000, generator=gen)
held_out = make_two_moons(1000, generator=gen)

model = MLPEnergy(2, hidden_dims=(64, 64))
sampler = LangevinDynamics(model, step_size=0.005, noise_scale=1.0, clamp=(-3.0, 3.0))
loss_fn = ContrastiveDivergence(
    model,
    sampler,
    k_steps=20,
    persistent=True,
    buffer_size=4096,
    init_steps=0,
    new_sample_ratio=0.1,
    init_noise_scale=2.0,
    energy_reg_weight=0.1,
)
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

losses = []
for _ in range(steps(2000, 50)):
    batch = data[torch.randint(0, len(data), (256,), generator=gen)]
    loss, negatives = loss_fn(batch, generator=gen)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    losses.append(loss.item())

samples = sampler.sample(
    x=0.7 * torch.randn(1000, 2, generator=gen), n_steps=steps(1000, 200), generator=gen
)
plot_samples(samples, held_out, model=model, kind="log_density", clip=12).savefig(
    "cd_two_moons.png", dpi=80
)
plot_training_curves({"CD loss": losses}, smoothing=0.9).savefig("cd_loss.png", dpi=80)
print(f"final CD loss {sum(losses[-20:]) / len(losses[-20:]):.3f}")
print(f"E(data) {model(held_out).mean().item():.3f}  E(samples) {model(samples).mean().item():.3f}")
