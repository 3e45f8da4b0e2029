"""``torchebm.cli``: the ``torchebm`` command line (part of the ``torchebm`` meta distribution)."""

from importlib.metadata import version as _version

__version__ = _version("torchebm")

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``torchebm`` console script (placeholder until the demos land)."""
    import argparse

    parser = argparse.ArgumentParser(prog="torchebm")
    parser.add_argument("--version", action="version", version=f"torchebm {__version__}")
    parser.parse_args(argv)
    return 0
