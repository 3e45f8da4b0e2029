r"""Load ``state_dict``s saved by torchebm 0.8.9's model classes.

0.8.9 named some submodules differently (``modulation`` for ``adaLN_modulation``,
``head``/``proj`` for ``final_layer``/``linear``, ``patch_embed`` for ``x_embedder``, ...).
Each class registers a public ``load_state_dict`` pre-hook (``torch>=2.5``) that renames
its own 0.8.9 keys under its prefix, so a strict ``load_state_dict`` of an old checkpoint
works at every nesting level without a conversion script.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

__all__ = ["accept_089_keys"]


def accept_089_keys(module: nn.Module, renames: dict[str, str]) -> None:
    """Register a pre-hook on ``module`` renaming ``prefix + old`` keys to ``prefix + new``.

    Args:
        module: The module whose checkpoints may come from torchebm 0.8.9.
        renames: ``{old_head: new_head}``; a key whose part after the module's prefix starts
            with ``old_head`` is renamed, unless the new key is already present.
    """

    # a partial of a module-level function, not a closure: the module stays picklable
    module.register_load_state_dict_pre_hook(partial(_rename_keys, dict(renames)))


def _rename_keys(
    renames: dict[str, str], mod: nn.Module, state_dict: dict, prefix: str, *args: Any
) -> None:
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        for old, new in renames.items():
            if rest.startswith(old):
                new_key = prefix + new + rest[len(old) :]
                if new_key not in state_dict:
                    state_dict[new_key] = state_dict.pop(key)
                break
