r"""The ``torchebm demo`` jobs: train or sample a model on a 2-D dataset, report, plot.

Each demo is a function ``(DemoContext) -> DemoOutput`` built only from the public API
of the pieces (``torchebm.models``, ``.losses``, ``.samplers``, ``.interpolants``,
``.datasets``), in the way a user would write it. `run_demo` does the rest: data,
seeding, the quality report (energy distance and MMD to held-out data, against the
initial noise, from ``torchebm.metrics``; for the demos that learn an energy, the
negative log-likelihood of the held-out data with log Z by quadrature) and the PNG.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

import torch

from torchebm.cli._progress import Progress
from torchebm.core.errors import ConfigurationError
from torchebm.metrics import energy_distance, grid_log_partition, grid_nll, mmd2

__all__ = [
    "DEMOS",
    "DATASETS",
    "DemoSpec",
    "DemoContext",
    "DemoOutput",
    "DemoUsageError",
    "run_demo",
    "resolve_dataset",
]


class DemoUsageError(ValueError):
    """A demo option with a value the demo does not accept (the CLI's exit status 2); an
    error raised while the demo runs is not one and keeps its traceback."""


#: Datasets accepted by ``--dataset`` (the ``torchebm.datasets.make_<name>`` generators).
DATASETS = (
    "eight_gaussians",
    "two_moons",
    "gaussian_mixture",
    "swiss_roll",
    "circle",
    "checkerboard",
    "pinwheel",
    "two_spirals",
)


def resolve_dataset(name: str) -> str:
    """Canonical dataset name: case, ``-``/``_`` and a ``Dataset`` suffix are ignored."""
    key = name.lower().replace("-", "").replace("_", "")
    key = key.removesuffix("dataset")
    aliases = {"moons": "twomoons", "8gaussians": "eightgaussians", "spirals": "twospirals"}
    key = aliases.get(key, key)
    for d in DATASETS:
        if d.replace("_", "") == key:
            return d
    raise DemoUsageError(f"--dataset must be one of {list(DATASETS)}, got {name!r}")


@dataclass
class DemoContext:
    """What a demo gets: data, budget, device, randomness and a progress-bar factory."""

    train: torch.Tensor
    test: torch.Tensor
    steps: int
    n_samples: int
    device: torch.device
    generator: torch.Generator
    progress: Callable[[int, str], Progress]
    log: Callable[[str], None]

    def batch(self, size: int = 256) -> torch.Tensor:
        """A random training batch ``(size, 2)`` drawn with the demo's generator."""
        idx = torch.randint(
            0, self.train.shape[0], (size,), generator=self.generator, device=self.train.device
        )
        return self.train[idx]

    def noise(self, n: int, scale: float = 1.0) -> torch.Tensor:
        """``scale * N(0, I)`` starting points ``(n, 2)``."""
        return scale * torch.randn(
            n, 2, generator=self.generator, device=self.device, dtype=self.train.dtype
        )

    def start(self, spread: float | None = None) -> tuple[torch.Tensor, str]:
        """``(n_samples, 2)`` noise and its label; std 1, or ``spread`` x the data's std."""
        if spread is None:
            return self.noise(self.n_samples), "N(0, I) noise"
        scale = spread * float(self.train.std())
        return self.noise(self.n_samples, scale), f"N(0, {scale:.2f}^2 I) noise"


@dataclass
class DemoOutput:
    """What a demo returns to `run_demo`."""

    samples: torch.Tensor
    init: torch.Tensor
    init_label: str
    energy: Callable[[torch.Tensor], torch.Tensor] | None
    landscape_title: str
    landscape_kind: str = "log_density"
    history: dict[str, list[float]] = field(default_factory=dict)
    trajectories: torch.Tensor | None = None
    trajectory_title: str = ""
    notes: list[str] = field(default_factory=list)
    density_samples: torch.Tensor | None = None


@dataclass(frozen=True)
class DemoSpec:
    """A demo: what it does (one line), its function and its defaults."""

    title: str
    run: Callable[[DemoContext], DemoOutput]
    dataset: str
    steps: int
    steps_help: str


# --------------------------------------------------------------------------- helpers
def _train(
    demo: DemoContext,
    module: torch.nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    lr: float,
    *,
    cosine: bool = False,
    clip: float | None = None,
) -> list[float]:
    """``demo.steps`` Adam updates of ``module`` on ``loss_fn()`` (a fresh batch per call).

    ``cosine`` anneals the learning rate to 0 over the run; ``clip`` bounds the gradient norm.
    Returns the loss of every step.
    """
    params = list(module.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, demo.steps) if cosine else None
    losses: list[float] = []
    with demo.progress(demo.steps, "train") as bar:
        for _ in range(demo.steps):
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(loss.item())
            bar.update(loss=losses[-1])
    return losses


def _mcmc_in_chunks(
    demo: DemoContext, sampler: Any, x: torch.Tensor, n_steps: int, desc: str, **kw: Any
) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, list[torch.Tensor]]]:
    """Run a Markov chain sampler in ~20 chunks to show progress.

    Schedules are reset only before the first chunk, so the chunks continue one chain: the
    result is the chain of a single ``sample(n_steps=...)`` call. The trajectory keeps about
    5 evenly spaced states of each chunk, counted back from its last one, so that the
    chain's final state (the sample) is its last entry.
    """
    chunk = max(1, math.ceil(n_steps / 20))
    traj: list[torch.Tensor] = []
    diags: dict[str, list[torch.Tensor]] = {}
    with demo.progress(n_steps, desc) as bar:
        done = 0
        while done < n_steps:
            n = min(chunk, n_steps - done)
            out, diag = sampler.sample(
                x=x,
                n_steps=n,
                return_trajectory=True,
                return_diagnostics=True,
                reset_schedulers=done == 0,
                generator=demo.generator,
                **kw,
            )
            keep = torch.arange(n - 1, -1, -max(1, n // 5), device=out.device).flip(0)
            traj.append(out[:, keep])
            for k, v in diag.items():
                diags.setdefault(k, []).append(v)
            x = out[:, -1]
            done += n
            bar.update(n)
    return x, traj, diags


def _chains_from_noise(
    demo: DemoContext, sampler: Any, n_steps: int, spread: float | None = None
) -> tuple[dict[str, Any], list[torch.Tensor], dict[str, list[torch.Tensor]]]:
    """Run ``sampler`` for ``n_steps`` from `DemoContext.start` noise.

    Returns the `DemoOutput` fields ``samples``, ``init`` and ``init_label``, the
    trajectory chunks and the diagnostics of `_mcmc_in_chunks`.
    """
    x0, init_label = demo.start(spread)
    samples, traj, diags = _mcmc_in_chunks(demo, sampler, x0, n_steps, "sample")
    return {"samples": samples, "init": x0, "init_label": init_label}, traj, diags


# --------------------------------------------------------------------------- demos
def demo_eqm(demo: DemoContext) -> DemoOutput:
    """Equilibrium Matching: learn an energy whose gradient points from data to noise.

    A time-invariant MLP field $f(x)$ is trained with ``EquilibriumMatchingLoss``
    (explicit ``"dot"`` energy $E(x) = x \\cdot f(x)$); samples come from gradient
    descent on that energy (``GradientDescentSampler`` on ``EqMEnergy``).
    """
    from torchebm.losses import EquilibriumMatchingLoss
    from torchebm.models import EqMEnergy, MLPVelocity
    from torchebm.samplers import GradientDescentSampler

    field_net = MLPVelocity(2, (128, 128), time_conditioned=False).to(demo.device)
    loss_fn = EquilibriumMatchingLoss(field_net, energy_type="dot")
    # the EqM target holds the noise draw: large batches keep the gradient quiet
    losses = _train(
        demo,
        field_net,
        lambda: loss_fn(demo.batch(1024), generator=demo.generator),
        2e-3,
        cosine=True,
    )
    energy = EqMEnergy(field_net, "dot")
    sampler, n_steps = GradientDescentSampler(energy, step_size=0.01), 300
    run, traj, _ = _chains_from_noise(demo, sampler, n_steps)
    return DemoOutput(
        **run,
        energy=energy,
        landscape_kind="energy",
        landscape_title="EqM energy $E(x) = x\\cdot f(x)$",
        history={"EqM loss": losses},
        trajectories=torch.cat([run["init"][:, None], *traj], dim=1),
        trajectory_title="gradient descent on the learned energy",
        notes=[
            "sampler: GradientDescentSampler(EqMEnergy(field, 'dot'), "
            f"step_size={sampler.step_size}), {n_steps} steps"
        ],
    )


#: Hyper-parameters of `demo_cd` (module level so that they are easy to inspect).
CD_SETTINGS: dict[str, Any] = {
    "step_size": 0.005,
    "k_steps": 15,
    "lr": 2e-3,
    "energy_reg_weight": 0.1,
    "new_sample_ratio": 0.1,
    "restart_scale": 1.0,
    "clamp_scale": 1.5,
}


def demo_cd(demo: DemoContext) -> DemoOutput:
    """Persistent contrastive divergence with Langevin negatives on an MLP energy."""
    from torchebm.losses import ContrastiveDivergence
    from torchebm.models import MLPEnergy
    from torchebm.samplers import LangevinDynamics

    cfg = CD_SETTINGS
    radius = float(demo.train.abs().max())
    box = cfg["clamp_scale"] * radius
    model = MLPEnergy(2, (64, 64)).to(demo.device)
    # chains are kept in a box around the data; restarts from wide noise explore it all
    sampler = LangevinDynamics(
        model, step_size=cfg["step_size"], noise_scale=1.0, clamp=(-box, box)
    )
    loss_fn = ContrastiveDivergence(
        model,
        sampler,
        k_steps=cfg["k_steps"],
        persistent=True,
        buffer_size=4096,
        init_steps=0,
        new_sample_ratio=cfg["new_sample_ratio"],
        init_noise_scale=cfg["restart_scale"] * radius,
        energy_reg_weight=cfg["energy_reg_weight"],
    )
    losses = _train(
        demo,
        model,
        lambda: loss_fn(demo.batch(256), generator=demo.generator)[0],
        cfg["lr"],
        clip=1.0,
    )
    n_steps = 1000
    run, _, _ = _chains_from_noise(demo, sampler, n_steps, spread=1.0)
    return DemoOutput(
        **run,
        energy=model,
        landscape_title="CD-trained energy $E_\\theta(x)$",
        history={"CD loss": losses},
        notes=[
            f"training: PCD, {loss_fn.buffer_size} persistent chains, {loss_fn.k_steps} "
            f"Langevin steps per update, chains clamped to [-{box:.1f}, {box:.1f}]",
            f"sampling: LangevinDynamics(step_size={sampler.step_size}, "
            f"noise_scale={sampler.noise_scale}), {n_steps} steps from noise",
        ],
    )


def demo_hmc(demo: DemoContext) -> DemoOutput:
    """Denoising score matching trains an MLP energy; Hamiltonian Monte Carlo samples it."""
    from torchebm.losses import DenoisingScoreMatching
    from torchebm.models import MLPEnergy
    from torchebm.samplers import HamiltonianMonteCarlo

    model = MLPEnergy(2, (64, 64)).to(demo.device)
    loss_fn = DenoisingScoreMatching(model, noise_scale=0.1)
    losses = _train(demo, model, lambda: loss_fn(demo.batch(256), generator=demo.generator), 2e-3)
    sampler = HamiltonianMonteCarlo(model, step_size=0.05, n_leapfrog_steps=10)
    n_steps = 200
    run, traj, diags = _chains_from_noise(demo, sampler, n_steps, spread=2.0)
    acc = float(torch.cat(diags["acceptance_rate"]).mean())
    return DemoOutput(
        **run,
        energy=model,
        landscape_title="DSM-trained energy $E_\\theta(x)$",
        history={"DSM loss": losses},
        trajectories=torch.cat([run["init"][:8, None], *[t[:8] for t in traj]], dim=1)[:, :40],
        trajectory_title="HMC chains (first steps) on the learned energy",
        notes=[
            f"sampler: HamiltonianMonteCarlo(step_size={sampler.step_size}, "
            f"n_leapfrog_steps={sampler.n_leapfrog_steps}), {n_steps} steps",
            f"HMC mean acceptance rate: {acc:.3f}",
        ],
    )


def demo_flow(demo: DemoContext) -> DemoOutput:
    """Conditional flow matching (linear interpolant), sampled with ``FlowSampler`` (ODE)."""
    from torchebm.interpolants import LinearInterpolant
    from torchebm.models import MLPVelocity
    from torchebm.samplers import FlowSampler

    field_net = MLPVelocity(2, (128, 128)).to(demo.device)
    interpolant = LinearInterpolant()

    def flow_matching_loss() -> torch.Tensor:
        x1 = demo.batch(256)
        x0 = torch.randn(x1.shape, generator=demo.generator, device=x1.device, dtype=x1.dtype)
        t = torch.rand(x1.shape[0], generator=demo.generator, device=x1.device, dtype=x1.dtype)
        xt, ut = interpolant.interpolate(x0, x1, t)
        return (field_net(xt, t) - ut).pow(2).sum(-1).mean()

    losses = _train(demo, field_net, flow_matching_loss, 5e-3, cosine=True)
    sampler, n_steps = FlowSampler(field_net, interpolant=interpolant, integrator="heun"), 50
    x0, init_label = demo.start()
    with demo.progress(2, "sample") as bar:
        traj = cast(
            torch.Tensor,
            sampler.sample(x=x0, n_steps=n_steps, return_trajectory=True, generator=demo.generator),
        )
        bar.update()
        many = cast(
            torch.Tensor,
            sampler.sample(x=demo.noise(20000), n_steps=n_steps, generator=demo.generator),
        )
        bar.update()
    samples = traj[:, -1]
    return DemoOutput(
        samples=samples,
        init=x0,
        init_label=init_label,
        energy=None,
        landscape_title="model density (histogram of 20 000 samples)",
        history={"flow matching loss": losses},
        trajectories=torch.cat([x0[:, None], traj[:, 4::5]], dim=1),
        trajectory_title="probability-flow ODE paths (noise to data)",
        notes=[
            f"sampler: FlowSampler(field, interpolant='linear', integrator='heun'), {n_steps} steps"
        ],
        density_samples=many,
    )


DEMOS: dict[str, DemoSpec] = {
    "eqm": DemoSpec(
        "Equilibrium Matching: an energy landscape learned by EqM, sampled by gradient descent",
        demo_eqm,
        "eight_gaussians",
        3000,
        "training steps",
    ),
    "cd": DemoSpec(
        "persistent contrastive divergence with Langevin dynamics on an MLP energy",
        demo_cd,
        "two_moons",
        2000,
        "training steps",
    ),
    "hmc": DemoSpec(
        "denoising score matching, then Hamiltonian Monte Carlo on the learned energy",
        demo_hmc,
        "circle",
        2000,
        "training steps",
    ),
    "flow": DemoSpec(
        "conditional flow matching, sampled with FlowSampler's probability-flow ODE",
        demo_flow,
        "two_moons",
        8000,
        "training steps",
    ),
}


# --------------------------------------------------------------------------- driver
def _scores(x: torch.Tensor, test: torch.Tensor) -> tuple[float, float]:
    """Energy distance and MMD^2 (unbiased) of ``x`` to ``test``, in float64 on the CPU.

    The MMD mixes Gaussian kernels of bandwidths ``{0.05, 0.1, 0.2, 0.5, 1} * s`` with ``s``
    the RMS per-feature standard deviation of ``test``: the small ones see thin manifolds
    and narrow modes that a single median-heuristic kernel barely notices.
    """
    x, test = x.detach().to("cpu", torch.float64), test.detach().to("cpu", torch.float64)
    scale = float(test.var(dim=0).mean().sqrt()) or 1.0
    hs = [f * scale for f in (0.05, 0.1, 0.2, 0.5, 1.0)]
    return float(energy_distance(x, test)), float(mmd2(x, test, bandwidth=hs))


def _gaussian_fit(ref: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    r"""``len(ref)`` draws from $\mathcal N(\bar x, S)$, the mean and covariance of ``ref``
    ``(N, 2)``: the table's "Gaussian fit" row."""
    chol = torch.linalg.cholesky(torch.cov(ref.T.double())).float()
    return ref.mean(0) + torch.randn(ref.shape, generator=generator) @ chol.T


def _held_out_nll(
    energy: Callable[[torch.Tensor], torch.Tensor],
    test: torch.Tensor,
    ref: torch.Tensor,
    half: float,
) -> tuple[str, float | None]:
    """The table line with the grid NLL of the held-out data under the learned energy.

    The density is ``exp(-E) / Z`` on the square ``[-half, half]^2`` (where the demos train
    and sample; a learned energy need not be normalisable on the whole plane), ``log Z`` by
    the trapezoidal rule on 257^2 points (`torchebm.metrics.grid_log_partition`).
    ``ref`` (a second data sample) gives the Gaussian fit printed beside it.
    """
    ref64 = ref.double()
    fit = torch.distributions.MultivariateNormal(ref64.mean(0), torch.cov(ref64.T))
    gauss_nll = float(-fit.log_prob(test.detach().to("cpu", torch.float64)).mean())
    box = ((-half, half), (-half, half))
    try:
        lz = grid_log_partition(energy, extent=box, n_points=257)
        res = grid_nll(energy, test, log_partition=lz)
    except (ConfigurationError, FloatingPointError) as exc:
        return f"  {'held-out NLL':<16}{'n/a':>16}   {exc}", None
    line = (
        f"  {'held-out NLL':<16}{res.nll:>16.4f}   nats +- {res.standard_error:.4f}, exp(-E)/Z "
        f"on [-{half:.1f}, {half:.1f}]^2 (log Z grid error {res.log_z.error:.0e}); "
        f"Gaussian fit {gauss_nll:.4f}"
    )
    return line, res.nll


def _make_data(name: str, n: int, generator: torch.Generator) -> torch.Tensor:
    import torchebm.datasets as D

    maker = getattr(D, f"make_{name}")
    return maker(n, generator=generator, dtype=torch.float32)


def _plot(out: DemoOutput, test: torch.Tensor, title: str, path: str) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    from torchebm.visualization import plot_samples, plot_training_curves, plot_trajectories

    pts = torch.cat([test, out.samples.detach().to("cpu", test.dtype)])
    lo = torch.quantile(pts, 0.005, dim=0)
    hi = torch.quantile(pts, 0.995, dim=0)
    c, half = (lo + hi) / 2, float((hi - lo).max()) / 2 * 1.15
    xlim = (float(c[0]) - half, float(c[0]) + half)
    ylim = (float(c[1]) - half, float(c[1]) + half)
    n_panels = 3 if out.trajectories is not None else 2
    fig = Figure(figsize=(5.2 * n_panels, 4.8), layout="constrained")
    axes = fig.subplots(1, n_panels)
    ax0 = axes[0]
    if out.energy is not None:
        plot_samples(
            out.samples[:1000],
            test[:1000],
            model=out.energy,
            ax=ax0,
            xlim=xlim,
            ylim=ylim,
            kind=out.landscape_kind,
            clip=12.0,
            grid_size=120,
            s=4,
            title=out.landscape_title,
        )
    else:
        dens = out.density_samples if out.density_samples is not None else out.samples
        many = dens.detach().to("cpu", torch.float64).numpy()
        h, _, _ = np.histogram2d(many[:, 0], many[:, 1], bins=70, range=[xlim, ylim], density=True)
        im = ax0.imshow(
            h.T,
            origin="lower",
            extent=(xlim[0], xlim[1], ylim[0], ylim[1]),
            cmap="viridis",
            interpolation="bilinear",
        )
        fig.colorbar(im, ax=ax0, label="density (histogram)")
        ax0.set_xlabel("$x_1$")
        ax0.set_ylabel("$x_2$")
        ax0.set_title(out.landscape_title)
    if out.trajectories is not None:
        if out.energy is None:
            axes[1].scatter(test[:1000, 0], test[:1000, 1], s=3, c="0.6", label="data")
        plot_trajectories(
            out.trajectories,
            out.energy,
            ax=axes[1],
            max_chains=8,
            xlim=xlim,
            ylim=ylim,
            kind=out.landscape_kind,
            clip=12.0,
            title=out.trajectory_title,
        )
    plot_training_curves(out.history, ax=axes[-1], smoothing=0.95, title="training")
    fig.suptitle(title)
    fig.savefig(path, dpi=80)


def _png_path(out: str | None, default: str = "torchebm-demo.png") -> str:
    """The file the demo writes, checked before training.

    ``default`` when ``out`` is empty, ``<out>/<default>`` when ``out`` is an existing folder,
    ``out`` with ``.png`` added when it has no extension; any other extension must be a
    format matplotlib writes, and the folder must exist.
    """
    if out and out.endswith(("/", os.sep)) and not os.path.isdir(out):
        raise DemoUsageError(f"--out {out!r} names a folder that does not exist")
    if not out or os.path.isdir(out):
        out = os.path.join(out or "", default)
    ext = os.path.splitext(out)[1]
    if not ext:
        out += ".png"
    else:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = sorted(FigureCanvasBase.get_supported_filetypes())
        if ext[1:].lower() not in formats:
            raise DemoUsageError(
                f"--out must end in an image format matplotlib writes ({', '.join(formats)}) or "
                f"have no extension (.png is added), got {out!r}"
            )
        _check_writer(ext[1:].lower(), out)
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise DemoUsageError(
            f"--out must be a file in an existing folder, got {out!r} ({folder} is not one)"
        )
    try:  # a file can be created there (permissions, a read-only file system): before training
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DemoUsageError(f"--out {out!r}: cannot write in {folder} ({exc.strerror})") from None
    return out


def _check_writer(fmt: str, out: str) -> None:
    """Save a small figure with text in ``fmt`` to memory: a listed format whose writer needs
    a missing program (pgf: a TeX install) failed only after the demo had trained."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.text(0.5, 0.5, "x")  # an empty figure saves as pgf without TeX
    try:
        fig.savefig(io.BytesIO(), format=fmt)
    except Exception as err:  # noqa: BLE001 - any writer failure is the user's format
        raise DemoUsageError(
            f"--out {out!r}: matplotlib cannot write {fmt} here ({type(err).__name__}: {err}); "
            "use .png, .pdf or .svg"
        ) from err


def _check_demo_args(steps: Any, n_samples: Any, device: str, seed: Any = 0) -> None:
    """Validate `run_demo`'s numeric and device options (named errors, no coercion)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
        raise DemoUsageError(
            f"--seed must be an int in [-2**63, 2**63 - 1] (a 64-bit seed), got {seed!r}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DemoUsageError(f"--steps must be an int >= 1, got {steps!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 10:
        raise DemoUsageError(f"--samples must be an int >= 10, got {n_samples!r}")
    if device not in ("cpu", "cuda"):
        raise DemoUsageError(f"--device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise DemoUsageError(
            "--device cuda: CUDA is not available here (no GPU, or a CPU-only torch build); "
            "use --device cpu"
        )


def run_demo(
    name: str,
    *,
    dataset: str | None = None,
    steps: int | None = None,
    out: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    n_samples: int = 2000,
    quiet: bool = False,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Run one demo end to end and return its figures (also printed on ``stream``).

    Args:
        name: One of `DEMOS`.
        dataset: Dataset name (default: the demo's).
        steps: Training steps (default: the demo's).
        out: Image path (default ``torchebm-demo-<name>.png``; an existing folder gets
            that file name inside it; ``.png`` is added to a name without an extension,
            any other extension must be a format matplotlib writes; the folder must exist).
        device: ``"cpu"`` or ``"cuda"``.
        seed: Seed of the model initialisation and of every random draw (an int in
            $[-2^{63}, 2^{63} - 1]$).
        n_samples: Number of model samples (and of held-out data points).
        quiet: Hide the progress bars.
        stream: Where the report goes (default ``sys.stdout``).

    Returns:
        ``{"energy_distance", "mmd"}`` of the model samples, the same for the initial
        noise (``*_init``), of a Gaussian fitted to data (``*_gaussian``) and of a second
        data sample (``*_data``), ``"nll"`` (the grid NLL of the held-out data in nats for
        the demos that learn an energy, else ``None``), ``"png"`` and ``"seconds"``.
    """
    stream = stream if stream is not None else sys.stdout
    if name not in DEMOS:
        raise DemoUsageError(f"demo must be one of {list(DEMOS)}, got {name!r}")
    spec = DEMOS[name]
    dataset = resolve_dataset(dataset) if dataset is not None else spec.dataset
    steps = spec.steps if steps is None else steps
    _check_demo_args(steps, n_samples, device, seed)
    out = _png_path(out, f"torchebm-demo-{name}.png")
    dev = torch.device(device)

    def log(msg: str) -> None:
        print(msg, file=stream, flush=True)

    def progress(total: int, desc: str) -> Progress:
        return Progress(total, desc, enabled=not quiet)

    t_start = time.perf_counter()
    log(f"torchebm demo {name}: {spec.title}")
    log(f"  dataset {dataset}, {steps} {spec.steps_help}, device {device}, seed {seed}")
    torch.manual_seed(seed)  # the demo is an application: this seeds the model initialisation
    gen = torch.Generator(device=dev).manual_seed(seed)
    data_gen = torch.Generator().manual_seed(seed + 1)
    train = _make_data(dataset, 20000, data_gen).to(dev)
    test = _make_data(dataset, n_samples, data_gen)
    ref = _make_data(dataset, n_samples, data_gen)
    demo = DemoContext(train, test.to(dev), steps, n_samples, dev, gen, progress, log)
    result = spec.run(demo)
    samples = result.samples.detach().to("cpu", torch.float32)
    n_bad = int((~torch.isfinite(samples)).any(dim=1).sum())
    if n_bad:
        raise FloatingPointError(f"{n_bad} of {samples.shape[0]} model samples are NaN/inf")
    init = result.init.detach().to("cpu", torch.float32)
    gauss = _gaussian_fit(ref, data_gen)
    rows = [
        ("model samples", samples, ""),
        ("initial noise", init, f"{result.init_label}: where sampling starts"),
        ("Gaussian fit", gauss, "N(data mean, data covariance): the Gaussian fit"),
        ("data vs. data", ref, "a second data sample: the estimates' noise floor"),
    ]
    scores = {label: _scores(x, test) for label, x, _ in rows}
    for note in result.notes:
        log(f"  {note}")
    log(f"quality against {test.shape[0]} held-out data points (lower is better):")
    log(f"  {'':<16}{'energy distance':>16}{'MMD^2':>10}")
    for label, _x, why in rows:
        e, m = scores[label]
        log(f"  {label:<16}{e:>16.4f}{m:>10.4f}   {why}".rstrip())
    nll = None
    if result.energy is not None:
        line, nll = _held_out_nll(result.energy, test.to(dev), ref, 1.5 * float(train.abs().max()))
        log(line)
    ed, mmd = scores["model samples"]
    ed0, mmd0 = scores["initial noise"]
    if ed >= ed0:  # e.g. the eqm demo's settings on curves (two_moons, circle): say so
        log(
            f"warning: the model samples are further from the data than the noise they start "
            f"from (energy distance {ed:.4f} >= {ed0:.4f}): "
            + (
                f"--steps {steps} is below the {name} demo's default {spec.steps}"
                if steps < spec.steps
                else f"the {name} demo's settings (tuned on {spec.dataset}) did not learn {dataset}"
            )
        )
    title = f"torchebm demo {name} on {dataset}: energy distance {ed:.4f} (noise {ed0:.4f})"
    _plot(result, test, title, out)
    path = os.path.abspath(out)
    seconds = time.perf_counter() - t_start
    log(f"wrote {path}")
    log(f"done in {seconds:.1f}s")
    return {
        "energy_distance": ed,
        "mmd": mmd,
        "energy_distance_init": ed0,
        "mmd_init": mmd0,
        "energy_distance_gaussian": scores["Gaussian fit"][0],
        "mmd_gaussian": scores["Gaussian fit"][1],
        "energy_distance_data": scores["data vs. data"][0],
        "mmd_data": scores["data vs. data"][1],
        "nll": nll,
        "png": path,
        "seconds": seconds,
    }
