"""tests/integration configuration: make ``integration_helpers`` importable; the
``ddp_group`` fixture."""

import sys
from pathlib import Path

import pytest
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def ddp_group(tmp_path_factory):
    """A single-process gloo group for the module's tests (DDP-wrapped models on CPU)."""
    if dist.is_initialized():
        yield
        return
    store = tmp_path_factory.mktemp("ddp") / "store"  # the file store removes it at the end
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
