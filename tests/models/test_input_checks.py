"""Model entry points name a bad input instead of torch's traceback from deep inside.

Before the fix: `TimeConditionedMLP` with an input of the wrong width failed in `addmm`
("mat1 and mat2 shapes cannot be multiplied"), `DiT` with float64 images in the
convolution ("Input type (double) and bias type (float)"), `MLPEnergy` with float64 input
in `addmm`, a label out of range in `nn.Embedding` ("index out of range in self") and
`BaseModel.gradient([...])` with an `AttributeError`.
"""

from __future__ import annotations

import pytest
import torch

from torchebm.core import BaseModel
from torchebm.core.errors import ConfigurationError, ShapeError
from torchebm.models import DiT, MLPEnergy, TimeConditionedMLP
from torchebm.models.components import LabelEmbedder


def _dit(**kw):
    torch.manual_seed(0)
    return DiT(input_size=8, in_channels=3, patch_size=2, embed_dim=16, depth=1, num_heads=2, **kw)


@pytest.mark.parametrize("conditioning", ["adaln_zero", "concat"])
def test_time_conditioned_mlp_names_a_bad_input(conditioning):
    net = TimeConditionedMLP(in_dim=2, hidden_dim=16, depth=1, conditioning=conditioning)
    t = torch.rand(4)
    for bad in (torch.randn(4, 3), torch.randn(4, 2, 2), torch.randn(4)):
        shape = str(tuple(bad.shape)).replace("(", r"\(").replace(")", r"\)")
        with pytest.raises(
            ShapeError, match=rf"TimeConditionedMLP expects x of shape \(B, 2\), got {shape}"
        ):
            net(bad, t)
    with pytest.raises(TypeError, match=r"dtype torch.float32, got torch.float64.*model.to"):
        net(torch.randn(4, 2, dtype=torch.float64), t)
    with pytest.raises(TypeError, match="expects x to be a torch.Tensor, got list"):
        net([[0.0, 1.0]], t)
    assert net.double()(torch.randn(4, 2, dtype=torch.float64), t.double()).dtype == torch.float64


def test_dit_names_a_bad_input():
    net, t = _dit(), torch.rand(2)
    with pytest.raises(
        ShapeError, match=r"DiT expects x of shape \(B, 3, \*, \*\), got \(3, 8, 8\)"
    ):
        net(torch.randn(3, 8, 8), t)
    with pytest.raises(ShapeError, match=r"got \(2, 8, 8, 3\)"):  # channels last
        net(torch.randn(2, 8, 8, 3), t)
    with pytest.raises(TypeError, match="parameters' dtype torch.float32, got torch.float64"):
        net(torch.randn(2, 3, 8, 8, dtype=torch.float64), t)
    with pytest.raises(
        TypeError, match=r"got torch.int64: cast the input \(x.to\(torch.float32\)\)$"
    ):
        net(torch.zeros(2, 3, 8, 8, dtype=torch.long), t)


def test_autocast_still_takes_float32_input_into_low_precision_weights():
    net, x = _dit(num_classes=4).to(torch.bfloat16), torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(x, torch.rand(2), torch.tensor([1, 2])).shape == x.shape
        assert MLPEnergy(2, (8,)).to(torch.bfloat16)(torch.randn(4, 2)).shape == (4,)


def test_mlp_energy_names_a_float64_input_and_its_gradient_too():
    energy = MLPEnergy(2, (8,))
    x = torch.randn(4, 2, dtype=torch.float64)
    for call in (energy, energy.gradient):
        with pytest.raises(
            TypeError,
            match="MLPEnergy expects x of its parameters' dtype torch.float32, got torch.float64",
        ):
            call(x)
    assert energy.double().gradient(x).dtype == torch.float64


@pytest.mark.parametrize("null_token", [False, True])
def test_labels_out_of_range_are_named(null_token):
    emb = LabelEmbedder(4, 8, null_token=null_token)
    top = 4 + null_token  # ids 0..3, and 4 when the table has the null class
    assert emb(torch.arange(top), training=False).shape == (top, 8)
    for bad, at in ((torch.tensor([1, top]), 1), (torch.tensor([-1, 2]), 0)):
        with pytest.raises(
            ConfigurationError,
            match=rf"labels must be class ids in \[0, {top}\).* got {int(bad[at])} at index {at}",
        ):
            emb(bad, training=False)
    if not null_token:  # the CFG null label of a table without one says how to get it
        with pytest.raises(ConfigurationError, match="no null class: build the model with"):
            emb(torch.tensor([0, 4]), training=False)


def test_dit_labels_out_of_range_are_named():
    net = _dit(num_classes=4)
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    assert net(x, t, torch.tensor([4, 0])).shape == x.shape  # 4: the null class
    with pytest.raises(
        ConfigurationError, match=r"\[0, 5\), got 7 at index 0 \(4 is the null class\)"
    ):
        net(x, t, torch.tensor([7, 1]))


def test_base_model_gradient_names_a_non_tensor():
    class Quadratic(BaseModel):
        def forward(self, x):
            return 0.5 * x.square().sum(-1)

    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        Quadratic().gradient([[0.0, 1.0]])
    with pytest.raises(ShapeError, match="got a scalar"):
        Quadratic().gradient(torch.tensor(1.0))
    x = torch.tensor([[0.5, -1.0]])
    torch.testing.assert_close(Quadratic().gradient(x), x)
    torch.testing.assert_close(Quadratic().gradient(x[0]), x[0])  # one sample, 1-D


def test_times_with_several_values_per_row_are_named():
    """``t`` of shape (B, 2) used to be flattened into 2B embeddings (torch's broadcasting
    error further on); (B,), (B, 1) and a 0-d time are the accepted forms."""
    net = TimeConditionedMLP(in_dim=2, hidden_dim=16, depth=1)
    x = torch.randn(4, 2)
    with pytest.raises(ShapeError, match=r"t must hold one time per row.*\(4, 2\)"):
        net(x, torch.rand(4, 2))
    with pytest.raises(ShapeError, match=r"t must hold one time per row.*\(4, 2\)"):
        _dit()(torch.randn(4, 3, 8, 8), torch.rand(4, 2))
    t = torch.rand(4)
    torch.testing.assert_close(net(x, t[:, None]), net(x, t))
    torch.testing.assert_close(net(x, torch.tensor(0.3)), net(x, torch.full((4,), 0.3)))


def test_velocity_and_transformer_name_a_float64_input():
    from torchebm.models import ConditionalTransformer2D, MLPVelocity
    from torchebm.models._mlp import fourier_time_features

    v = MLPVelocity(input_dim=2, hidden_dims=(8,))
    with pytest.raises(TypeError, match=r"MLPVelocity expects x of its parameters' dtype"):
        v(torch.randn(4, 2, dtype=torch.float64), torch.rand(4))
    ct = ConditionalTransformer2D(
        in_channels=1,
        out_channels=1,
        input_size=4,
        patch_size=2,
        embed_dim=8,
        depth=1,
        num_heads=2,
    )
    with pytest.raises(TypeError, match=r"ConditionalTransformer2D expects x of its parameters"):
        ct(torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.rand(2))
    with pytest.raises(ValueError, match="n_frequencies must be >= 0"):
        fourier_time_features(torch.rand(3), -1)


def test_label_guidance_checks_the_null_class_of_its_base():
    from torchebm.models import LabelClassifierFreeGuidance

    base = _dit(num_classes=5)  # null class id 5
    with pytest.raises(ConfigurationError, match=r"null_label_id=4 differs .*DiT \(5\)"):
        LabelClassifierFreeGuidance(base, null_label_id=4)
    assert LabelClassifierFreeGuidance(base, null_label_id=5).null_label_id == 5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_vector_conditioning_of_another_float_dtype_is_cast_to_the_model(dtype):
    # cond= of float64 (or float16) features into a float32 model failed deep inside with
    # torch's "mat1 and mat2 must have the same dtype" (x of another dtype is named; t cast)
    torch.manual_seed(0)
    mlp = TimeConditionedMLP(in_dim=3, hidden_dim=16, depth=1, cond_dim=4)
    dit = DiT(
        input_size=4, patch_size=2, in_channels=1, embed_dim=32, depth=1, num_heads=2, cond_dim=4
    )
    cond = torch.randn(2, 4, generator=torch.Generator().manual_seed(1)).to(dtype)
    for model, x in ((mlp, torch.randn(2, 3)), (dit, torch.randn(2, 1, 4, 4))):
        t = torch.rand(2)
        out = model(x, t, cond=cond)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, model(x, t, cond=cond.float()), rtol=0, atol=0)


def test_labels_of_any_integer_dtype_are_taken_and_one_hot_labels_are_named():
    # uint8 labels passed the integer check and failed inside nn.Embedding ("Expected ...
    # Long, Int; but got torch.ByteTensor"); one-hot (B, C) labels were flattened to B * C ids
    torch.manual_seed(0)
    net = TimeConditionedMLP(in_dim=3, hidden_dim=16, depth=1, num_classes=3)
    x, t, y = torch.randn(6, 3), torch.rand(6), torch.tensor([0, 1, 2, 0, 1, 2])
    ref = net(x, t, y=y)
    for dtype in (torch.uint8, torch.int16, torch.int32):
        torch.testing.assert_close(net(x, t, y=y.to(dtype)), ref, rtol=0, atol=0)
    with pytest.raises(ShapeError, match=r"one class id per sample, .* got shape \(6, 3\)"):
        net(x, t, y=torch.nn.functional.one_hot(y, 3))
    torch.testing.assert_close(net(x, t, y=y[:, None]), ref, rtol=0, atol=0)  # (B, 1)
    assert net(x[:0], t[:0], y=y[:0, None]).shape == (0, 3)  # an empty batch, as before
