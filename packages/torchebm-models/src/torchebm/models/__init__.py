"""``torchebm.models``: part of the ``torchebm-models`` distribution."""

from importlib.metadata import version as _version

__version__ = _version("torchebm-models")

__all__: list[str] = []
