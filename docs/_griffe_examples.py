"""Griffe extension used by the API reference: read Google ``Example:`` sections as examples.

The house style writes a singular ``Example:`` section; Griffe's Google parser only knows
the plural ``Examples:`` and would otherwise render the doctest lines as Markdown (``>>>``
as a quote, an output like ``[0.75, 0.5]`` as a link). This renames the section title
before the docstring is parsed. It also expands ``__all__ = [*_sub.__all__, ...]`` in
every portion: Griffe expands exports from the loaded top package down and stops at the
``torchebm`` namespace, which has no ``__all__``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"(?m)^(\s*)Example:[ \t]*$")


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section titles to ``Examples:`` in every docstring."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        _rename(obj)

    def on_members(self, *, obj: Any, **kwargs: Any) -> None:
        _rename(obj)  # a module's docstring is attached once its body has been visited

    def on_package(self, *, pkg: Any, loader: Any, **kwargs: Any) -> None:
        for portion in list(pkg.modules.values()):
            if not portion.is_alias:
                loader.expand_exports(portion)


def _rename(obj: Any) -> None:
    doc = getattr(obj, "docstring", None)
    if doc is not None and doc.value:
        doc.value = _EXAMPLE.sub(r"\1Examples:", doc.value)
