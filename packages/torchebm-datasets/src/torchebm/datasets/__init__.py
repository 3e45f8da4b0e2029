"""``torchebm.datasets``: part of the ``torchebm-datasets`` distribution."""

from importlib.metadata import version as _version

__version__ = _version("torchebm-datasets")

__all__: list[str] = []
