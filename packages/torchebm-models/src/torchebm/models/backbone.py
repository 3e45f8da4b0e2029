"""0.8.9 import path `torchebm.models.backbone` (empty in 0.8.9 too); models live in `torchebm.models`."""

__all__: list[str] = []
