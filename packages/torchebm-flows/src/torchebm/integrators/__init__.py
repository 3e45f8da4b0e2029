"""``torchebm.integrators``: part of the ``torchebm-flows`` distribution."""

from importlib.metadata import version as _version

__version__ = _version("torchebm-flows")

__all__: list[str] = []
