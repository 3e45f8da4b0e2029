r"""``torchebm.datasets``: synthetic 2-D datasets for training and testing generative models.

Each dataset is a ``torch.utils.data.Dataset`` holding its points as one ``(N, 2)`` tensor
on ``device`` in ``dtype`` (``get_data()``), generated once from a private
``torch.Generator`` (``seed=``) or a user ``generator=`` without touching the global RNG.
The same distributions are available as functions returning tensors
(``make_two_moons(n_samples, ..., generator=, device=, dtype=)``).

Install alone with ``pip install torchebm-datasets`` (needs only ``torchebm-core``).

Example:
    >>> from torchebm.datasets import TwoMoonsDataset, make_two_moons
    >>> TwoMoonsDataset(n_samples=5000, seed=0).get_data().shape
    torch.Size([5000, 2])
    >>> make_two_moons(100).shape
    torch.Size([100, 2])
"""

from importlib.metadata import version as _version

from torchebm.datasets import _datasets, _functional
from torchebm.datasets._base import BaseSyntheticDataset
from torchebm.datasets._datasets import *  # noqa: F403
from torchebm.datasets._functional import *  # noqa: F403

__version__ = _version("torchebm-datasets")

__all__ = [
    "BaseSyntheticDataset",
    *_datasets.__all__,
    *_functional.__all__,
]
