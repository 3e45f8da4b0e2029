r"""``torchebm.cli``: the ``torchebm`` command line (part of the ``torchebm`` meta distribution).

Commands::

    torchebm demo [eqm|cd|hmc|flow] [--dataset NAME] [--steps N] [--out FILE]
                  [--device cpu|cuda] [--seed S] [--samples N] [--quiet]
    torchebm info

``torchebm demo`` (no name: the Equilibrium Matching demo) trains or samples a model on
a 2-D dataset in well under a minute on two CPU cores, shows progress bars, prints a
quality figure (energy distance and MMD of the model samples to held-out data, next to
the same figures for the initial noise) and writes a PNG of the energy landscape with
data and model samples (default ``torchebm-demo-<name>.png``). ``torchebm info`` prints
the installed TorchEBM pieces and torch's devices, for bug reports.

Example:
    >>> from torchebm.cli import main
    >>> main(["info"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version as _version

__version__ = _version("torchebm")

__all__ = ["main", "build_parser"]

_DEMO_NAMES = ("eqm", "cd", "hmc", "flow")


def build_parser() -> argparse.ArgumentParser:
    """The ``torchebm`` argument parser (sub-commands ``demo`` and ``info``)."""
    from torchebm.cli._demos import DATASETS, DEMOS

    parser = argparse.ArgumentParser(
        prog="torchebm",
        description="TorchEBM: energy-based and flow models for PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"torchebm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,info}")
    demo_help = "\n".join(
        f"  {k:<5} {s.title} (default dataset {s.dataset}, {s.steps} {s.steps_help})"
        for k, s in DEMOS.items()
    )
    demo = sub.add_parser(
        "demo",
        help="train or sample a model on a 2-D dataset, report its quality, write a PNG",
        description="Train or sample a model on a 2-D dataset, print its quality against "
        "held-out data and write a PNG of the energy landscape with data and samples.\n\n"
        "demos:\n" + demo_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "name", nargs="?", default="eqm", choices=_DEMO_NAMES, help="which demo (default: eqm)"
    )
    demo.add_argument(
        "--dataset", metavar="NAME", help=f"2-D dataset, one of: {', '.join(DATASETS)}"
    )
    demo.add_argument("--steps", type=int, metavar="N", help="training steps (default: per demo)")
    demo.add_argument(
        "--out",
        metavar="FILE",
        help="image to write (default: torchebm-demo-<name>.png; a folder gets that name "
        "inside it; .png is added to a name without an extension, another extension must "
        "be a format matplotlib writes: pdf, svg, jpg, ...)",
    )
    demo.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default: cpu")
    demo.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="random seed, a 64-bit int; the CPU generator uses its low 32 bits (default 0)",
    )
    demo.add_argument(
        "--samples",
        type=int,
        default=2000,
        metavar="N",
        help="model samples, and as many held-out data points (>= 10; default 2000)",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.add_parser("info", help="print the installed TorchEBM pieces and torch devices")
    return parser


def _info() -> int:
    import torch

    from torchebm.core import versions

    for name, ver in versions().items():
        print(f"{name:<20} {ver}")
    cuda = torch.cuda.is_available()
    print(
        f"{'cuda available':<20} {cuda}" + (f" ({torch.cuda.get_device_name(0)})" if cuda else "")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``torchebm`` console script; returns the exit status.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "info":
        return _info()
    from torchebm.cli._demos import DemoUsageError, run_demo

    try:
        run_demo(
            args.name,
            dataset=args.dataset,
            steps=args.steps,
            out=args.out,
            device=args.device,
            seed=args.seed,
            n_samples=args.samples,
            quiet=args.quiet,
        )
    except DemoUsageError as exc:  # an option's value; a failure while training raises
        print(f"torchebm demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("torchebm demo: interrupted", file=sys.stderr)
        return 130
    return 0
