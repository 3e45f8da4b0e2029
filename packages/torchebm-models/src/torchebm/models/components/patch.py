"""0.8.9 import path `torchebm.models.components.patch`; new code imports these names from `torchebm.models.components`."""

from torchebm.models.components import ConvPatchEmbed2d, patchify2d, unpatchify2d

__all__ = ["ConvPatchEmbed2d", "patchify2d", "unpatchify2d"]
