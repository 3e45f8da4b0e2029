"""Worker of test_distributed.py: one rank of a 2-process gloo group mixing PCD buffers.

Launched by ``_support.launch.launch``; writes ``<out>/rank<r>.pt``. The buffers and the
generator are on ``$TORCHEBM_TEST_MIX_DEVICE`` (default ``cpu``).
"""

import os
import sys
from pathlib import Path

import torch
from _support.launch import finish, init_process_group
from torch import nn

from torchebm.losses import PersistentContrastiveDivergence


class Sampler(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def sample(self, x=None, n_steps=1, **kw):
        return x


def main() -> None:
    out = Path(sys.argv[1])
    rank, _ = init_process_group()
    device = torch.device(os.environ.get("TORCHEBM_TEST_MIX_DEVICE", "cpu"))
    model = nn.Linear(2, 1)
    pcd = PersistentContrastiveDivergence(model, Sampler(model), buffer_size=6, device=device)
    pcd.initialize_buffer((2,))
    # rank r holds rows 10 r + (0..5), with ages 100 r + (0..5)
    pcd.replay_buffer.copy_((10 * rank + torch.arange(6.0)).unsqueeze(1).repeat(1, 2))
    pcd.buffer_age.copy_(100 * rank + torch.arange(6))
    pcd._set_ptr(4)
    g = torch.Generator(device).manual_seed(1234 + rank)  # only rank 0's draw matters
    pcd.mix_buffer_across_ranks(generator=g)
    res = {"buffer": pcd.replay_buffer.cpu(), "age": pcd.buffer_age.cpu(), "ptr": pcd._ptr}
    res["device"] = pcd.replay_buffer.device.type
    finish(res, out, rank)


if __name__ == "__main__":
    main()
