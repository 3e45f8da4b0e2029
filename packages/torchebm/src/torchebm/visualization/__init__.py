r"""``torchebm.visualization``: plots of 2-D energies, samples, trajectories and training.

Part of the ``torchebm`` meta distribution (``pip install torchebm``). Matplotlib only,
object-oriented API: every function returns a `matplotlib.figure.Figure` built
without ``pyplot`` (safe on headless machines, the ``Agg`` canvas writes PNG/PDF/SVG) and
accepts ``ax=`` to draw into an existing axes instead.

Example:
    >>> import torch
    >>> from torchebm.core import DoubleWellModel
    >>> from torchebm.visualization import plot_energy_landscape, plot_samples
    >>> fig = plot_energy_landscape(DoubleWellModel(), (-2, 2), kind="density")
    >>> fig = plot_samples(torch.randn(200, 2), model=DoubleWellModel(), xlim=(-2, 2))
    >>> fig.savefig("samples.png")  # doctest: +SKIP
"""

from importlib.metadata import version as _version

from torchebm.visualization import _plots
from torchebm.visualization._grid import energy_grid, vector_field_grid
from torchebm.visualization._plots import *  # noqa: F403

__version__ = _version("torchebm")

__all__ = [
    *_plots.__all__,
    "energy_grid",
    "vector_field_grid",
]
