r"""Run a fixed-shape step loop by replaying a captured CUDA graph (eager loop elsewhere)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import torch

from torchebm.core.errors import ConfigurationError, check_generator, check_int

__all__ = ["graphed_loop"]

State = Union[torch.Tensor, tuple[torch.Tensor, ...], list[torch.Tensor]]


def _as_tuple(state: State, what: str) -> tuple[tuple[torch.Tensor, ...], type | None]:
    """``(tensors, container)``: ``container`` is ``tuple`` or ``list`` (what ``state`` is), or
    ``None`` for a single tensor."""
    if isinstance(state, torch.Tensor):
        return (state,), None
    if (
        isinstance(state, (tuple, list))
        and state
        and all(isinstance(t, torch.Tensor) for t in state)
    ):
        return tuple(state), type(state)
    raise TypeError(
        f"{what} must be a tensor or a non-empty tuple or list of tensors, got "
        f"{type(state).__name__}"
    )


def _call(step_fn: Callable, cur: tuple[torch.Tensor, ...], container: Any, ref) -> tuple:
    res = step_fn(cur[0] if container is None else container(cur))
    out, out_container = _as_tuple(res, "step_fn(state)")
    if (
        (out_container is None) != (container is None)
        or len(out) != len(ref)
        or any(
            (o.shape, o.dtype, o.device) != (r.shape, r.dtype, r.device) for o, r in zip(out, ref)
        )
    ):
        raise ConfigurationError(
            "step_fn must return a state with the structure, shapes, dtypes and devices of its "
            "input (a CUDA graph replays fixed shapes); got "
            f"{[(tuple(o.shape), o.dtype, str(o.device)) for o in out]} for "
            f"{[(tuple(r.shape), r.dtype, str(r.device)) for r in ref]}"
        )
    return out


def _generator_to_register(
    generator: torch.Generator | None, device: torch.device
) -> torch.Generator | None:
    """The generator to register with the graph: a CUDA generator other than the default one."""
    if generator is None or generator.device.type != "cuda":
        return None
    index = generator.device.index
    default = torch.cuda.default_generators[device.index if index is None else index]
    if generator is default:
        return None  # captured draws from the default generator are graph-safe already
    if not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):  # torch < 2.5
        raise ConfigurationError(
            "graphed_loop(generator=...) with a non-default CUDA generator needs torch >= 2.5 "
            f"(CUDAGraph.register_generator_state); torch {torch.__version__} replays only "
            "draws from the default CUDA generator: pass generator=None and seed with "
            "torch.cuda.manual_seed"
        )
    return generator


def graphed_loop(
    step_fn: Callable[[State], State],
    state: State,
    n_steps: int,
    *,
    steps_per_graph: int | None = None,
    warmup_steps: int = 2,
    generator: torch.Generator | None = None,
    enabled: bool | None = None,
) -> State:
    r"""Apply ``state = step_fn(state)`` ``n_steps`` times, on CUDA through a CUDA graph.

    On CUDA the first ``warmup_steps`` steps run eagerly on a side stream (this compiles Triton
    kernels and initialises libraries, which cannot happen during capture), then
    ``steps_per_graph`` steps are captured once into a ``torch.cuda.CUDAGraph`` and the graph
    is replayed: one CPU launch per ``steps_per_graph`` steps instead of several per step,
    which is what limits small chains on a GPU. Steps left over run eagerly. On CPU (or with
    ``enabled=False``) this is a plain loop, so code using it runs everywhere.

    The result equals the eager loop's for a deterministic ``step_fn``; random draws inside
    the graph come from the CUDA generators' graph-safe Philox offsets, so a fixed seed still
    gives a reproducible run (``generator``, if not the default CUDA generator, is registered
    with the graph for that).

    Requirements on ``step_fn`` (those of CUDA graph capture): fixed shapes, no host
    synchronisation (``.item()``, printing tensors, ``bool(tensor)``), no CPU tensors, and the
    same output structure as its input. Violations during capture raise torch's error.

    Args:
        step_fn: ``state -> state`` where ``state`` is a tensor or a tuple or list of tensors
            (``step_fn`` gets the container type that ``state`` has).
        state: Initial state. The loop itself does not modify it, but the first steps get
            it as it is: a ``step_fn`` that updates its input in place (``s.mul_(2)``)
            changes the caller's tensors; pass a clone to keep them.
        n_steps: Number of steps (>= 0).
        steps_per_graph: Steps captured per graph (default ``min(16, steps left after warmup)``).
        warmup_steps: Eager steps before capture (>= 1, default 2; on CPU, where nothing is
            captured, still checked).
        generator: A non-default CUDA generator ``step_fn`` draws from (registered with the graph).
        enabled: ``None`` (graph on CUDA, loop elsewhere), ``True`` (require CUDA) or ``False``.

    Returns:
        The final state, with the structure of ``state`` (a list for a list).

    Example:
        >>> x = torch.ones(4)
        >>> graphed_loop(lambda s: s * 0.5, x, 3)
        tensor([0.1250, 0.1250, 0.1250, 0.1250])
    """
    n = check_int("n_steps", n_steps, minimum=0)
    warm = check_int("warmup_steps", warmup_steps, minimum=1)
    if steps_per_graph is not None:
        check_int("steps_per_graph", steps_per_graph, minimum=1)
    check_generator(generator)
    tensors, container = _as_tuple(state, "state")
    on_cuda = all(t.device.type == "cuda" for t in tensors)
    if enabled is True and not on_cuda:
        raise ConfigurationError(
            "graphed_loop(enabled=True) needs every state tensor on a CUDA device, got "
            f"{sorted({str(t.device) for t in tensors})}"
        )
    use_graph = on_cuda if enabled is None else bool(enabled)

    def pack(cur):
        return cur[0] if container is None else container(cur)  # state's own type

    cur = tensors
    if not use_graph or n <= warm:
        for _ in range(n):
            cur = _call(step_fn, cur, container, tensors)
        return pack(cur)

    device = tensors[0].device
    register = _generator_to_register(generator, device)
    side = torch.cuda.Stream(device=device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warm):
            cur = _call(step_fn, cur, container, tensors)
    torch.cuda.current_stream(device).wait_stream(side)
    left = n - warm
    k = min(16, left) if steps_per_graph is None else min(steps_per_graph, left)

    # graph inputs live outside the graph's private memory pool, so they survive the graph
    static = tuple(t.clone() for t in cur)
    graph = torch.cuda.CUDAGraph()
    if register is not None:
        graph.register_generator_state(register)
    with torch.cuda.graph(graph):
        res = static
        for _ in range(k):
            res = _call(step_fn, res, container, tensors)
        for s, r in zip(static, res):
            if s is not r:
                s.copy_(r)
    reps, rest = divmod(left, k)
    for _ in range(reps):
        graph.replay()
    cur = static
    for _ in range(rest):
        cur = _call(step_fn, cur, container, tensors)
    return pack(cur)
