"""``torchebm.samplers``: part of the ``torchebm-samplers`` distribution."""

from importlib.metadata import version as _version

__version__ = _version("torchebm-samplers")

__all__: list[str] = []
