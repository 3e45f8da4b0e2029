"""Warnings of the losses and trainers name the user's line (not torch's ``Module.__call__``,
a subclass's ``__init__`` or the trainer), and a deprecation is shown under Python's
default filters when the user's script calls the loss."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import torch
from _support.losses import TinyLangevin
from torch import nn

from torchebm.core import BaseModel
from torchebm.core._module import _WARNED
from torchebm.losses import (
    BaseTrainer,
    ContrastiveDivergence,
    ContrastiveDivergenceTrainer,
    DenoisingScoreMatching,
    FlowMatchingLoss,
)


class _Velocity(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x, t, **conditioning):
        return self.lin(torch.cat([x, t.reshape(-1, 1).expand(x.shape[0], 1)], 1))


class _Energy(BaseModel):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x, y=None):
        return self.lin(x).squeeze(-1) + x.square().sum(-1)


def _only(caught, text):
    hits = [w for w in caught if text in str(w.message)]
    assert len(hits) == 1, [str(w.message) for w in caught]
    return hits[0]


def _fresh_bare_kwargs_loss():
    """A flow-matching loss and a batch, with its once-per-process bare-keyword warnings
    (keyed by the names passed) forgotten."""
    for key in [k for k in _WARNED if k.startswith("FlowMatchingLoss.bare_model_kwargs")]:
        _WARNED.discard(key)
    return FlowMatchingLoss(_Velocity()), torch.randn(8, 2)


def test_bare_conditioning_deprecation_names_the_loss_call():
    loss, x = _fresh_bare_kwargs_loss()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        loss(x, label=1)  # was attributed to torch/nn/modules/module.py

    w = _only(caught, "bare keyword arguments")
    assert w.category is DeprecationWarning and "model_kwargs={...}" in str(w.message)
    assert (w.filename, w.lineno) == (__file__, line)


def test_bare_conditioning_deprecation_is_shown_to_a_script(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn
            from torchebm.losses import FlowMatchingLoss

            class V(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.lin = nn.Linear(3, 2)

                def forward(self, x, t, **kw):
                    return self.lin(torch.cat([x, t.reshape(-1, 1)], 1))

            FlowMatchingLoss(V())(torch.randn(4, 2), label=1)
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True
    )  # default warning filters: a DeprecationWarning is shown only when it names __main__
    line = (
        script.read_text().splitlines().index("FlowMatchingLoss(V())(torch.randn(4, 2), label=1)")
    )
    assert f"{script}:{line + 1}: DeprecationWarning: passing conditioning" in out.stderr


def test_single_label_batch_warning_names_the_loss_call():
    loss = DenoisingScoreMatching(_Energy(), noise_scale=0.1)
    labels = torch.zeros(4, dtype=torch.long)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        loss(torch.randn(4, 2), model_kwargs={"y": labels})  # was _base_score_matching.py

    w = _only(caught, "single y value")
    assert (w.filename, w.lineno) == (__file__, line)


def test_non_finite_loss_warning_names_the_loss_call_every_time():
    model = _Energy()
    loss = ContrastiveDivergence(model, TinyLangevin(model, step_size=0.01), nan_policy="warn")
    x = torch.full((4, 2), 1e30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        loss(x)  # was torch/nn/modules/module.py (one location shared by every loss)

    w = _only(caught, "non-finite loss")
    assert w.category is RuntimeWarning and (w.filename, w.lineno) == (__file__, line)


def test_trainer_warnings_name_the_users_call():
    model = _Energy()
    sampler = TinyLangevin(model, step_size=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        ContrastiveDivergenceTrainer(model, sampler, use_mixed_precision=True)  # was _trainers.py
    w = _only(caught, "use_mixed_precision requires CUDA")
    assert (w.filename, w.lineno) == (__file__, line)

    loss = ContrastiveDivergence(model, sampler, nan_policy="ignore")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = BaseTrainer(model, opt, loss, nan_policy="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        trainer.train_step(torch.full((4, 2), 1e30))  # was _base_trainer.py (no stacklevel)
    w = _only(caught, "nan_policy='skip'")
    assert w.category is RuntimeWarning and (w.filename, w.lineno) == (__file__, line)
    assert trainer.skipped_steps == 1


def test_bare_conditioning_with_other_names_warns_again():
    # the once-per-process key was the loss's alone: bare `label=` warned, a later bare
    # `scale=` (other names) did not
    loss, x = _fresh_bare_kwargs_loss()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss(x, label=1)
        loss(x, label=2)  # the same names: once
        loss(x, scale=3)
    texts = [str(w.message) for w in caught if "bare keyword arguments" in str(w.message)]
    assert len(texts) == 2 and "['label']" in texts[0] and "['scale']" in texts[1], texts
