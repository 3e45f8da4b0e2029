"""The registry of workloads, in report order."""

from __future__ import annotations

from _harness import Workload

__all__ = ["all_workloads"]


def all_workloads() -> list[Workload]:
    import _cuda
    import _evaluation
    import _flows
    import _imports
    import _losses
    import _samplers

    cuda = Workload(
        "cuda_langevin",
        "cuda",
        "torchebm.cuda Langevin kernels vs hand-written loop (benchmarks/cuda_langevin.py)",
        rows=_cuda.cuda_results,
    )
    return [
        *_samplers.WORKLOADS,
        *_losses.WORKLOADS,
        *_flows.WORKLOADS,
        *_evaluation.WORKLOADS,
        *_imports.WORKLOADS,
        cuda,
    ]
