"""The analytic energies of torchebm.core, drawn with torchebm.visualization."""

import math

import torch
from matplotlib.figure import Figure

from torchebm.core import (
    AckleyModel,
    DoubleWellModel,
    GaussianModel,
    RastriginModel,
    RosenbrockModel,
)
from torchebm.visualization import energy_grid, plot_energy_landscape

models = {
    "Gaussian": (GaussianModel(torch.zeros(2), torch.tensor([[1.0, 0.8], [0.8, 1.0]])), (-3, 3)),
    "double well": (DoubleWellModel(barrier_height=2.0), (-2, 2)),
    "Rosenbrock": (RosenbrockModel(a=1.0, b=100.0), (-2, 2)),
    "Ackley": (AckleyModel(), (-4, 4)),
    "Rastrigin": (RastriginModel(), (-3, 3)),
}

fig = Figure(figsize=(4.2 * len(models), 3.8), layout="constrained")
for ax, (name, (model, lim)) in zip(fig.subplots(1, len(models)), models.items()):
    kind = "density" if name in ("Gaussian", "double well") else "energy"
    plot_energy_landscape(model, lim, kind=kind, ax=ax, title=name, clip=None)
fig.savefig("energy_landscapes.png", dpi=80)

# the grid evaluation is exact: the Gaussian's normaliser on [-3, 3]^2 is close to 2 pi sqrt(det)
X, Y, E = energy_grid(models["Gaussian"][0], (-6, 6), grid_size=301)
dx = (X[0, 1] - X[0, 0]) * (Y[1, 0] - Y[0, 0])
Z = float((torch.from_numpy(-E).exp().sum() * dx).item())
print(f"Gaussian normaliser: grid {Z:.4f}, closed form {2 * math.pi * math.sqrt(1 - 0.8**2):.4f}")
print("wrote energy_landscapes.png")
