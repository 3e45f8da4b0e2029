"""`ClassifierFreeGuidance` with ``guide_channels``: the guided channels follow Ho & Salimans'
$f(\\varnothing) + w (f(y) - f(\\varnothing))$ and the others are the unconditional output."""

import torch
from torch import nn

from torchebm.models import ClassifierFreeGuidance


class Field(nn.Module):
    """f(x, t, y) = x (1 + y) + t per channel: both evaluations are known in closed form."""

    def forward(self, x, t, y):
        return x * (1 + y.to(x.dtype)[:, None]) + t[:, None]


def test_guided_channels_and_unguided_channels():
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
    y, w, c = torch.tensor([1, 2, 3, 4]), 2.5, 3
    cond = x * (1 + y[:, None]) + t[:, None]
    uncond = x + t[:, None]  # null label 0
    out = ClassifierFreeGuidance(Field(), guidance_scale=w, null_condition=0, guide_channels=c)(
        x, t, y
    )
    torch.testing.assert_close(out[:, :c], uncond[:, :c] + w * (cond[:, :c] - uncond[:, :c]))
    torch.testing.assert_close(out[:, c:], uncond[:, c:])


def test_label_guidance_of_vector_data_warns_that_it_guides_three_features():
    # the default guide_channels=3 (an image's colour channels) guided 3 of 5 features of a
    # (B, D) field: the sampled law jumped at cfg_scale 1 -> 1.0001 (features 3, 4: mean 0.90
    # and variance 1.30 for 1.5 and 0.25), silently
    import pytest

    from torchebm.models import LabelClassifierFreeGuidance

    x, t, y = (
        torch.randn(4, 5, dtype=torch.float64),
        torch.rand(4, dtype=torch.float64),
        torch.tensor([0, 1, 0, 1]),
    )
    cond, uncond = Field()(x, t, y), Field()(x, t, torch.full_like(y, 7))
    with pytest.warns(RuntimeWarning, match="guides the first 3 of the 5 features"):
        out = LabelClassifierFreeGuidance(Field(), null_label_id=7, cfg_scale=2.5)(x, t, y=y)
    torch.testing.assert_close(out[:, 3:], uncond[:, 3:])
    import warnings

    with warnings.catch_warnings():  # a guide_channels of the user's choice: no warning
        warnings.simplefilter("error")
        LabelClassifierFreeGuidance(Field(), null_label_id=7, cfg_scale=2.5, guide_channels=2)(
            x, t, y=y
        )
    everything = LabelClassifierFreeGuidance(
        Field(), null_label_id=7, cfg_scale=2.5, guide_channels=None
    )
    torch.testing.assert_close(everything(x, t, y=y), uncond + 2.5 * (cond - uncond))


def test_guidance_warnings_name_the_users_line():
    # both warned with stacklevel=1, at a library line (_wrappers.py, _conditioning.py)
    import warnings

    from torchebm.models import LabelClassifierFreeGuidance, TimeConditionedMLP

    x, t, y = torch.randn(4, 5), torch.rand(4), torch.tensor([0, 1, 0, 1])
    net = TimeConditionedMLP(in_dim=5, hidden_dim=8, num_classes=3, class_dropout_prob=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LabelClassifierFreeGuidance(net, null_label_id=3, cfg_scale=2.0)(x, t, y=y)
    messages = {str(w.message).split(" ")[0]: w.filename for w in caught}
    assert set(messages) == {"TimeConditionedMLP", "LabelClassifierFreeGuidance"}, messages
    assert set(messages.values()) == {__file__}
