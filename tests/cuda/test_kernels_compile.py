"""Every kernel compiles to a Hopper (sm_90) and an Ampere (sm_80) cubin, without a GPU.

Triton's interpreter accepts programs the real compiler rejects (and vice versa), so the
launch arguments each public function produces are captured on CPU tensors and fed to
``triton.compile`` for real CUDA targets. This also checks that every launcher passes
exactly the kernel's parameters, with the annotated types.
"""

import importlib.util

import pytest
import torch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed"),
]

import torchebm.cuda as tc  # noqa: E402
from torchebm.core import DoubleWellModel, GaussianModel, HarmonicModel  # noqa: E402

_TY = {
    torch.float32: "fp32",
    torch.float64: "fp64",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.int64: "i64",
}


class _Recorder:
    """Stands in for a JITFunction: records ``kernel[grid](*args, **kwargs)``."""

    def __init__(self, fn, calls):
        self.fn, self.calls = fn, calls

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.calls.append((self.fn, args, kwargs))

        return launch


def _capture(monkeypatch):
    if tc.interpreter_enabled():
        pytest.skip("TRITON_INTERPRET=1: kernels are interpreted, not compiled")
    from torchebm.cuda import _chain, _kernels, _langevin, _leapfrog

    calls = []
    for name in dir(_kernels):
        obj = getattr(_kernels, name)
        if name.endswith("_kernel") and hasattr(obj, "params"):
            monkeypatch.setattr(_kernels, name, _Recorder(obj, calls))
    # launch "on CUDA" with CPU tensors: the recorder never touches the data
    for mod in (_langevin, _chain, _leapfrog):
        monkeypatch.setattr(mod, "resolve_backend", lambda force, x, compiling=None: "triton")
    return calls


def _compile(fn, args, kwargs, arch):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = [p.name for p in fn.params]
    bound = dict(zip(names, args)) | {k: v for k, v in kwargs.items() if k in names}
    assert set(bound) == set(names), f"{fn.__name__}: launcher args {sorted(bound)} != {names}"
    sig, const = {}, {}
    for p in fn.params:
        v = bound[p.name]
        if p.is_constexpr:
            sig[p.name] = "constexpr"
            const[p.name] = v
        elif isinstance(v, torch.Tensor):
            sig[p.name] = "*" + _TY[v.dtype]
        elif p.annotation_type:
            sig[p.name] = p.annotation_type
        else:
            assert isinstance(v, int) and not isinstance(v, bool), (p.name, v)
            sig[p.name] = "i32"
    opts = {k: v for k, v in kwargs.items() if k in ("num_warps", "enable_fp_fusion")}
    src = ASTSource(fn=fn, signature=sig, constexprs=const)
    out = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=opts)
    assert len(out.asm["cubin"]) > 0


def _cases():
    g = torch.Generator().manual_seed(0)
    x32 = torch.randn(40, 3, generator=g)
    gauss = GaussianModel(torch.zeros(3), torch.diag(torch.tensor([1.0, 2.0, 3.0])))
    return [
        lambda: tc.fused_langevin_step(x32, x32, 0.1, clamp=(-1, 1), generator=g),
        lambda: tc.fused_langevin_step(x32.double(), x32.double(), 0.1, noise=x32, seed=None),
        lambda: tc.fused_langevin_step(x32.bfloat16(), x32.bfloat16(), 0.1, seed=3),
        lambda: tc.langevin_chain(
            x32, DoubleWellModel(), 5, 0.1, clamp=(-2, 2), generator=g, check_finite=False
        ),  # fmt: skip
        lambda: tc.langevin_chain(
            x32.half(), gauss, 5, 0.1, noise=torch.zeros(5, 40, 3), check_finite=False
        ),  # fmt: skip
        lambda: tc.fused_leapfrog_step(
            x32, x32, HarmonicModel().gradient, 0.1, 2, mass=torch.ones(3)
        ),  # fmt: skip
        lambda: tc.fused_leapfrog_step(x32.double(), x32.double(), gauss, 0.1, 2, mass=2.0),
    ]


@pytest.mark.parametrize("arch", [90, 80])
def test_every_kernel_compiles_for_cuda(monkeypatch, arch):
    calls = _capture(monkeypatch)
    for case in _cases():
        case()  # outputs are garbage (nothing ran): only the recorded launches matter
    kinds = {fn.__name__ for fn, _, _ in calls}
    assert kinds == {
        "_langevin_step_kernel",
        "_langevin_chain_kernel",
        "_kick_drift_kernel",
        "_leapfrog_analytic_kernel",
    }
    seen = set()
    for fn, args, kwargs in calls:
        key = (fn.__name__, tuple(sorted((k, v) for k, v in kwargs.items() if k.isupper())))
        key += tuple(str(a.dtype) for a in args if isinstance(a, torch.Tensor))
        if key not in seen:
            seen.add(key)
            _compile(fn, args, kwargs, arch)
