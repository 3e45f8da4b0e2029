r"""Contrastive divergence: CD-k, persistent CD (replay buffer) and parallel-tempering CD."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

from torchebm.core import BaseModel, expand_t_like_x, renamed_kwargs
from torchebm.core._module import forward_kwargs
from torchebm.core.errors import (
    ConfigurationError,
    ShapeError,
    check_energies,
    check_int,
    check_non_negative,
    check_positive,
)
from torchebm.flows._utils import outside_autocast
from torchebm.integrators._state import call_own_gradient, own_gradient
from torchebm.losses._base_contrastive_divergence import BaseContrastiveDivergence
from torchebm.losses._positional_089 import split_dtype

__all__ = ["ContrastiveDivergence", "PersistentContrastiveDivergence", "ParallelTemperingCD"]


class ContrastiveDivergence(BaseContrastiveDivergence):
    r"""Contrastive divergence (CD-k, or persistent CD with ``persistent=True``).

    With $x^+$ the data batch (optionally jittered by ``noise_scale``) and
    $x^-$ the detached negatives of [`negative_phase`][torchebm.losses.BaseContrastiveDivergence.negative_phase],

    $$
    \mathcal L = \overline{E_\theta(x^+)} - \overline{E_\theta(x^-)}
    + \alpha\,\bigl(\overline{E_\theta(x^+)^2} + \overline{E_\theta(x^-)^2}\bigr),
    $$

    bars denoting batch means and $\alpha$ = ``energy_reg_weight``. Its gradient is
    the CD estimate of the negative log-likelihood gradient: minimising pushes data
    energies down and negative energies up ($E = -\log p + \text{const}$). The
    squared-energy term (Du & Mordatch 2019) keeps energies near zero.

    Call forms:

    * ``loss, negatives = loss_fn(x)``;
    * ``loss = loss_fn(x, model)`` (the earlier form; deprecated, warns
      once, returns the loss only).

    The keyword-only options ``nan_policy``, ``cfg_dropout``, ``null_condition``,
    ``check_conditioning``, ``dtype`` and ``device`` are those of every loss: see
    [`BaseLoss`][torchebm.core.BaseLoss].

    Args:
        model: Energy model ``(B, *event) -> (B,)``; ``None`` takes ``sampler.model``.
        sampler: Sampler of the negatives (e.g. ``LangevinDynamics``), duck-typed.
        k_steps: Sampler steps per call (``None``: the sampler's ``n_steps``, else 10).
        persistent: Use a replay buffer of persistent chains (PCD).
        buffer_size: Chains in the replay buffer.
        init_steps: Burn-in steps run on the fresh buffer, without conditioning (with a
            model that requires ``model_kwargs``, pass ``init_steps=0``).
        new_sample_ratio: Probability that a persistent chain restarts from fresh noise.
        energy_reg_weight: $\alpha >= 0$.
        add_noise_to_real: Jitter the data of the positive phase by ``noise_scale`` Gaussian
            noise. Without ``persistent`` the negative chains start from the clean batch (as in
            torchebm 0.8.9), so a jitter that is not small next to the data's spread makes the
            learned model broader than the jittered data (the chains then need more steps).
        noise_scale: Standard deviation of that jitter.
        init_noise_scale: Standard deviation of the (re-)initialisation noise.

    Example:
        >>> from torchebm.models import MLPEnergy  # torchebm-models and -samplers
        >>> from torchebm.samplers import LangevinDynamics
        >>> model = MLPEnergy(2)
        >>> sampler = LangevinDynamics(model, step_size=0.01)
        >>> loss_fn = ContrastiveDivergence(model, sampler, k_steps=10)
        >>> loss, negatives = loss_fn(torch.randn(64, 2))
        >>> loss.backward(); negatives.shape
        torch.Size([64, 2])

    References:
        - Hinton, "Training products of experts by minimizing contrastive divergence",
          Neural Computation 2002.
        - Tieleman, "Training restricted Boltzmann machines using approximations to the
          likelihood gradient", ICML 2008.
        - Du & Mordatch, "Implicit generation and modeling with energy-based models",
          NeurIPS 2019.
    """

    _call_options = ("energy_reg_weight", "add_noise_to_real", "noise_scale")

    def __init__(
        self,
        model: Any = None,
        sampler: Any = None,
        k_steps: int | None = None,
        persistent: bool = False,
        buffer_size: int = 10000,
        init_steps: int = 100,
        new_sample_ratio: float = 0.05,
        energy_reg_weight: float = 0.001,
        add_noise_to_real: bool = False,
        noise_scale: float = 1e-4,
        init_noise_scale: float = 1.0,
        *,
        nan_policy: str = "raise",
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        init_noise_scale, dtype = split_dtype(type(self).__name__, init_noise_scale, dtype)
        super().__init__(**forward_kwargs(locals(), super().__init__))
        self.energy_reg_weight = check_non_negative("energy_reg_weight", energy_reg_weight)
        if not isinstance(add_noise_to_real, bool):
            raise TypeError(f"add_noise_to_real must be a bool, got {add_noise_to_real!r}")
        self.add_noise_to_real = add_noise_to_real
        self.noise_scale = check_non_negative("noise_scale", noise_scale)

    @renamed_kwargs(pred_x="negatives")
    def compute_loss(
        self,
        x: torch.Tensor,
        negatives: torch.Tensor,
        *,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> torch.Tensor:
        r"""CD objective from data ``x`` ``(B, *event)`` and negatives ``(N, *event)``.

        ``options`` may override ``energy_reg_weight``, ``add_noise_to_real`` and
        ``noise_scale`` for this call (the deprecated per-call form). ``pred_x=`` (the
        torchebm 0.8.9 name of ``negatives``) is accepted with one ``DeprecationWarning``.

        Args:
            x: Data batch `(B, *event)`.
            negatives: Sampler chains `(N, *event)`.
            model_kwargs: Conditioning of the energy model, or ``None``.
            generator: Source of the data jitter (``add_noise_to_real``).
            **options: Deprecated per-call overrides (see above).
        """
        conditioning = model_kwargs or {}
        reg = options.get("energy_reg_weight", self.energy_reg_weight)
        jitter = options.get("add_noise_to_real", self.add_noise_to_real)
        scale = options.get("noise_scale", self.noise_scale)
        x_pos = x
        if jitter and scale > 0:
            x_pos = x + scale * torch.randn(
                x.shape, generator=generator, device=x.device, dtype=x.dtype
            )
        e_pos = self.energy(x_pos, conditioning)
        e_neg = self.energy(negatives.to(dtype=x.dtype), conditioning)
        # in float32 at least, returned in the data's dtype (as the other losses do): under
        # autocast the difference of two close means lost its digits in bfloat16, and
        # E = 300 squared overflowed float16
        wide = torch.promote_types(e_pos.dtype, torch.float32)
        e_pos, e_neg = e_pos.to(wide), e_neg.to(wide)
        loss = e_pos.mean() - e_neg.mean()
        if reg > 0:
            loss = loss + reg * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
        return loss.to(x.dtype)


class PersistentContrastiveDivergence(ContrastiveDivergence):
    r"""Persistent contrastive divergence: [`ContrastiveDivergence`][torchebm.losses.ContrastiveDivergence] with ``persistent=True``.

    Chains live in a replay buffer of ``buffer_size`` states that survives across calls
    (and in ``state_dict``); each call continues ``k_steps`` from stratified buffer rows,
    restarting each from fresh noise with probability ``new_sample_ratio`` (the IGEBM/JEM
    recipe: a 10 000-chain buffer, 5 % fresh noise). With ``buffer_size`` equal to the
    batch size and ``new_sample_ratio=0`` this is Tieleman's PCD exactly. A restarted
    chain runs only ``k_steps`` before it serves as a negative: with few steps those
    negatives sit near the noise, and the fitted model is biased by them (it is pushed away
    from the noise: fitting the mean of $E = \lVert x - \mu\rVert^2 / 2$ to
    $\mathcal N((1, -0.5), I)$ with ``k_steps=10``, step 0.01, Adam (lr 0.01, batches of
    256) and the default 5 % gave $\mu = (1.45, -0.73)$, with ``new_sample_ratio=0``
    $(1.00, -0.45)$); raise ``k_steps`` or lower ``new_sample_ratio`` when the sampler
    mixes slowly from noise.

    The keyword-only options ``nan_policy``, ``cfg_dropout``, ``null_condition``,
    ``check_conditioning``, ``dtype`` and ``device`` are those of every loss: see
    [`BaseLoss`][torchebm.core.BaseLoss].

    Args:
        model: Energy model; ``None`` takes ``sampler.model``.
        sampler: Sampler of the negatives, duck-typed.
        k_steps: Sampler steps per call (``None``: the sampler's ``n_steps``, else 10).
        buffer_size: Chains in the replay buffer.
        init_steps: Burn-in steps on the fresh buffer (default 0: fresh noise, as in
            IGEBM/JEM), run without conditioning.
        new_sample_ratio: Probability that a chain restarts from fresh noise.
        energy_reg_weight: Weight of the squared-energy regulariser.
        add_noise_to_real: Jitter the data by ``noise_scale`` Gaussian noise.
        noise_scale: Standard deviation of that jitter.
        init_noise_scale: Standard deviation of the (re-)initialisation noise.

    Example:
        >>> from torchebm.models import MLPEnergy  # torchebm-models and -samplers
        >>> from torchebm.samplers import LangevinDynamics
        >>> model = MLPEnergy(2)
        >>> sampler = LangevinDynamics(model, step_size=0.01)
        >>> pcd = PersistentContrastiveDivergence(model, sampler, k_steps=5, buffer_size=10000)
        >>> loss, negatives = pcd(torch.randn(64, 2))
        >>> pcd.replay_buffer.shape
        torch.Size([10000, 2])

    References:
        - Tieleman, "Training restricted Boltzmann machines using approximations to the
          likelihood gradient", ICML 2008.
        - Grathwohl et al., "Your classifier is secretly an energy based model and you
          should treat it like one", ICLR 2020.
    """

    def __init__(
        self,
        model: Any = None,
        sampler: Any = None,
        k_steps: int | None = None,
        buffer_size: int = 10000,
        init_steps: int = 0,
        new_sample_ratio: float = 0.05,
        energy_reg_weight: float = 0.001,
        add_noise_to_real: bool = False,
        noise_scale: float = 1e-4,
        init_noise_scale: float = 1.0,
        *,
        nan_policy: str = "raise",
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        init_noise_scale, dtype = split_dtype(type(self).__name__, init_noise_scale, dtype)
        super().__init__(**forward_kwargs(locals(), super().__init__, persistent=True))


#: `(tempered model, (rows,) inverse temperatures)` of each PT-CD call running in this
#: context (thread), innermost last: a nested or concurrent call keeps its own temperatures
_BETAS: ContextVar[tuple[tuple[Any, torch.Tensor], ...]] = ContextVar("ptcd_betas", default=())
_POINTING = threading.Lock()  # guards `_TemperedModel.users`/`untempered` and `_SAMPLERS`
#: one re-entrant lock per sampler (by id: a user's sampler need not be hashable or
#: weak-referenceable) and its number of holders, held while a PT-CD call points the sampler
#: at its tempered model: calls of two PT-CD losses sharing a sampler in two threads take
#: turns (interleaved, each restored the other's model: one failed, the other ran
#: untempered, the sampler stayed tempered); nested calls in one thread re-enter
_SAMPLERS: dict[int, list[Any]] = {}


@contextmanager
def _sampler_turn(sampler: Any) -> Iterator[None]:
    """Hold ``sampler``'s lock within (the entry is dropped when its last holder leaves)."""
    key = id(sampler)
    with _POINTING:
        entry = _SAMPLERS.setdefault(key, [threading.RLock(), 0])
        entry[1] += 1
    try:
        with entry[0]:
            yield
    finally:
        with _POINTING:
            entry[1] -= 1
            if entry[1] == 0:
                del _SAMPLERS[key]


class _TemperedModel(BaseModel):
    r"""Energy $\beta_b E(x_b)$ with a per-row inverse temperature (internal to PT-CD)."""

    model: Any
    # class defaults (a pickle of an older version has neither): running calls that point
    # the sampler here (the first one does), and the sampler's own model while they run
    users: int = 0
    untempered: tuple[Any, ...] = ()

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    @property
    def beta(self) -> torch.Tensor | None:
        """The inverse temperatures of the innermost call of this context using this model."""
        for owner, beta in reversed(_BETAS.get()):
            if owner is self:
                return beta
        return None

    @contextmanager
    def pointed(self, sampler: Any, beta: torch.Tensor) -> Iterator[None]:
        """Within: ``sampler.model`` is this model and `beta` is ``beta`` (this call's);
        another thread's call on the same sampler waits for the block to end."""
        with _sampler_turn(sampler):
            token = _BETAS.set((*_BETAS.get(), (self, beta)))
            with _POINTING:
                if self.users == 0:
                    self.untempered, sampler.model = (sampler.model,), self
                self.users += 1
            try:
                yield
            finally:
                with _POINTING:
                    self.users -= 1
                    if self.users == 0:
                        (sampler.model,), self.untempered = self.untempered, ()
                _BETAS.reset(token)

    def _beta_like(self, t: torch.Tensor) -> torch.Tensor:
        beta = self.beta
        if beta is None or beta.shape[0] != t.shape[0]:
            raise ShapeError(
                "ParallelTemperingCD: the sampler called the tempered model on a batch of "
                f"{t.shape[0]} rows, expected {None if beta is None else beta.shape[0]}"
            )
        # a copy of a beta set under inference_mode: the energy gradient's autograd saves it
        beta = beta.to(device=t.device, dtype=t.dtype, copy=beta.is_inference())
        return expand_t_like_x(beta, t)

    def forward(self, x: torch.Tensor, **model_kwargs: Any) -> torch.Tensor:
        e = self.model(x, **model_kwargs) if model_kwargs else self.model(x)
        return e * self._beta_like(e)

    def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
        inner = own_gradient(self.model)  # a DDP model's module's
        if inner is not None:
            kw = {"model_kwargs": model_kwargs} if model_kwargs else {}
            g = call_own_gradient(inner, x, **kw)
            return g * self._beta_like(g)
        return super().gradient(x, model_kwargs)


def _allocate_tempered_chains(
    loss: Any, state_dict: dict, prefix: str, *args: Any
) -> None:  # args: local metadata, strict, missing, unexpected, error messages
    """Load pre-hook: a checkpoint's tempered chains load into a loss that has none yet.

    Chains that do not fit the loss, ``(R, n_chains, *event)`` with ``R`` replicas (one per
    temperature) and its ``n_chains`` when set, are an error naming both shapes."""
    key = prefix + "tempered_chains"
    if key not in state_dict:
        return
    shape = tuple(state_dict[key].shape)
    replicas, n = len(loss.temperatures), loss.n_chains
    if len(shape) < 2 or shape[0] != replicas or (n is not None and shape[1] != n):
        args[-1].append(
            f"tempered_chains in the checkpoint have shape {shape}, but this loss holds "
            f"({replicas}, {'n_chains' if n is None else n}, *event) chains "
            f"(temperatures={loss.temperatures}, n_chains={n})"
        )
        return
    if loss.tempered_chains is None:
        loss.tempered_chains = torch.empty(shape, dtype=loss.dtype, device=loss.device)


class ParallelTemperingCD(ContrastiveDivergence):
    r"""Contrastive divergence with negatives from persistent parallel-tempering chains.

    ``len(temperatures)`` replicas of ``n_chains`` persistent chains target
    $p_r(x) \propto \exp(-E_\theta(x)/(T_r\,T_0))$ with $T_0$ the
    ``base_temperature`` the sampler itself targets for an energy $E$ (1 for HMC and
    for Langevin with ``noise_scale=1``; $\sigma^2$ for Langevin with
    ``noise_scale=σ``). All replicas are advanced together by the sampler on a batch of
    ``R·n_chains`` rows (a sampler's schedule runs across the ``k_steps`` of a negative
    phase as in plain CD, also when swaps split it) through a tempered copy of the model (energy
    $E/T_r$ per row); after every ``swap_every`` sampler steps, counted across calls (calls
    of fewer steps than ``swap_every`` do not each swap), neighbouring replicas
    $(r, r+1)$ (even pairs and odd pairs alternately) exchange states chain-wise with
    the Metropolis probability

    $$
    \min\Bigl(1, \exp\bigl[(\beta_r - \beta_{r+1})(E(x_r) - E(x_{r+1}))\bigr]\Bigr),
    \qquad \beta_r = 1/(T_r T_0),
    $$

    which leaves the product of the replica targets invariant. The $T = 1$ replica
    gives the negatives; the hot replicas cross energy barriers and feed it states from
    other modes. The chains (shape ``(R, n_chains, *event)``) are a buffer of the module
    (``state_dict``, with the swap phase: the parity and the steps since the last swap);
    the acceptance rate of the last swap round that tried each neighbouring pair is
    ``swap_acceptance`` (``(R-1,)``, saved with the swap phase).

    The keyword-only options ``nan_policy``, ``cfg_dropout``, ``null_condition``,
    ``check_conditioning``, ``dtype`` and ``device`` are those of every loss: see
    [`BaseLoss`][torchebm.core.BaseLoss].

    Args:
        model: Energy model; ``None`` takes ``sampler.model``.
        sampler: Sampler with a ``model`` attribute (it is temporarily pointed at the
            tempered model during the negative phase).
        temperatures: Increasing ladder starting at 1.0, e.g. ``(1.0, 2.0, 4.0, 8.0)``.
        k_steps: Sampler steps per call (``None``: the sampler's ``n_steps``, else 10).
        swap_every: Sampler steps between swap rounds (counted across calls).
        n_chains: Chains per replica (``None``: the first batch size).
        base_temperature: $T_0$, the temperature the sampler targets (checked at each call
            against the sampler's ``stationary_temperature`` where it declares one:
            $\sigma^2$ for Langevin with a constant ``noise_scale`` $\sigma$, 1 for HMC).
        energy_reg_weight: Weight of the squared-energy regulariser.
        add_noise_to_real: Jitter the data by ``noise_scale`` Gaussian noise.
        noise_scale: Standard deviation of that jitter.
        init_noise_scale: Standard deviation of the noise the chains start from.

    Raises:
        ValueError: bad temperature ladder or counts; at a call, ``base_temperature`` is not
            the sampler's ``stationary_temperature``.
        TypeError: the sampler has no ``model`` attribute.
        NotImplementedError: conditioning (``model_kwargs``) is passed.

    Example:
        >>> from torchebm.models import MLPEnergy  # torchebm-models and -samplers
        >>> from torchebm.samplers import LangevinDynamics
        >>> model = MLPEnergy(2)
        >>> sampler = LangevinDynamics(model, step_size=0.01)
        >>> ptcd = ParallelTemperingCD(model, sampler, k_steps=5, temperatures=(1.0, 3.0, 9.0))
        >>> loss, negatives = ptcd(torch.randn(64, 2))
        >>> negatives.shape
        torch.Size([64, 2])

    References:
        - Swendsen & Wang, "Replica Monte Carlo simulation of spin glasses", PRL 1986.
        - Desjardins, Courville, Bengio, Vincent & Delalleau, "Tempered Markov chain Monte
          Carlo for training of restricted Boltzmann machines", AISTATS 2010.
    """

    tempered_chains: torch.Tensor | None
    swap_acceptance: torch.Tensor

    def __init__(
        self,
        model: Any = None,
        sampler: Any = None,
        temperatures: Sequence[float] = (1.0, 2.0, 4.0, 8.0),
        k_steps: int | None = None,
        swap_every: int = 1,
        n_chains: int | None = None,
        base_temperature: float = 1.0,
        energy_reg_weight: float = 0.001,
        add_noise_to_real: bool = False,
        noise_scale: float = 1e-4,
        init_noise_scale: float = 1.0,
        *,
        nan_policy: str = "raise",
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        init_noise_scale, dtype = split_dtype(type(self).__name__, init_noise_scale, dtype)
        super().__init__(
            **forward_kwargs(
                locals(),
                super().__init__,
                persistent=False,
                buffer_size=1,
                init_steps=0,
                new_sample_ratio=0.0,
            )
        )
        if not hasattr(self.sampler, "model"):
            raise TypeError(
                "ParallelTemperingCD needs a sampler with a 'model' attribute (it runs the "
                f"replicas through a tempered model), got {type(self.sampler).__name__}"
            )
        if isinstance(temperatures, (str, bytes)) or not isinstance(temperatures, Sequence):
            raise TypeError(f"temperatures must be a sequence of numbers, got {temperatures!r}")
        temps = [check_positive(f"temperatures[{i}]", t) for i, t in enumerate(temperatures)]
        if len(temps) < 2:
            raise ConfigurationError(
                f"temperatures must hold at least two values (1.0 first), got {list(temperatures)}"
            )
        if temps[0] != 1.0:
            raise ConfigurationError(
                f"temperatures must start at 1.0 (the target), got {list(temperatures)}"
            )
        if any(b <= a for a, b in zip(temps, temps[1:])):
            raise ConfigurationError(
                f"temperatures must be strictly increasing, got {list(temperatures)}"
            )
        self.temperatures = tuple(temps)
        self.swap_every = check_int("swap_every", swap_every, minimum=1)
        self.n_chains = None if n_chains is None else check_int("n_chains", n_chains, minimum=1)
        self.base_temperature = check_positive("base_temperature", base_temperature)
        self.register_buffer("tempered_chains", None)
        self.register_load_state_dict_pre_hook(_allocate_tempered_chains)
        self.register_buffer("swap_acceptance", torch.zeros(len(temps) - 1), persistent=False)
        # held, not registered: it wraps self.model, which is registered already
        self._tempered_holder = (_TemperedModel(self.model),)
        self._swap_parity = 0
        self._steps_since_swap = 0  # sampler steps since the last swap round (across calls)

    def extra_repr(self) -> str:
        return f"temperatures={self.temperatures}, swap_every={self.swap_every}"

    @property
    def inverse_temperatures(self) -> torch.Tensor:
        r"""$\beta_r = 1/(T_r T_0)$, shape ``(R,)`` (float64 on CPU)."""
        betas = [1.0 / (t * self.base_temperature) for t in self.temperatures]
        return torch.tensor(betas, dtype=torch.float64)  # cast to the chains' dtype where used

    def get_extra_state(self) -> dict:
        # which neighbour pairs swap next is chain state too: a resumed run must match
        state = super().get_extra_state()
        state["swap_parity"] = int(self._swap_parity)
        state["steps_since_swap"] = int(self._steps_since_swap)
        state["swap_acceptance"] = self.swap_acceptance.detach().cpu().clone()
        return state

    def set_extra_state(self, state: Any) -> None:
        super().set_extra_state(state)
        if isinstance(state, dict) and "swap_parity" in state:
            self._swap_parity = int(state["swap_parity"])
        if isinstance(state, dict) and "steps_since_swap" in state:
            self._steps_since_swap = int(state["steps_since_swap"])
        saved = state.get("swap_acceptance") if isinstance(state, dict) else None
        if saved is not None and saved.shape == self.swap_acceptance.shape:  # older: none
            self.swap_acceptance.copy_(saved)

    def _check_base_temperature(self) -> None:
        r"""A sampler that declares the temperature it samples (``stationary_temperature``:
        $\sigma^2$ for `LangevinDynamics` with a constant ``noise_scale`` $\sigma$, 1 for
        HMC) must have it as ``base_temperature``: swaps with another leave the wrong law
        invariant (at $\sigma = 0.5$ and the default 1.0, ten times the mass in a minor
        mode). A sampler declaring none (a user's, a scheduled noise) is not checked."""
        t0 = getattr(self.sampler, "stationary_temperature", None)
        if t0 is None or math.isclose(self.base_temperature, t0, rel_tol=1e-6):
            return
        raise ConfigurationError(
            f"base_temperature={self.base_temperature} but the sampler "
            f"{type(self.sampler).__name__} samples at T0 = {t0:g} (its "
            f"stationary_temperature; noise_scale**2 for Langevin): pass base_temperature="
            f"{t0!r}"
        )

    def _init_chains(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n = self.n_chains if self.n_chains is not None else x.shape[0]
        shape = (len(self.temperatures), n, *x.shape[1:])
        chains = self._noise(shape, x, generator, self.init_noise_scale)
        self.tempered_chains = chains
        return chains

    def _energies(self, flat: torch.Tensor) -> torch.Tensor:
        """Energies of the swap test, outside autocast (half precision rounds them)."""
        with torch.no_grad(), outside_autocast(flat.device.type):
            e = self.model(flat)
        return check_energies("the model", e, flat.shape[0])

    def _swap(
        self, chains: torch.Tensor, generator: torch.Generator | None, betas: torch.Tensor
    ) -> torch.Tensor:
        """One round of Metropolis swaps between neighbouring replicas (even or odd pairs);
        ``betas`` are `inverse_temperatures` on the chains' device (made once per call)."""
        n_rep, n = chains.shape[0], chains.shape[1]
        energies = self._energies(chains.reshape(n_rep * n, *chains.shape[2:])).reshape(n_rep, n)
        beta = betas.to(dtype=energies.dtype)
        lo = torch.arange(self._swap_parity, n_rep - 1, 2, device=chains.device)
        self._swap_parity ^= 1
        if lo.numel() == 0:
            return chains
        hi = lo + 1
        log_acc = (beta[lo] - beta[hi]).unsqueeze(1) * (energies[lo] - energies[hi])
        # drawn in the chains' precision (at least float32), not the global default dtype
        wide = torch.promote_types(log_acc.dtype, torch.float32)
        u = torch.rand(log_acc.shape, generator=generator, device=chains.device, dtype=wide)
        accept = torch.log1p(-u) <= log_acc  # (pairs, n); log(1 - u), finite (log 0 = -inf
        # swapped whatever the energies); NaN energies never swap
        view = accept.reshape(*accept.shape, *([1] * (chains.ndim - 2)))
        a, b = chains[lo], chains[hi]
        new = chains.clone()
        new[lo] = torch.where(view, b, a)
        new[hi] = torch.where(view, a, b)
        self.swap_acceptance[lo] = accept.to(self.swap_acceptance.dtype).mean(dim=1)
        return new

    def negative_phase(
        self,
        x: torch.Tensor,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Advance all replicas ``k_steps``, with a swap round after every ``swap_every``
        sampler steps (counted across calls); return the ``T = 1`` replica's chains.

        Args:
            x: Data batch `(B, *event)` (seeds the replicas on first use).
            model_kwargs: Must be empty: conditioning is not supported.
            generator: Source of the sampler noise and of the swap decisions.

        Returns:
            Detached negatives, shape ``(n_chains, *event)``.
        """
        if model_kwargs:
            raise NotImplementedError(
                "ParallelTemperingCD does not support conditioning (model_kwargs)"
            )
        self._check_base_temperature()
        chains = self.tempered_chains
        if chains is None:
            chains = self._init_chains(x, generator)
        elif tuple(chains.shape[2:]) != tuple(x.shape[1:]):
            raise ShapeError(
                f"x has event shape {tuple(x.shape[1:])} but the tempered chains have shape "
                f"{tuple(chains.shape[2:])}"
            )
        n_rep, n = chains.shape[0], chains.shape[1]
        # one host-to-device copy per call (not per swap round: each copy waits on a GPU)
        wide = torch.float32 if chains.device.type == "mps" else torch.float64  # MPS: no float64
        betas = self.inverse_temperatures.to(device=chains.device, dtype=wide)
        beta = (betas * self.base_temperature).to(chains.dtype).repeat_interleave(n)  # 1 / T_r
        flat = chains.reshape(n_rep * n, *chains.shape[2:])
        done, since = 0, min(self._steps_since_swap, self.swap_every - 1)  # swap_every reset
        # this call's temperatures (a nested or concurrent call has its own)
        with self._tempered_holder[0].pointed(self.sampler, beta):
            while done < self.k_steps:
                steps = min(self.swap_every - since, self.k_steps - done)
                flat = self._run_sampler(flat, steps, {}, generator, reset_schedulers=done == 0)
                done, since = done + steps, since + steps
                if since >= self.swap_every:
                    swapped = self._swap(flat.reshape(chains.shape), generator, betas)
                    flat = swapped.reshape(flat.shape)
                    since = 0
        self._steps_since_swap = since
        chains = flat.reshape(chains.shape)
        self.tempered_chains = chains.detach()
        return chains[0].clone()
