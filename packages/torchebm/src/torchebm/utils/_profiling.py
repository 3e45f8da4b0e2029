r"""`profile_context`: a thin wrapper over `torch.profiler` that prints a table or exports a trace."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch.profiler import ProfilerActivity, profile, record_function

__all__ = ["profile_context", "record_function"]


@contextmanager
def profile_context(
    activities: Sequence[ProfilerActivity] | None = None,
    record_shapes: bool = True,
    profile_memory: bool = True,
    with_stack: bool = False,
    sort_by: str | None = None,
    row_limit: int = 20,
    export_trace: str | None = None,
    print_table: bool = True,
) -> Iterator[profile]:
    """Profile the block with `torch.profiler.profile`; print a summary and/or export a trace.

    Args:
        activities: Profiler activities; default CPU, plus CUDA when available.
        record_shapes: Record input shapes of each op.
        profile_memory: Record allocations.
        with_stack: Record Python stacks (slower).
        sort_by: Column of the summary table (default: CUDA, else CPU total time).
        row_limit: Rows of the summary table.
        export_trace: Path of a Chrome trace (JSON) to write on exit, or ``None``.
        print_table: Print the summary table on exit.

    Yields:
        The `torch.profiler.profile` object.

    Example:
        >>> from torchebm.core import GaussianModel
        >>> from torchebm.samplers import LangevinDynamics
        >>> sampler = LangevinDynamics(GaussianModel(torch.zeros(2), torch.eye(2)), step_size=0.1)
        >>> with profile_context(print_table=False, export_trace="trace.json") as prof:
        ...     x = sampler.sample(dim=2, n_samples=256, n_steps=100)
    """
    if activities is None:
        activities = [ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(ProfilerActivity.CUDA)
    if sort_by is None:
        sort_by = "cuda_time_total" if ProfilerActivity.CUDA in activities else "cpu_time_total"
    with profile(
        activities=list(activities),
        record_shapes=record_shapes,
        profile_memory=profile_memory,
        with_stack=with_stack,
    ) as prof:
        yield prof
        if ProfilerActivity.CUDA in activities:
            torch.cuda.synchronize()
    if print_table:
        print(prof.key_averages().table(sort_by=sort_by, row_limit=row_limit))
    if export_trace is not None:
        prof.export_chrome_trace(str(export_trace))
