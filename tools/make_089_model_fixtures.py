r"""Write checkpoints of torchebm 0.8.9's model classes for the compatibility tests.

Imports torchebm 0.8.9 from an unpacked wheel (the folder holding ``torchebm/``, put first
on ``sys.path``), builds tiny configurations with a fixed seed, replaces every parameter
with seeded noise (0.8.9 zero-initialises its heads, which would make every output zero),
and saves, per case: the class name, constructor keywords, ``state_dict``, inputs and the
0.8.9 output (eval mode). ``tests/models/test_checkpoints_089.py`` loads each
``state_dict`` into this project's class of the same name with a strict
``load_state_dict`` and compares outputs. It also saves the state dicts of a 0.8.9
scheduler, sampler, contrastive-divergence loss (with its replay buffer) and EqM loss,
which load here with ``strict=False``. Run once, commit the small output file::

    python tools/make_089_model_fixtures.py /path/to/torchebm-0.8.9 \
        -o tests/models/fixtures/models_089.pt
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

import torch

SEED = 1234


def _cases() -> list[tuple[str, str, dict, dict]]:
    """(case, class name in torchebm.models, constructor kwargs, inputs)."""
    g = torch.Generator().manual_seed(SEED)

    def rn(*shape):
        return torch.randn(*shape, generator=g)

    img = rn(3, 2, 8, 8)
    t = torch.rand(3, generator=g)
    y = torch.tensor([0, 2, 1])
    dit = dict(input_size=8, in_channels=2, patch_size=4, embed_dim=8, depth=1, num_heads=2)
    return [
        ("dit_labels", "DiT", {**dit, "num_classes": 3}, {"x": img, "t": t, "y": y}),
        (
            "dit_rect_learnable_head",
            "DiT",
            {
                **dit,
                "input_size": (8, 4),
                "out_channels": 3,
                "pos_embed": "learnable",
                "head_dim": 4,
                "head_depth": 1,
                "cond_dim": 6,
            },
            {"x": rn(3, 2, 8, 4), "t": t, "cond": rn(3, 6)},
        ),
        (
            "conditional_transformer_2d",
            "ConditionalTransformer2D",
            {
                "in_channels": 2,
                "out_channels": 2,
                "input_size": 8,
                "patch_size": 4,
                "embed_dim": 8,
                "depth": 1,
                "num_heads": 2,
                "cond_dim": 8,
            },
            {"x": img, "cond": rn(3, 8)},
        ),
        (
            "time_conditioned_mlp",
            "TimeConditionedMLP",
            {"in_dim": 2, "hidden_dim": 8, "depth": 2, "num_classes": 3},
            {"x": rn(3, 2), "t": t, "y": y},
        ),
        ("feed_forward", "FeedForward", {"embed_dim": 8}, {"x": rn(3, 5, 8)}),
        (
            "attention",
            "MultiheadSelfAttention",
            {"embed_dim": 8, "num_heads": 2},
            {"x": rn(3, 5, 8)},
        ),
        (
            "adaln_zero_block",
            "AdaLNZeroBlock",
            {"embed_dim": 8, "num_heads": 2, "cond_dim": 6},
            {"x": rn(3, 5, 8), "cond": rn(3, 6)},
        ),
        (
            "adaln_zero_patch_head",
            "AdaLNZeroPatchHead",
            {"embed_dim": 8, "patch_size": 2, "out_channels": 2, "grid_size": (2, 3)},
            {"tokens": rn(3, 6, 8), "cond": rn(3, 8)},
        ),
        (
            "adaln_zero_mlp_block",
            "AdaLNZeroMLPBlock",
            {"embed_dim": 8, "cond_dim": 6},
            {"x": rn(3, 8), "cond": rn(3, 6)},
        ),
        (
            "adaln_zero_linear_head",
            "AdaLNZeroLinearHead",
            {"embed_dim": 8, "out_dim": 3},
            {"x": rn(3, 8), "cond": rn(3, 8)},
        ),
        (
            "label_embedder",
            "LabelEmbedder",
            {"num_classes": 3, "out_dim": 4, "null_token": True},
            {"labels": y},
        ),
        ("timestep_embedder", "MLPTimestepEmbedder", {"out_dim": 4}, {"t": t}),
    ]


def _call(model, inputs: dict) -> torch.Tensor:
    if type(model).__name__ == "LabelEmbedder":
        return model(inputs["labels"], training=False)
    args = list(inputs.values())
    if "cond" in inputs and type(model).__name__ == "DiT":
        return model(inputs["x"], inputs["t"], cond=inputs["cond"])
    return model(*args)


def _states() -> dict:
    """State dicts of a 0.8.9 scheduler, sampler and losses (loaded here with strict=False)."""
    core = importlib.import_module("torchebm.core")
    samplers = importlib.import_module("torchebm.samplers")
    losses = importlib.import_module("torchebm.losses")
    sched_kwargs = {"start_value": 1.0, "end_value": 0.1, "n_steps": 10}
    sched = core.CosineScheduler(**sched_kwargs)
    for _ in range(3):
        sched.step()
    torch.manual_seed(SEED)
    model = core.DoubleWellModel()
    sampler = samplers.LangevinDynamics(model, step_size=0.01)
    cd = losses.ContrastiveDivergence(model, sampler, k_steps=2, persistent=True, buffer_size=16)
    cd.initialize_buffer((2,), generator=torch.Generator().manual_seed(SEED))
    cd.buffer_ptr.fill_(5)
    field = torch.nn.Linear(2, 2)
    eqm = losses.EquilibriumMatchingLoss(field)
    return {
        "scheduler": {
            "cls": "CosineScheduler",
            "kwargs": sched_kwargs,
            "state": sched.state_dict(),
        },
        "sampler": {"state": {k: v.clone() for k, v in sampler.state_dict().items()}},
        "cd_loss": {"state": {k: v.clone() for k, v in cd.state_dict().items()}},
        "eqm_loss": {"state": {k: v.clone() for k, v in eqm.state_dict().items()}},
    }


def build(wheel_root: Path) -> dict:
    """Every case, computed with the torchebm 0.8.9 found under ``wheel_root``."""
    sys.path.insert(0, str(wheel_root))
    for name in [m for m in sys.modules if m == "torchebm" or m.startswith("torchebm.")]:
        del sys.modules[name]
    models = importlib.import_module("torchebm.models")
    version = importlib.import_module("torchebm").__version__
    out = {"source": f"torchebm {version}", "seed": SEED, "cases": {}}
    for case, cls_name, kwargs, inputs in _cases():
        torch.manual_seed(SEED)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model = getattr(models, cls_name)(**kwargs).eval()
        g = torch.Generator().manual_seed(SEED)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            output = _call(model, inputs)
        out["cases"][case] = {
            "cls": cls_name,
            "kwargs": kwargs,
            "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
            "inputs": inputs,
            "output": output,
        }
    out["states"] = _states()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel_root", type=Path, help="folder that contains torchebm/ (0.8.9)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    data = build(args.wheel_root.resolve())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, args.output)
    print(f"{len(data['cases'])} cases from {data['source']}: {args.output.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
