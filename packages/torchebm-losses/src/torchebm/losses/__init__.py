"""``torchebm.losses``: part of the ``torchebm-losses`` distribution."""

from importlib.metadata import version as _version

__version__ = _version("torchebm-losses")

__all__: list[str] = []
