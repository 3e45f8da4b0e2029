"""The flow objectives that differentiate their model in ``x`` (Energy Matching's flow term
and chains, EqM's explicit energies) evaluated as a validation loss under
``torch.no_grad()`` or ``torch.inference_mode()``: the value of grad mode (here against
the closed form of a quadratic potential / linear field), with no autograd history; also
with labels ``y`` read by an ``nn.Embedding`` and made under inference mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.flows import EnergyMatchingLoss, EquilibriumMatchingLoss

F64 = torch.float64
T = torch.tensor([0.1, 0.5, 0.85, 0.95, 0.3, 0.7], dtype=F64)  # both sides of t_c = 0.8
CONTEXTS = [torch.enable_grad, torch.no_grad, torch.inference_mode]


def fixed_times(batch, *, device, dtype, generator):
    return T.to(device=device, dtype=dtype)


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, dtype=F64, generator=g), torch.randn(6, 3, dtype=F64, generator=g)


class Quadratic(nn.Module):
    """V(x) = a/2 |x|^2 (no ``gradient`` method: the loss differentiates it by autograd)."""

    def __init__(self, a: float = 0.7):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=F64))

    def forward(self, x):
        return 0.5 * self.a * x.square().sum(-1)


class LinearField(nn.Module):
    """f(x, t) = W x + t b: autograd saves t (the loss's t = 0, made under inference mode)."""

    def __init__(self):
        super().__init__()
        w = [[0.5, -0.2, 0.1], [0.3, 0.8, -0.4], [0.0, 0.6, 1.1]]
        self.W = nn.Parameter(torch.tensor(w, dtype=F64))
        self.b = nn.Parameter(torch.tensor([0.3, -0.1, 0.2], dtype=F64))

    def forward(self, x, t):
        return x @ self.W.T + t[:, None] * self.b


class LabelledPotential(nn.Module):
    """V(x | y) = 1/2 |x - emb(y)|^2 + a |x|^2: autograd saves the labels of the embedding."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(3, 3, dtype=F64)
        self.a = nn.Parameter(torch.tensor(0.2, dtype=F64))

    def forward(self, x, y):
        return 0.5 * (x - self.emb(y)).square().sum(-1) + self.a * x.square().sum(-1)


def _check(value, reference, context):
    assert value.requires_grad == (context is torch.enable_grad)
    assert (value.grad_fn is not None) == (context is torch.enable_grad)
    torch.testing.assert_close(value.detach(), torch.as_tensor(reference, dtype=F64))


@pytest.mark.parametrize("context", CONTEXTS)
def test_energy_matching_flow_term_closed_form(context):
    x1, x0 = _data()
    a, tc = 0.7, 0.8
    ref = 0.0  # mean_i w(t_i) mean_d (-a x_t - (x1 - x0))^2, x_t = t x1 + (1 - t) x0
    for i, t in enumerate(T.tolist()):
        xt, u = t * x1[i] + (1 - t) * x0[i], x1[i] - x0[i]
        ref += min(max((1 - t) / (1 - tc), 0.0), 1.0) * float((-a * xt - u).square().mean())
    loss = EnergyMatchingLoss(
        Quadratic(a), coupling="independent", sigma=0.0, lambda_cd=0.0, t_sampler=fixed_times,
        flow_weight_cutoff=tc, dtype=F64,
    )  # fmt: skip
    with context():
        value = loss(x1, x0=x0)
    _check(value, ref / 6, context)


@pytest.mark.parametrize("energy_type", ["dot", "l2"])
@pytest.mark.parametrize("context", CONTEXTS)
def test_eqm_explicit_energy_closed_form(context, energy_type):
    x1, x0 = _data()
    loss = EquilibriumMatchingLoss(
        LinearField(), energy_type=energy_type, t_sampler=fixed_times, dtype=F64
    )
    w = loss.model.W.detach()
    # time_invariant: the field is evaluated at t = 0, f = W x, so grad g = (W + W^T) x
    # ("dot") or -W^T W x ("l2"); target -c(t) (x1 - x0)
    ref = 0.0
    for i, t in enumerate(T.tolist()):
        xt, u = t * x1[i] + (1 - t) * x0[i], x1[i] - x0[i]
        grad = (w + w.T) @ xt if energy_type == "dot" else -(w.T @ (w @ xt))
        ref += float((grad + 4.0 * min(1.0, (1 - t) / 0.2) * u).square().mean())
    with context():
        value = loss(x1, x0=x0)
    _check(value, ref / 6, context)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_energy_matching_with_negatives_equals_grad_mode(context):
    # the contrastive term runs Langevin chains through grad_x V (autograd) and the OT
    # coupling permutes the labels: same draws from the same seed, so the same value
    torch.manual_seed(0)
    model = LabelledPotential()
    loss = EnergyMatchingLoss(model, lambda_cd=1.0, n_langevin_steps=3, dtype=F64)
    x = torch.randn(8, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    ref = loss(x, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(2))
    with context():
        value = loss(x, model_kwargs={"y": y.clone()}, generator=torch.Generator().manual_seed(2))
    _check(value, ref.detach(), context)


def _param_grads(loss, x, **kw):
    loss.model.zero_grad()
    loss(x, generator=torch.Generator().manual_seed(3), **kw).backward()
    return [p.grad.clone() for p in loss.model.parameters()]


@pytest.mark.parametrize(
    "make",
    [
        lambda: EnergyMatchingLoss(
            Quadratic(),
            coupling="independent",
            lambda_cd=0.5,
            n_langevin_steps=2,
            cd_clamp=None,
            dtype=F64,
        ),
        lambda: EquilibriumMatchingLoss(LinearField(), energy_type="dot", dtype=F64),
        lambda: EquilibriumMatchingLoss(LinearField(), energy_type="l2", dtype=F64),
    ],
)
def test_a_back_propagated_eval_mode_loss_has_the_training_gradient(make):
    # an eval-mode loss (loss.eval(), e.g. in a validation hook, then training resumed
    # without .train()) dropped grad_x V's dependence on the parameters: Energy Matching
    # trained on its contrastive term alone (parameter gradient 2.12 for 4.51), EqM's
    # explicit energies raised "the loss does not require grad"
    x = _data()[0]
    loss = make()
    train = _param_grads(loss, x)
    loss.eval()
    evaluated = _param_grads(loss, x)
    for a, b in zip(train, evaluated, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    assert max(float(a.abs().max()) for a in train) > 1e-3  # (EqM's b: 0, the field at t = 0)


def test_energy_matching_trains_on_data_made_under_inference_mode():
    # the contrastive term (lambda_cd > 0, after the warm-up) called the model on the
    # inference tensor: "Inference tensors cannot be saved for backward", mid-run
    class LinearPotential(LabelledPotential):  # nn.Linear saves its input x for backward
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3, dtype=F64)

        def forward(self, x, y):
            return super().forward(self.lin(x), y)

    torch.manual_seed(0)
    model = LinearPotential()
    loss = EnergyMatchingLoss(model, lambda_cd=1.0, n_langevin_steps=2, cd_clamp=None, dtype=F64)
    with torch.inference_mode():
        x = torch.randn(8, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
        y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    grads = []
    for xs, ys in ((x, y), (x.clone(), y.clone())):
        model.zero_grad()
        loss(xs, model_kwargs={"y": ys}, generator=torch.Generator().manual_seed(2)).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


def test_a_namedtuple_in_the_conditioning_reaches_the_model_as_itself():
    # the inference-mode copy rebuilt every tuple as a plain one: a NamedTuple lost its fields
    import collections

    pair = collections.namedtuple("Pair", "scale shift")

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(0.7, dtype=F64))

        def forward(self, x, cond):
            return 0.5 * self.a * (cond.scale * x + cond.shift).square().sum(-1)

    x = _data()[0]
    loss = EnergyMatchingLoss(Scaled(), lambda_cd=1.0, n_langevin_steps=2, cd_clamp=None, dtype=F64)
    with torch.inference_mode():  # its fields made under inference mode: copied for autograd
        cond = {"cond": pair(torch.ones(6, 1, dtype=F64), torch.zeros(6, 1, dtype=F64))}
    loss(x, model_kwargs=cond, generator=torch.Generator().manual_seed(0)).backward()
