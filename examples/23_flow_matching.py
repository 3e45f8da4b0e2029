"""Conditional flow matching with a linear interpolant, sampled by FlowSampler's ODE."""

import torch
from _common import steps
from matplotlib.figure import Figure

from torchebm.datasets import make_two_moons
from torchebm.interpolants import LinearInterpolant
from torchebm.models import MLPVelocity
from torchebm.samplers import FlowSampler
from torchebm.visualization import plot_interpolant_paths, plot_samples, plot_vector_field

torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
data = make_two_moons(20000, generator=gen)
interpolant = LinearInterpolant()
field = MLPVelocity(2, hidden_dims=(128, 128))
optimizer = torch.optim.Adam(field.parameters(), lr=5e-3)
n_steps = steps(8000, 100)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, n_steps)

for _ in range(n_steps):
    x1 = data[torch.randint(0, len(data), (256,), generator=gen)]
    x0 = torch.randn(x1.shape, generator=gen)
    t = torch.rand(x1.shape[0], generator=gen)
    xt, ut = interpolant.interpolate(x0, x1, t)  # path point and its velocity x1 - x0
    loss = (field(xt, t) - ut).pow(2).sum(-1).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()

sampler = FlowSampler(field, interpolant=interpolant, integrator="heun")
samples = sampler.sample(x=torch.randn(2000, 2, generator=gen), n_steps=50)
print(
    f"final loss {loss.item():.3f}; sample mean {samples.mean(0).tolist()} (data {data.mean(0).tolist()})"
)

fig = Figure(figsize=(15, 4.5), layout="constrained")
a, b, c = fig.subplots(1, 3)
plot_interpolant_paths(interpolant, torch.randn(40, 2, generator=gen), data[:40], ax=a)
plot_vector_field(field, (-2, 3), (-1.5, 2), t=0.5, ax=b, title="v(x, t=0.5)")
plot_samples(samples, data[:2000], ax=c, title="samples")
fig.savefig("flow_matching.png", dpi=80)
