"""Library code reads no private ``nn.Module``/torch state (DESIGN.md section 5): speed comes
from public means (``gradient_function``, compile, an explicit gradient), and module state
goes through ``register_buffer``, attribute access, ``get_buffer`` and ``state_dict``.

Still present and not covered here (no public equivalent yet): the FSDP2 reshard settings
that ``torchebm.core.distributed.unsharded`` saves and restores, ``torch.compile``'s
``_orig_mod`` in ``unwrap_model`` and in score matching's refusal of a compiled model
(whose second derivatives torch drops), and the ``_apply`` override (placement cache).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRIVATE = re.compile(
    r"\.(_buffers|_parameters|_modules|_non_persistent_buffers_set|_forward_hooks"
    r"|_forward_pre_hooks|_backward_hooks|_backward_pre_hooks|_state_dict_hooks"
    r"|_state_dict_pre_hooks|_load_state_dict_pre_hooks|_load_state_dict_post_hooks"
    r"|_compiled_call_impl|_call_impl|_wrapped_call_impl)\b|torch\._C\.|__dict__\["
)


def _hits(text: str) -> list[tuple[int, str]]:
    return [
        (n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if PRIVATE.search(line)
    ]


def test_the_pattern_finds_what_it_is_for():
    assert _hits("buffers = self._buffers\nx = m._modules['a']\nsub._non_persistent_buffers_set")
    assert _hits("torch._C._set_grad_enabled(True)\nobj.__dict__['w'] = t")
    assert not _hits("self.named_buffers()\nself.register_buffer('a', t)\nvars(m)")


def test_no_private_torch_state_in_packages():
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line}"
        for path in sorted((ROOT / "packages").glob("*/src/**/*.py"))
        for n, line in _hits(path.read_text(encoding="utf-8"))
    ]
    assert not found, "private torch internals:\n" + "\n".join(found)
