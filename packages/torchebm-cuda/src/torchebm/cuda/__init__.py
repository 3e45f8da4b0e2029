"""``torchebm.cuda``: part of the ``torchebm-cuda`` distribution."""

from importlib.metadata import version as _version

__version__ = _version("torchebm-cuda")

__all__: list[str] = []
