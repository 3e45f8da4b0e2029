r"""``torchebm.core.distributed``: a thin shim over ``torch.distributed``.

In a single process (no process group) ranks are ``0``, the world size is ``1``, gathers return
their input and broadcasts are no-ops, so losses, couplings and trainers run the same code on a
laptop, under ``torchrun`` with DDP, and under FSDP2 (``fully_shard``). Collectives (gathers,
broadcasts, ``all_reduce_mean``, state dicts of a sharded model) must be called by every rank in the
same order; with NCCL, CPU tensors travel through the current CUDA device.

Example:
    >>> import torch
    >>> from torchebm.core.distributed import all_gather_cat, get_rank, rank_generator
    >>> g = rank_generator(seed=0)  # different stream on every rank
    >>> x = torch.randn(4, 2, generator=g)
    >>> all_gather_cat(x).shape  # (4 * world_size, 2)
    torch.Size([4, 2])

References:
    Li et al., "PyTorch Distributed", VLDB 2020 (DDP). Zhao et al., "PyTorch FSDP", VLDB
    2023. Steele, Lea & Flood, "Fast Splittable Pseudorandom Number Generators", OOPSLA
    2014 (SplitMix64, used by `rank_seed`)."""

from __future__ import annotations

import contextlib
import pickle
import sys
import weakref
import zlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from torchebm.core._renamed import renamed_kwargs
from torchebm.core.errors import ShapeError, check_int

__all__ = [
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "barrier",
    "gather_sizes",
    "all_gather_cat",
    "all_reduce_mean",
    "broadcast_object",
    "broadcast_tensor",
    "rank_seed",
    "rank_generator",
    "needs_unsharded",
    "unwrap_model",
    "is_sharded",
    "unsharded",
    "model_state_dict",
    "load_model_state_dict",
    "optimizer_state_dict",
    "load_optimizer_state_dict",
]

_MASK64 = (1 << 64) - 1

#: FSDP modules inside an open `unsharded(...)` block -> nesting depth (no attribute on them)
_UNSHARDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------------- topology
def _dist():  # torch.distributed if available and initialised, else None
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def _peers(group: Any):  # torch.distributed when `group` has more than one rank, else None
    return torch.distributed if get_world_size(group) > 1 else None


def is_distributed() -> bool:
    """``True`` when ``torch.distributed`` is available and a process group is initialised."""
    return _dist() is not None


def get_rank(group: Any = None) -> int:
    """Rank of this process in ``group`` (the default group if ``None``); ``0`` if not distributed."""
    return torch.distributed.get_rank(group) if is_distributed() else 0


def get_world_size(group: Any = None) -> int:
    """Number of processes in ``group``; ``1`` if not distributed."""
    return torch.distributed.get_world_size(group) if is_distributed() else 1


def is_main_process(group: Any = None) -> bool:
    """``True`` on rank 0 of ``group`` (always ``True`` in a single process)."""
    return get_rank(group) == 0


def barrier(group: Any = None) -> None:
    """Synchronise all ranks of ``group`` (no-op when not distributed)."""
    if is_distributed():
        torch.distributed.barrier(group=group)


def _comm_device(tensor: torch.Tensor, group: Any) -> torch.device:
    """Where ``tensor`` must live for a collective of ``group``'s backend."""
    backend = str(torch.distributed.get_backend(group)).lower()
    if "nccl" in backend and tensor.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


# ---------------------------------------------------------------------------- gathers
def gather_sizes(n: int, group: Any = None) -> list[int]:
    """One integer per rank (e.g. local batch sizes), indexed by rank. Collective."""
    return [row[0] for row in _gather_ints([check_int("n", n, minimum=0)], group)]


def _gather_ints(values: list[int], group: Any) -> list[list[int]]:
    """``values`` (Python ints, one list per rank, each of this length) of every rank."""
    if (dist := _peers(group)) is None:
        return [values]
    local = torch.tensor(values, dtype=torch.long, device=_comm_device(torch.empty(0), group))
    out = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, local, group=group)
    return [t.tolist() for t in out]


def _gather_padded(x: torch.Tensor, group: Any, dim: int) -> tuple[torch.Tensor, list[int]]:
    xt = x.detach().movedim(dim, 0).contiguous()
    layout = zlib.crc32(repr((tuple(xt.shape[1:]), xt.dtype)).encode())  # same on every rank?
    rows = _gather_ints([xt.shape[0], layout], group)
    if any(row[1] != layout for row in rows):  # every rank raises: none waits in a collective
        raise ShapeError(
            f"all_gather_cat: every rank must pass x of one dtype and one shape but for dim "
            f"{dim}; ranks differ (this rank: shape {tuple(x.shape)}, {x.dtype})"
        )
    sizes = [row[0] for row in rows]
    m = max(sizes)
    if m == 0:
        return x.detach().clone(), sizes
    home = xt.device
    xt = xt.to(_comm_device(xt, group))
    if xt.shape[0] < m:
        xt = torch.cat([xt, xt.new_zeros((m - xt.shape[0], *xt.shape[1:]))])
    out = [torch.empty_like(xt) for _ in sizes]
    torch.distributed.all_gather(out, xt, group=group)
    full = torch.cat([o[:s] for o, s in zip(out, sizes)]).to(home)
    return full.movedim(0, dim), sizes


class _AllGatherCat(torch.autograd.Function):
    """All-gather + concat whose backward sums the incoming gradients over ranks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: Any, dim: int) -> torch.Tensor:  # type: ignore[override]
        full, sizes = _gather_padded(x, group, dim)
        rank = get_rank(group)
        ctx.group, ctx.dim = group, dim
        ctx.start, ctx.length = sum(sizes[:rank]), sizes[rank]
        return full

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        g = grad.contiguous().clone().to(_comm_device(grad, ctx.group))
        torch.distributed.all_reduce(g, op=torch.distributed.ReduceOp.SUM, group=ctx.group)
        return g.to(grad.device).narrow(ctx.dim, ctx.start, ctx.length), None, None


def all_gather_cat(
    x: torch.Tensor, group: Any = None, dim: int = 0, *, differentiable: bool = False
) -> torch.Tensor:
    r"""Concatenate ``x`` from every rank along ``dim`` in rank order. Collective.

    Ranks may differ only in their size along ``dim`` (`ShapeError` on every rank otherwise).

    Args:
        x: Local tensor ``(B_r, ...)`` (for ``dim=0``).
        group: Process group (default: the world).
        dim: Dimension to concatenate along.
        differentiable: If ``True`` the backward sums the gathered gradient over ranks
            and returns this rank's slice (the gradient of the sum of every rank's loss);
            otherwise (default) the result is detached.

    Returns:
        ``(sum_r B_r, ...)``; in a single process ``x`` (detached unless differentiable)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError(f"x must have at least 1 dimension, got shape {tuple(x.shape)}")
    dim = check_int("dim", dim)
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim must be in [{-x.ndim}, {x.ndim - 1}], got {dim}")
    dim = dim % x.ndim
    if _peers(group) is None:
        return x if differentiable else x.detach()
    if differentiable:
        return _AllGatherCat.apply(x, group, dim)
    return _gather_padded(x, group, dim)[0]


def all_reduce_mean(x: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Mean of ``x`` over ranks, a new detached tensor (``x.detach()`` alone). Collective."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if (dist := _peers(group)) is None:
        return x.detach()
    y = x.detach().clone().to(_comm_device(x, group))
    dist.all_reduce(y, op=dist.ReduceOp.SUM, group=group)
    return (y / dist.get_world_size(group)).to(x.device)


def broadcast_object(obj: Any, src: int = 0, group: Any = None) -> Any:
    """``src``'s picklable ``obj`` on every rank (``src``: a global rank). Collective."""
    if (dist := _peers(group)) is None:
        return obj
    # pickled bytes in a uint8 tensor: torch's *_object_list collectives need numpy
    mine = dist.get_rank() == src
    payload = _to_bytes_tensor(obj) if mine else torch.empty(0, dtype=torch.uint8)
    size = broadcast_tensor(torch.tensor([payload.numel()]), src=src, group=group)
    if not mine:
        payload = torch.empty(int(size.item()), dtype=torch.uint8)
    return _from_bytes_tensor(broadcast_tensor(payload, src=src, group=group))


def _to_bytes_tensor(obj: Any) -> torch.Tensor:
    return torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8)


def _from_bytes_tensor(t: torch.Tensor) -> Any:
    return pickle.loads(bytes(t.cpu().tolist()))


@renamed_kwargs(t="tensor")
def broadcast_tensor(tensor: torch.Tensor, src: int = 0, group: Any = None) -> torch.Tensor:
    """Overwrite ``tensor`` (same shape and dtype on every rank) with rank ``src``'s values;
    a collective, returning ``tensor``."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if (dist := _peers(group)) is None:
        return tensor
    # tensor's own memory when it is contiguous on the backend's device, else a copy
    buf = tensor.detach().contiguous().to(_comm_device(tensor, group))
    dist.broadcast(buf, src=src, group=group)
    if buf.data_ptr() != tensor.data_ptr():
        with torch.no_grad():
            tensor.copy_(buf)
    return tensor


# ---------------------------------------------------------------------------- randomness
def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def rank_seed(seed: int, rank: int | None = None, group: Any = None) -> int:
    r"""A 63-bit seed for ``rank``: two rounds of SplitMix64 over ``seed`` and ``rank``.

    Neighbouring ranks and seeds get unrelated streams; the same ``(seed, rank)`` gives the
    same seed on any machine.

    ``seed``: an int ``>= 0`` (mod 2^64); ``rank``: default this process's rank in ``group``."""
    seed = check_int("seed", seed, minimum=0)
    rank = get_rank(group) if rank is None else check_int("rank", rank, minimum=0)
    return _splitmix64(_splitmix64(seed & _MASK64) ^ rank) >> 1


def rank_generator(
    seed: int, device: Any = None, *, rank: int | None = None, group: Any = None
) -> torch.Generator:
    r"""A ``torch.Generator`` on ``device`` seeded with [`rank_seed`][torchebm.core.distributed.rank_seed] ``(seed, rank)``.

    Given to every stochastic call, it makes chains, noise and flow times differ across
    ranks while the run stays reproducible from one ``seed``; ``rank=r`` reproduces rank
    ``r``'s stream in a single process.

    ``seed``: the base seed of all ranks; ``device``: the generator's (default CPU);
    ``rank``: default this process's rank in ``group``.

    Example:
        >>> g0, g1 = rank_generator(7, rank=0), rank_generator(7, rank=1)
        >>> bool((torch.rand(3, generator=g0) != torch.rand(3, generator=g1)).all())
        True
    """
    g = torch.Generator(device=torch.device(device) if device is not None else "cpu")
    g.manual_seed(rank_seed(seed, rank=rank, group=group))
    return g


# ---------------------------------------------------------------------------- wrappers
def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip ``DistributedDataParallel``/``DataParallel``/``torch.compile`` wrappers (FSDP2
    modules are not wrappers: ``fully_shard`` changes the class in place)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for _ in range(16):  # nested wrappers, at most 16 deep
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            break
    return model


def _is_dtensor(t: Any) -> bool:
    # a DTensor needs torch.distributed.tensor imported already: no slow import otherwise
    cls = getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)
    return cls is not None and isinstance(t, cls)


def is_sharded(module: nn.Module) -> bool:
    """``True`` if any parameter of ``module`` is a ``DTensor`` (FSDP2 / tensor parallel)."""
    return any(_is_dtensor(p) for p in unwrap_model(module).parameters())


def _fsdp_modules(module: nn.Module, recurse: bool) -> list[Any]:
    # fully_shard imported torch.distributed.fsdp if it is in use
    FSDPModule = getattr(sys.modules.get("torch.distributed.fsdp"), "FSDPModule", None)
    if FSDPModule is None or _dist() is None:  # FSDP2 runs in a process group
        return []
    mods = list(module.modules()) if recurse else [module]
    return [m for m in mods if isinstance(m, FSDPModule)]


def needs_unsharded(module: nn.Module) -> bool:
    """``True`` if ``module`` holds FSDP2 modules outside [`unsharded`][torchebm.core.distributed.unsharded].

    Score matching checks it to fail clearly instead of with a storage error in backward."""
    mods = _fsdp_modules(unwrap_model(module), recurse=True)
    return any(_UNSHARDED.get(m, 0) <= 0 for m in mods)


@contextlib.contextmanager
def unsharded(module: nn.Module, recurse: bool = True) -> Iterator[nn.Module]:
    r"""Keep an FSDP2 model's parameters gathered inside the block.

    An MCMC sampler calls the model ``k`` times per training step; under FSDP2 each call
    would all-gather and free the parameters. Inside the block every ``FSDPModule`` of
    ``module`` (all of them if ``recurse``) is unsharded once with resharding after
    forward/backward disabled; on exit the settings are restored and the parameters
    resharded. Plain and DDP modules pass through. Collective on entry when sharded.
    Losses built from $\nabla_x E$ (score matching) run forward and backward inside it,
    so the inner gradient pass does not free weights the outer backward needs.

    Example:
        >>> with unsharded(model):  # doctest: +SKIP
        ...     negatives = sampler.sample(x=start, n_steps=k)
        >>> with unsharded(model):  # doctest: +SKIP
        ...     dsm(x).backward()
    """
    mods = _fsdp_modules(unwrap_model(module), recurse)
    if not mods:
        yield module
        return
    saved = []
    for m in mods:
        state = m._get_fsdp_state()
        groups, auto = state._fsdp_param_groups, getattr(state, "_auto_reshard_after_forward", None)
        infos = [g.post_forward_mesh_info for g in groups]
        saved.append((m, auto, infos, [g.reshard_after_backward for g in groups]))
        m.set_reshard_after_forward(False, recurse=False)
        m.set_reshard_after_backward(False, recurse=False)
        m.unshard()
        _UNSHARDED[m] = _UNSHARDED.get(m, 0) + 1
    try:
        yield module
    finally:
        for m, auto, infos, after_backward in saved:
            _UNSHARDED[m] -= 1
            state = m._get_fsdp_state()
            if auto is not None:
                state._auto_reshard_after_forward = auto
            for g, info, rab in zip(state._fsdp_param_groups, infos, after_backward):
                g.post_forward_mesh_info = info
                g.reshard_after_backward = rab
            m.reshard()


# ---------------------------------------------------------------------------- state dicts
def _dcp(name: str, *args: Any, **options: Any) -> Any:
    """``torch.distributed.checkpoint.state_dict.<name>(*args, options=StateDictOptions(**options))``."""
    from torch.distributed.checkpoint import state_dict as dcp

    return getattr(dcp, name)(*args, options=dcp.StateDictOptions(**options))


def model_state_dict(model: nn.Module) -> dict[str, Any]:
    r"""A full state dict of ``model`` with the keys of the bare (unwrapped) module.

    A sharded (FSDP2) model is gathered by ``get_model_state_dict(full_state_dict=True,
    cpu_offload=True)``: a collective after which only rank 0 holds the tensors."""
    inner = unwrap_model(model)
    if is_sharded(inner):
        return _dcp("get_model_state_dict", inner, full_state_dict=True, cpu_offload=True)
    return inner.state_dict()


def load_model_state_dict(model: nn.Module, state: dict[str, Any], strict: bool = True) -> None:
    """Load a [`model_state_dict`][torchebm.core.distributed.model_state_dict] into a plain, DDP or FSDP2 model.

    For a sharded model every rank passes the full dict and keeps its own shard."""
    inner = unwrap_model(model)
    if is_sharded(inner):  # a copy: set_model_state_dict replaces the entries of its dict
        _dcp("set_model_state_dict", inner, dict(state), full_state_dict=True, strict=strict)
    else:
        inner.load_state_dict(state, strict=strict)


def optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()``; for a sharded model the full FQN-keyed state (collective,
    only rank 0 receives the tensors)."""
    inner = unwrap_model(model)
    if is_sharded(inner):
        opts = {"full_state_dict": True, "cpu_offload": True}
        return _dcp("get_optimizer_state_dict", inner, optimizer, **opts)
    return optimizer.state_dict()


def load_optimizer_state_dict(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Inverse of [`optimizer_state_dict`][torchebm.core.distributed.optimizer_state_dict] (every rank passes the full dict when sharded)."""
    inner = unwrap_model(model)
    if is_sharded(inner):
        _dcp(
            "set_optimizer_state_dict", inner, optimizer, state, full_state_dict=True, strict=False
        )
    else:
        optimizer.load_state_dict(state)


def _rank_list(obj: Any, group: Any = None) -> list[Any]:
    """One picklable object per rank, gathered onto rank 0 (others get ``None``). Collective."""
    if (dist := _peers(group)) is None:
        return [obj]
    payload = _to_bytes_tensor(obj)  # numpy-free (gather_object needs numpy)
    flat, sizes = _gather_padded(payload, group, 0)
    if dist.get_rank(group) != 0:
        return None  # type: ignore[return-value]
    return [_from_bytes_tensor(part) for part in flat.split(sizes)]
