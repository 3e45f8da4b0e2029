"""tests/samplers configuration: make ``samplers_helpers`` importable, one thread per test."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    yield
