"""rank_seed promises "the same (seed, rank) gives the same seed on any machine": pin the
values (a change of the mixing silently changes every multi-rank run's streams), and check the
SplitMix64 rounds against Vigna's reference output (state 0 -> 0xE220A8397B1DCDAF)."""

import torch

from torchebm.core import distributed as D

M64 = (1 << 64) - 1


def splitmix64(z):  # Vigna, https://prng.di.unimi.it/splitmix64.c (one output from state z)
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def test_splitmix_reference_vector():
    assert splitmix64(0) == 0xE220A8397B1DCDAF


def test_rank_seed_golden_values():
    assert [D.rank_seed(7, rank=r) for r in range(4)] == [
        6654738377353848610,
        2207009715805324207,
        2545488658212934290,
        3879072848308665546,
    ]
    assert D.rank_seed(2**40 + 3, rank=5) == 5989628957827177611
    for seed, rank in [(0, 0), (7, 1), (123456789, 31)]:
        assert D.rank_seed(seed, rank=rank) == splitmix64(splitmix64(seed) ^ rank) >> 1


def test_rank_generator_is_seeded_with_rank_seed():
    g = D.rank_generator(7, rank=1)
    ref = torch.Generator().manual_seed(splitmix64(splitmix64(7) ^ 1) >> 1)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=ref))
