"""Worker of test_distributed.py: one rank of a 2-process gloo group mixing PCD buffers."""

import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from torchebm.losses import PersistentContrastiveDivergence


class Sampler(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def sample(self, x=None, n_steps=1, **kw):
        return x


def main(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = nn.Linear(2, 1)
    pcd = PersistentContrastiveDivergence(model, Sampler(model), buffer_size=6)
    pcd.initialize_buffer((2,))
    # rank r holds rows 10 r + (0..5), with ages 100 r + (0..5)
    pcd.replay_buffer.copy_((10 * rank + torch.arange(6.0)).unsqueeze(1).repeat(1, 2))
    pcd.buffer_age.copy_(100 * rank + torch.arange(6))
    pcd._set_ptr(4)
    g = torch.Generator().manual_seed(1234 + rank)  # only rank 0's draw matters
    pcd.mix_buffer_across_ranks(generator=g)
    torch.save(
        {"buffer": pcd.replay_buffer.clone(), "age": pcd.buffer_age.clone(), "ptr": pcd._ptr}, out
    )
    dist.barrier()
    dist.destroy_process_group()
    # skip interpreter teardown, where gloo's C++ threads can abort after the results exist
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
