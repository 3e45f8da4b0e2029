"""``torchebm.visualization``: part of the ``torchebm`` meta distribution."""

from importlib.metadata import version as _version

__version__ = _version("torchebm")

__all__: list[str] = []
