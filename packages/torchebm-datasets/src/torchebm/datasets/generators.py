"""Alias of ``torchebm.datasets`` at the torchebm 0.8.9 module path ``torchebm.datasets.generators``.

A supported import path for code written against torchebm 0.8.x; it holds no code of
its own. New code imports from ``torchebm.datasets``.
"""

from torchebm.datasets import (
    BaseSyntheticDataset,
    CheckerboardDataset,
    CircleDataset,
    EightGaussiansDataset,
    GaussianMixtureDataset,
    GridDataset,
    PinwheelDataset,
    SwissRollDataset,
    TwoMoonsDataset,
)

__all__ = [
    "BaseSyntheticDataset",
    "CheckerboardDataset",
    "CircleDataset",
    "EightGaussiansDataset",
    "GaussianMixtureDataset",
    "GridDataset",
    "PinwheelDataset",
    "SwissRollDataset",
    "TwoMoonsDataset",
]
