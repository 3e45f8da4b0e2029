"""Couplings: exact OT vs brute force, greedy vs sequential greedy, Sinkhorn plans, reflow."""

import itertools
import re

import numpy as np
import pytest
import torch
from _support.ot_reference import scaling_sinkhorn

from torchebm.core import BaseCostCoupling, BaseCoupling, CouplingResult
from torchebm.couplings import (
    COUPLING_NAMES,
    ExactOTCoupling,
    GreedyCoupling,
    IndependentCoupling,
    ReflowCoupling,
    SinkhornCoupling,
    UnbalancedSinkhornCoupling,
    auction_assignment,
    get_coupling,
    resolve_coupling,
)


def brute_force(cost):
    n = cost.shape[0]
    best = min(
        itertools.permutations(range(n)), key=lambda p: sum(cost[i, p[i]].item() for i in range(n))
    )
    return list(best)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_exact_ot_equals_brute_force(dim):
    g = torch.Generator().manual_seed(dim)
    ot = ExactOTCoupling()
    for _ in range(40):
        n = int(torch.randint(2, 8, (1,), generator=g))
        x0, x1 = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g) + 0.5
        res = ot(x0, x1)
        cost = ot.compute_cost(x0, x1).double()
        perm = brute_force(cost)
        assert torch.equal(res.x1, x1[perm])
        assert torch.equal(res.x0, x0)  # x0 order never changes


def test_auction_on_integer_costs_and_ties():
    # all-equal costs: any permutation is optimal; result must be a permutation
    idx = auction_assignment(torch.ones(6, 6))
    assert sorted(idx.tolist()) == list(range(6))
    c = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    idx = auction_assignment(c)
    assert idx.tolist() == brute_force(c)
    with pytest.raises(ValueError, match="square"):
        auction_assignment(torch.ones(2, 3))
    with pytest.raises(ValueError, match="finite"):
        auction_assignment(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]))


def hungarian(cost):
    """Exact min-cost assignment and its dual by shortest augmenting paths (Kuhn-Munkres).

    An independent solver (numpy, float64): returns ``(idx, u, v)`` with row ``i`` assigned
    column ``idx[i]`` and potentials such that ``u_i + v_j <= C_ij`` for every pair, with
    equality on the assignment, so ``sum(u) + sum(v)`` is a lower bound on every
    assignment's cost that this one attains.
    """
    a = cost.detach().to(torch.float64).numpy()
    n = a.shape[0]
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    p = np.zeros(n + 1, dtype=np.int64)  # p[j]: row (1-based) matched to column j; 0: free
    way = np.zeros(n + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv = np.full(n + 1, np.inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used[1:]
            cur = a[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            masked = np.where(free, minv[1:], np.inf)
            j1 = int(masked.argmin()) + 1
            delta = masked[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    idx = np.empty(n, dtype=np.int64)
    idx[p[1:] - 1] = np.arange(n)
    return torch.from_numpy(idx), torch.from_numpy(u[1:]), torch.from_numpy(v[1:])


def test_hungarian_helper_equals_brute_force():
    g = torch.Generator().manual_seed(7)
    for n in (1, 2, 5, 7):
        c = torch.rand(n, n, generator=g, dtype=torch.float64)
        idx, u, v = hungarian(c)
        assert idx.tolist() == brute_force(c)
        assert float((u[:, None] + v[None, :] - c).max()) <= 1e-12  # dual feasible


@pytest.mark.parametrize("seed,n", [(3, 256), (5, 100)])
def test_exact_ot_is_within_tol_of_an_independent_optimum(seed, n):
    """Exact OT against Kuhn-Munkres and its dual certificate (a lower bound on any plan)."""
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    ot = ExactOTCoupling(tol=1e-4)
    cost = ot.compute_cost(x0, x1).double()
    idx = ot.solve(cost, None)
    assert sorted(idx.tolist()) == list(range(n))
    ref, u, v = hungarian(cost)
    rows = torch.arange(n)
    assert float((u[:, None] + v[None, :] - cost).max()) <= 1e-12  # the certificate holds
    bound = float(u.sum() + v.sum())
    c_ot, c_ref = float(cost[rows, idx].sum()), float(cost[rows, ref].sum())
    assert abs(c_ref - bound) <= 1e-9  # the independent solver attains the bound
    print(f"n={n}: auction {c_ot:.9f}, optimum {c_ref:.9f}, gap {c_ot - c_ref:.2e} (tol 1e-4)")
    assert bound - 1e-9 <= c_ot <= bound + 1e-4 + 1e-9  # within tol of the optimum
    # a tighter tolerance reaches the optimum's cost
    tight = auction_assignment(cost, tol=1e-9)
    assert float(cost[rows, tight].sum()) <= bound + 1e-8
    # OT never worse than identity or greedy
    greedy = GreedyCoupling().solve(cost, None)
    assert c_ot <= cost.diagonal().sum() and c_ot <= cost[rows, greedy].sum()
    # deterministic
    assert torch.equal(ot(x0, x1).x1, ot(x0, x1).x1)


@pytest.mark.parametrize("ties", [False, True])
def test_greedy_matches_sequential_greedy(ties):
    """Against the textbook loop over all pairs by cost (stable: equal costs by row, then
    column); ``ties``: integer costs in {0, 1, 2}, most pairs tied."""
    g = torch.Generator().manual_seed(4)
    for n in (1, 2, 25, 25, 25, 200):
        c = (
            torch.randint(0, 3, (n, n), generator=g).float()
            if ties
            else torch.rand(n, n, generator=g)
        )
        order = c.flatten().argsort(stable=True).tolist()
        used_r, used_c, seq = set(), set(), [-1] * n
        for f in order:
            i, j = divmod(f, n)
            if i not in used_r and j not in used_c:
                seq[i] = j
                used_r.add(i)
                used_c.add(j)
        assert GreedyCoupling().solve(c, None).tolist() == seq


def test_sinkhorn_plan_marginals_and_limit():
    g = torch.Generator().manual_seed(5)
    x0, x1 = torch.randn(32, 2, generator=g), torch.randn(32, 2, generator=g)
    sk = SinkhornCoupling(reg=0.05, n_iters=500)
    cost = sk.compute_cost(x0, x1)
    plan = sk._plan(cost)
    assert torch.allclose(plan.sum(0), torch.full((32,), 1 / 32), atol=1e-6)
    assert torch.allclose(plan.sum(1), torch.full((32,), 1 / 32), atol=1e-4)
    # small regularisation concentrates the plan on the exact OT permutation
    sharp = SinkhornCoupling(reg=1e-3, n_iters=2000)._plan(cost)
    perm = ExactOTCoupling().solve(cost, None)
    assert (sharp.argmax(dim=1) == perm).float().mean() > 0.9


def test_stochastic_couplings_use_generator_only():
    x0, x1 = torch.randn(64, 2), torch.randn(64, 2)
    for c in (SinkhornCoupling(), UnbalancedSinkhornCoupling()):
        state = torch.get_rng_state()
        a = c(x0, x1, generator=torch.Generator().manual_seed(0))
        b = c(x0, x1, generator=torch.Generator().manual_seed(0))
        assert torch.equal(a.x1, b.x1)
        assert torch.equal(state, torch.get_rng_state())


def test_unbalanced_weights():
    g = torch.Generator().manual_seed(6)
    x0, x1 = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    balanced = UnbalancedSinkhornCoupling(reg=0.05, reg_marginal=1e4, n_iters=300)(
        x0, x1, generator=g
    )
    assert torch.allclose(balanced.weights, torch.ones(64), atol=0.05)
    x0o = x0.clone()
    x0o[0] = torch.tensor([12.0, 12.0])  # outlier source
    res = UnbalancedSinkhornCoupling(reg=0.05, reg_marginal=0.05, n_iters=300)(x0o, x1, generator=g)
    assert res.weights[0] < 0.5 * res.weights[1:].median()
    assert abs(res.weights.mean().item() - 1.0) < 1e-5


def test_reflow_with_callable_and_duck_typed_sampler():
    r = ReflowCoupling(lambda x0, scale=1.0: scale * 2 * x0)
    x0, x1 = r(torch.ones(3, 2), scale=3.0)
    assert torch.equal(x1, torch.full((3, 2), 6.0))

    class FakeSampler:
        def __init__(self):
            self.calls = []

        def sample(self, x=None, n_steps=None, generator=None, model_kwargs=None):
            self.calls.append((n_steps, generator, model_kwargs))
            return x + 1

    s = FakeSampler()
    g = torch.Generator()
    res = ReflowCoupling(s, n_steps=7)(
        torch.zeros(2, 2), torch.zeros(2, 2), generator=g, y=torch.ones(2)
    )
    assert torch.equal(res.x1, torch.ones(2, 2))
    assert s.calls[0][0] == 7 and s.calls[0][1] is g and "y" in s.calls[0][2]
    with pytest.raises(ValueError, match="n_steps"):
        ReflowCoupling(s, n_steps=0)
    with pytest.raises(TypeError):
        ReflowCoupling(3)


@pytest.mark.parametrize(
    ("flow", "got"),
    [
        (lambda x0: x0.flatten(1), (3, 8)),  # flattened image
        (lambda x0: x0.flatten(1).sum(1, keepdim=True), (3, 1)),  # (B, 1): would broadcast
    ],
)
def test_reflow_rejects_a_flow_output_not_shaped_like_x0(flow, got):
    from torchebm.core.errors import ShapeError
    from torchebm.flows import EquilibriumMatchingLoss

    x0 = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(
        ShapeError,
        match=re.escape("ReflowCoupling: the model must map x0 of shape (3, 2, 2, 2) to a tensor")
        + re.escape(f" of the same shape, got {got}"),
    ):
        ReflowCoupling(flow)(x0)

    # inside a loss the error names the coupling, not the interpolant's x0/x1 mismatch
    loss = EquilibriumMatchingLoss(lambda x, t: x, coupling=ReflowCoupling(flow))
    with pytest.raises(ShapeError, match="ReflowCoupling"):
        loss(torch.randn(3, 2, 2, 2))
    # a per-sample map of images is kept row by row: x1[i] = 2 x0[i] + i
    x0, x1 = ReflowCoupling(lambda z: 2 * z + torch.arange(3.0).reshape(3, 1, 1, 1))(x0)
    for i in range(3):
        assert torch.equal(x1[i], 2 * x0[i] + i)


@pytest.mark.parametrize(
    ("x0", "error", "match"),
    [
        (torch.ones(4, 2, dtype=torch.long), TypeError, "x0 must have a floating-point dtype"),
        (torch.ones(0, 2), ValueError, r"x0 must have a non-empty batch, got shape \(0, 2\)"),
        (torch.tensor(1.0), ValueError, "x0 must have at least 1 dimensions"),
    ],
)
def test_reflow_checks_x0_as_the_cost_couplings_do(x0, error, match):
    # ReflowCoupling ran the flow on an integer, empty or 0-d x0 (an integer pair came back)
    calls = []
    flow = lambda z: calls.append(z) or 2 * z  # noqa: E731
    for coupling in (ExactOTCoupling(), ReflowCoupling(flow)):
        with pytest.raises(error, match=match):
            coupling(x0, x0.clone())
    assert not calls  # refused before the flow ran


def test_result_and_validation():
    res = CouplingResult(torch.zeros(2, 1), torch.ones(2, 1))
    x0, x1 = res
    assert res.weights is None and torch.equal(x1, torch.ones(2, 1))
    with pytest.raises(ValueError, match="Coupling requires equal batch sizes"):
        ExactOTCoupling()(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="x1 must not be None"):
        IndependentCoupling()(torch.zeros(3, 2))
    with pytest.raises(TypeError, match="process_group"):
        ExactOTCoupling(process_group=object())
    with pytest.raises(ValueError, match="reg"):
        SinkhornCoupling(reg=0.0)
    with pytest.raises(ValueError, match="n_iters"):
        SinkhornCoupling(n_iters=0)
    one = ExactOTCoupling()(torch.zeros(1, 2), torch.ones(1, 2))
    assert torch.equal(one.x1, torch.ones(1, 2))
    # coupled tensors carry no graph
    a = torch.randn(8, 2, requires_grad=True)
    assert not ExactOTCoupling()(a, torch.randn(8, 2)).x1.requires_grad


def test_registry():
    for name in COUPLING_NAMES:
        assert isinstance(get_coupling(name), BaseCoupling)
    assert isinstance(get_coupling("ot"), ExactOTCoupling)
    with pytest.raises(ValueError, match="Unknown coupling 'nope'. Valid names"):
        get_coupling("nope")
    with pytest.raises(TypeError, match="EqM requires a BaseCostCoupling; got IndependentCoupling"):
        resolve_coupling("independent", default="ot", owner="EqM", family=BaseCostCoupling)
    assert isinstance(resolve_coupling(None, default="greedy", owner="X"), GreedyCoupling)


@pytest.mark.parametrize("name", ["ot", "sinkhorn", "greedy", "unbalanced_sinkhorn"])
def test_a_reordering_coupling_says_which_rows_of_x1_it_returns(name):
    # per-sample conditioning (labels) of x1 must follow its rows: index names them
    x0, x1 = torch.randn(16, 2), torch.randn(16, 2) + 3.0
    res = get_coupling(name)(x0, x1, generator=torch.Generator().manual_seed(0))
    assert res.index is not None and res.index.shape == (16,)
    assert torch.equal(res.x1, x1[res.index])


def test_couplings_that_keep_x1_in_order_give_no_index():
    x0, x1 = torch.randn(5, 2), torch.randn(5, 2)
    assert IndependentCoupling()(x0, x1).index is None
    assert ExactOTCoupling()(x0[:1], x1[:1]).index is None  # one pair: x1 as given
    assert ReflowCoupling(lambda z: 2 * z)(x0).index is None  # generated from x0


def test_images_and_conditioning_kwargs_are_accepted():
    x0, x1 = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    for name in COUPLING_NAMES:
        res = get_coupling(name)(
            x0, x1, generator=torch.Generator().manual_seed(0), y=torch.arange(6)
        )
        assert res.x1.shape == x1.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_exact_ot_on_cuda_matches_cpu():
    g = torch.Generator().manual_seed(7)
    x0, x1 = torch.randn(128, 2, generator=g), torch.randn(128, 2, generator=g)
    cpu = ExactOTCoupling()(x0, x1).x1
    gpu = ExactOTCoupling()(x0.cuda(), x1.cuda()).x1
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu)


def test_sinkhorn_plans_match_scaling_form_reference():
    # the conventions the docstrings state: reg on the cost over its maximum, uniform
    # marginals; the unbalanced plan's row masses (over their mean) are the weights
    g = torch.Generator().manual_seed(11)
    x0 = torch.randn(40, 2, generator=g, dtype=torch.float64)
    x1 = 1.5 * torch.randn(40, 2, generator=g, dtype=torch.float64) + 1.0
    reg = 0.1
    sk = SinkhornCoupling(reg=reg, n_iters=1000)
    plan = sk._plan(sk.compute_cost(x0, x1))
    ref = scaling_sinkhorn(x0, x1, reg, 1.0, 1000)
    assert torch.allclose(plan, ref, rtol=1e-8, atol=1e-12 * ref.max().item())
    rho = 0.5
    res = UnbalancedSinkhornCoupling(reg=reg, reg_marginal=rho, n_iters=1000)(
        x0, x1, generator=torch.Generator().manual_seed(0)
    )
    ref_u = scaling_sinkhorn(x0, x1, reg, rho / (rho + reg), 1000)
    mass = ref_u.sum(1)
    assert abs(ref_u.sum().item() - 1.0) > 0.05  # the relaxed plan does not keep mass 1
    assert torch.allclose(res.weights, mass / mass.mean(), rtol=1e-8)


def test_unbalanced_sinkhorn_gives_weights_for_a_batch_of_one():
    # weights are the row masses normalised to mean 1: one row has weight 1 (it returned
    # None at B = 1, so code reading res.weights failed only for a batch of one)
    x0, x1 = torch.randn(1, 2, dtype=torch.float64), torch.randn(1, 2, dtype=torch.float64)
    res = UnbalancedSinkhornCoupling()(x0, x1)
    assert torch.equal(res.weights, torch.ones(1, dtype=torch.float64))
    assert torch.equal(res.x0, x0) and torch.equal(res.x1, x1)
