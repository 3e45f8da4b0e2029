"""Second-order losses called from several threads at once (found by the resources review).

* Attention through the math kernel: torch's kernel switches are process-wide, and with
  ``sdpa_kernel`` per call one thread's exit turned the flash kernel back on under another
  thread's double backward (``derivative for ..._flash_attention_..._backward is not
  implemented``), and overlapping exits left flash attention off for the whole process.
* Under DDP, score matching marked its call on the loss object; one thread's cleanup cleared
  another's mark mid-call, and that call's output bias got no gradient (DDP then waits for
  it). The mark is per thread now (a context variable).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchebm.core import BaseModel
from torchebm.losses import DenoisingScoreMatching


class _Attention(BaseModel):
    """E(x) over 16 tokens of 2 features, one attention layer (flash kernel on the CPU)."""

    def __init__(self):
        super().__init__()
        self.qkv, self.out = nn.Linear(8, 24), nn.Linear(8, 1)

    def forward(self, x):
        h = x.view(x.shape[0], 16, 2).repeat(1, 1, 4)
        q, k, v = self.qkv(h).view(x.shape[0], 16, 3, 1, 8).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.out(a.transpose(1, 2).reshape(x.shape[0], 16, 8)).sum((1, 2))


def _switches() -> tuple[bool, bool, bool]:
    b = torch.backends.cuda
    return b.flash_sdp_enabled(), b.mem_efficient_sdp_enabled(), b.math_sdp_enabled()


def test_threads_of_score_matching_on_attention_neither_fail_nor_leave_the_switches():
    torch.manual_seed(0)
    model = _Attention()
    losses = [DenoisingScoreMatching(model, noise_scale=0.1) for _ in range(2)]
    x = torch.randn(32, 32)
    before, errors = _switches(), []

    def work(i: int) -> None:
        for seed in range(60):
            try:
                losses[i](x, generator=torch.Generator().manual_seed(seed)).backward()
            except Exception as err:  # noqa: BLE001 - any failure is the finding
                errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _switches() == before == (True, True, True)


@pytest.mark.distributed
def test_score_matching_under_ddp_from_two_threads_keeps_every_energy_offset(tmp_path):
    script = textwrap.dedent(
        """
        import sys, threading, torch, torch.distributed as dist
        from torch import nn
        from torchebm.core import BaseModel
        from torchebm.losses import DenoisingScoreMatching
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)

        class Energy(BaseModel):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(8, 64), nn.SiLU(), nn.Linear(64, 1))

            def forward(self, x):
                return self.net(x).squeeze(-1)

        torch.manual_seed(0)
        ddp = nn.parallel.DistributedDataParallel(Energy())
        loss = DenoisingScoreMatching(ddp, noise_scale=0.1)
        params = list(ddp.parameters())
        bias = next(i for i, p in enumerate(params) if p is ddp.module.net[2].bias)
        missing, errors = [], []

        def work():
            for seed in range(40):
                try:
                    value = loss(torch.randn(256, 8), generator=torch.Generator().manual_seed(seed))
                    grads = torch.autograd.grad(value, params, allow_unused=True)
                    missing.append(grads[bias] is None)
                except Exception as err:
                    errors.append(repr(err))

        threads = [threading.Thread(target=work) for _ in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        dist.destroy_process_group()
        print(sum(missing), len(missing), errors[:1])
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "store")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[:2] == ["0", "80"], run.stdout  # no call lost its offset
