r"""The ``@triton.jit`` kernels of `torchebm.cuda` and their launchers.

Imported lazily (it imports ``triton``). Launchers take validated, contiguous tensors and plain
Python scalars; the public functions in the sibling modules do the checking.

Arithmetic runs in float32 (float64 for float64 tensors; float arguments are passed as
float64 and rounded to the compute dtype like torch rounds a Python scalar) with
floating-point contraction (FMA) disabled, in the operation order of the eager fallback. With
supplied noise the update uses only ``+ - *``, so each operation is rounded as the fallback
rounds it and the results are meant to agree bit for bit (checked exactly in Triton's CPU
interpreter for float32, float64 and float16, where the interpreter truncates float32 to
bfloat16 instead of rounding; the GPU tests allow float32 tolerance).

Random numbers: counter-based Philox (Salmon et al., 2011) keyed by a 64-bit seed that is
read from device memory (so drawing it from a ``torch.Generator`` needs no host sync and is
captured by CUDA graphs). One Philox call gives four uniforms, turned into four normals by the
Box-Muller transform. The counter is ``(index low 32 bits, index high 32 bits, step group,
stream tag)``, so the numbers do not depend on the block size or the GPU.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = [
    "langevin_step",
    "langevin_chain",
    "kick_drift",
    "leapfrog_analytic",
]

# ``kind`` (energy) and ``minv_mode`` (inverse mass layout) codes are defined with their
# eager counterparts in ``_analytic`` (0 harmonic, 1 double well, 2 diagonal Gaussian) and
# ``_leapfrog`` (0 none, 1 scalar, 2 per event coordinate, 3 per element).

_TAG_STEP = tl.constexpr(0x4C53)  # "LS": single Langevin step
_TAG_CHAIN = tl.constexpr(0x4C43)  # "LC": whole Langevin chain

_STEP_SUB = 512  # groups per program in the step kernel (4 elements per group)
_CHAIN_BLOCK = 128
_EW_BLOCK = 1024
_LAUNCH = {"num_warps": 4, "enable_fp_fusion": False}


# --------------------------------------------------------------------------- helpers
@triton.jit
def _normal4(seed, idx, group, TAG: tl.constexpr):
    """Four independent standard normals (float32) for each int64 counter in ``idx``."""
    c0 = (idx & 0xFFFFFFFF).to(tl.uint32)
    c1 = (idx >> 32).to(tl.uint32)
    c2 = (idx * 0 + group).to(tl.uint32)
    c3 = (idx * 0 + TAG).to(tl.uint32)
    r0, r1, r2, r3 = tl.philox(seed, c0, c1, c2, c3)
    u0 = tl.uint_to_uniform_float(r0)
    u1 = tl.uint_to_uniform_float(r1)
    u2 = tl.uint_to_uniform_float(r2)
    u3 = tl.uint_to_uniform_float(r3)
    n0, n1 = tl.pair_uniform_to_normal(u0, u1)
    n2, n3 = tl.pair_uniform_to_normal(u2, u3)
    return n0, n1, n2, n3


@triton.jit
def _load(ptr, idx, mask, F64: tl.constexpr):
    v = tl.load(ptr + idx, mask=mask, other=0.0)
    if F64:
        return v.to(tl.float64)
    else:
        return v.to(tl.float32)


@triton.jit
def _scalar(v, F64: tl.constexpr):
    """A float64 kernel argument in the compute dtype (rounded like torch rounds a Python scalar).

    ``v`` is a Python float under ``TRITON_INTERPRET=1``; multiplying it by a float64 one makes
    it a float64 tensor in every Triton version (Triton 3.6 has no ``tl.to_tensor``). Returned
    bare, the interpreter made a float32 tensor of it: float64 kernels rounded ``step_size``
    to float32 there (0.05 -> 0.05000000074505806)."""
    v64 = v * tl.full([1], 1.0, tl.float64)
    if F64:
        return v64
    else:
        return v64.to(tl.float32)


@triton.jit
def _i64(v):
    return v + tl.zeros([1], tl.int64)  # an int64 tensor, from a Python int or an int32 one


@triton.jit
def _cvt(v, F64: tl.constexpr):
    if F64:
        return v.to(tl.float64)
    else:
        return v.to(tl.float32)


@triton.jit
def _clamp(y, lo, hi):
    y = tl.maximum(y, lo, propagate_nan=tl.PropagateNan.ALL)
    return tl.minimum(y, hi, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _seed(seed_ptr, seed_val, SEED_FROM_PTR: tl.constexpr):
    if SEED_FROM_PTR:
        return tl.load(seed_ptr)
    else:
        return seed_val


@triton.jit
def _grad(x, a, b2, mu, prec, KIND: tl.constexpr):
    """Closed-form gradient of the elementwise analytic energies (same expressions as core)."""
    if KIND == 0:  # HarmonicModel: k x
        g = a * x
    elif KIND == 1:  # DoubleWellModel: 4h x (x^2 - b^2), a = 4h, b2 = b^2
        g = (a * x) * (x * x - b2)
    else:  # GaussianModel with diagonal covariance: (x - mu) / sigma^2
        g = (x - mu) * prec
    return g


@triton.jit
def _minv(minv_ptr, minv_s, idx, mask, event, MINV: tl.constexpr, F64: tl.constexpr):
    if MINV == 1:
        m = _scalar(minv_s, F64)
    elif MINV == 2:
        m = _load(minv_ptr, idx % event, mask, F64)
    else:
        m = _load(minv_ptr, idx, mask, F64)
    return m


@triton.jit
def _block(n, BLOCK: tl.constexpr):
    """This program's int64 element indices and their in-bounds mask."""
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    return idx, idx < n


@triton.jit
def _gauss_params(mu_ptr, prec_ptr, x, idx, mask, event, KIND: tl.constexpr, F64: tl.constexpr):
    """Per element ``(mu, 1/sigma^2)`` of a diagonal Gaussian (KIND 2); zeros otherwise."""
    if KIND == 2:
        col = idx % event
        mu = _load(mu_ptr, col, mask, F64)
        prec = _load(prec_ptr, col, mask, F64)
    else:
        mu = x * 0
        prec = x * 0
    return mu, prec


def _elementwise(x, block):
    """``(n, event, grid)`` of a launch over the elements of ``x``: ``event`` is the number
    of elements per batch row (``n = 0``: nothing to launch)."""
    n = x.numel()
    return n, (max(1, n // x.shape[0]) if n else 1), (triton.cdiv(n, block),)


# --------------------------------------------------------------------------- one Langevin step
@triton.jit
def _step_update(
    x_ptr, g_ptr, noise_ptr, out_ptr, idx, mask, eps, h, c, lo, hi,
    HAS_NOISE: tl.constexpr, HAS_CLAMP: tl.constexpr, F64: tl.constexpr,
):  # fmt: skip
    x = _load(x_ptr, idx, mask, F64)
    g = _load(g_ptr, idx, mask, F64)
    if HAS_NOISE:
        e = _load(noise_ptr, idx, mask, F64)
    else:
        e = _cvt(eps, F64)
    y = (x - h * g) + c * e
    if HAS_CLAMP:
        y = _clamp(y, lo, hi)
    tl.store(out_ptr + idx, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["seed_val"])
def _langevin_step_kernel(
    x_ptr, g_ptr, noise_ptr, out_ptr, seed_ptr, seed_val: tl.int64, n, n4,
    step_size: tl.float64, noise_coef: tl.float64, lo: tl.float64, hi: tl.float64,
    HAS_NOISE: tl.constexpr, SEED_FROM_PTR: tl.constexpr, HAS_CLAMP: tl.constexpr,
    F64: tl.constexpr, SUB: tl.constexpr,
):  # fmt: skip
    # element e belongs to group e % n4 and takes normal number e // n4 of that group's
    # Philox call, so each program loads four contiguous sub-blocks
    pid = tl.program_id(0)
    grp = pid.to(tl.int64) * SUB + tl.arange(0, SUB)
    gmask = grp < n4
    h = _scalar(step_size, F64)
    c = _scalar(noise_coef, F64)
    lo_c = _scalar(lo, F64)
    hi_c = _scalar(hi, F64)
    if HAS_NOISE:
        e0 = 0.0
        e1 = 0.0
        e2 = 0.0
        e3 = 0.0
    else:
        seed = _seed(seed_ptr, seed_val, SEED_FROM_PTR)
        e0, e1, e2, e3 = _normal4(seed, grp, 0, _TAG_STEP)
    i0 = grp
    i1 = i0 + n4  # int64 + int32: no overflow of k * n4 for huge tensors
    i2 = i1 + n4
    i3 = i2 + n4
    _step_update(x_ptr, g_ptr, noise_ptr, out_ptr, i0, gmask & (i0 < n), e0, h, c, lo_c, hi_c,
                 HAS_NOISE, HAS_CLAMP, F64)  # fmt: skip
    _step_update(x_ptr, g_ptr, noise_ptr, out_ptr, i1, gmask & (i1 < n), e1, h, c, lo_c, hi_c,
                 HAS_NOISE, HAS_CLAMP, F64)  # fmt: skip
    _step_update(x_ptr, g_ptr, noise_ptr, out_ptr, i2, gmask & (i2 < n), e2, h, c, lo_c, hi_c,
                 HAS_NOISE, HAS_CLAMP, F64)  # fmt: skip
    _step_update(x_ptr, g_ptr, noise_ptr, out_ptr, i3, gmask & (i3 < n), e3, h, c, lo_c, hi_c,
                 HAS_NOISE, HAS_CLAMP, F64)  # fmt: skip


def langevin_step(x, grad, noise, out, seed_t, seed_val, step_size, noise_coef, clamp):
    """Launch the fused step: ``out = clamp(x - step_size*grad + noise_coef*eps)``."""
    n = x.numel()
    if n == 0:
        return out
    n4 = (n + 3) // 4
    lo, hi = clamp if clamp is not None else (0.0, 0.0)
    grid = (triton.cdiv(n4, _STEP_SUB),)
    _langevin_step_kernel[grid](
        x, grad, noise if noise is not None else x, out,
        seed_t if seed_t is not None else x, int(seed_val or 0), n, n4,
        float(step_size), float(noise_coef), float(lo), float(hi),
        HAS_NOISE=noise is not None, SEED_FROM_PTR=seed_t is not None,
        HAS_CLAMP=clamp is not None, F64=x.dtype.itemsize == 8 and x.is_floating_point(),
        SUB=_STEP_SUB, **_LAUNCH,
    )  # fmt: skip
    return out


# --------------------------------------------------------------------------- whole Langevin chain
@triton.jit
def _chain_update(x, e, h, c, lo, hi, a, b2, mu, prec, KIND: tl.constexpr,
                  HAS_CLAMP: tl.constexpr):  # fmt: skip
    g = _grad(x, a, b2, mu, prec, KIND)
    y = (x - h * g) + c * e
    if HAS_CLAMP:
        y = _clamp(y, lo, hi)
    return y


@triton.jit(do_not_specialize=["seed_val", "n_steps"])
def _langevin_chain_kernel(
    x_ptr, out_ptr, noise_ptr, seed_ptr, mu_ptr, prec_ptr, seed_val: tl.int64, n, event, n_steps,
    step_size: tl.float64, noise_coef: tl.float64, a: tl.float64, b2: tl.float64,
    lo: tl.float64, hi: tl.float64,
    KIND: tl.constexpr, HAS_NOISE: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    HAS_CLAMP: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    idx, mask = _block(n, BLOCK)
    x = _load(x_ptr, idx, mask, F64)
    h = _scalar(step_size, F64)
    c = _scalar(noise_coef, F64)
    a_c = _scalar(a, F64)
    b2_c = _scalar(b2, F64)
    lo_c = _scalar(lo, F64)
    hi_c = _scalar(hi, F64)
    mu, prec = _gauss_params(mu_ptr, prec_ptr, x, idx, mask, event, KIND, F64)
    seed = _seed(seed_ptr, seed_val, SEED_FROM_PTR)
    # four steps per iteration: one Philox call gives the four normals
    for j in range(0, n_steps, 4):
        if HAS_NOISE:
            e0 = _load(noise_ptr, _i64(j) * n + idx, mask, F64)
        else:
            e0, e1, e2, e3 = _normal4(seed, idx, j // 4, _TAG_CHAIN)
        x = _chain_update(x, e0, h, c, lo_c, hi_c, a_c, b2_c, mu, prec, KIND, HAS_CLAMP)
        if j + 1 < n_steps:
            if HAS_NOISE:
                e1 = _load(noise_ptr, _i64(j + 1) * n + idx, mask, F64)
            x = _chain_update(x, e1, h, c, lo_c, hi_c, a_c, b2_c, mu, prec, KIND, HAS_CLAMP)
        if j + 2 < n_steps:
            if HAS_NOISE:
                e2 = _load(noise_ptr, _i64(j + 2) * n + idx, mask, F64)
            x = _chain_update(x, e2, h, c, lo_c, hi_c, a_c, b2_c, mu, prec, KIND, HAS_CLAMP)
        if j + 3 < n_steps:
            if HAS_NOISE:
                e3 = _load(noise_ptr, _i64(j + 3) * n + idx, mask, F64)
            x = _chain_update(x, e3, h, c, lo_c, hi_c, a_c, b2_c, mu, prec, KIND, HAS_CLAMP)
    tl.store(out_ptr + idx, x.to(out_ptr.dtype.element_ty), mask=mask)


def langevin_chain(
    x, out, noise, seed_t, seed_val, kind, a, b2, mu, prec, n_steps, step_size, noise_coef, clamp
):
    """Launch the whole-chain kernel (``n_steps`` Langevin steps of an elementwise energy)."""
    n, event, grid = _elementwise(x, _CHAIN_BLOCK)
    if n == 0:
        return out
    lo, hi = clamp if clamp is not None else (0.0, 0.0)
    _langevin_chain_kernel[grid](
        x, out, noise if noise is not None else x, seed_t if seed_t is not None else x,
        mu if mu is not None else x, prec if prec is not None else x,
        int(seed_val or 0), n, event, int(n_steps),
        float(step_size), float(noise_coef), float(a), float(b2), float(lo), float(hi),
        KIND=kind, HAS_NOISE=noise is not None, SEED_FROM_PTR=seed_t is not None,
        HAS_CLAMP=clamp is not None, F64=x.dtype.itemsize == 8, BLOCK=_CHAIN_BLOCK, **_LAUNCH,
    )  # fmt: skip
    return out


# --------------------------------------------------------------------------- leapfrog
@triton.jit
def _kick_drift_kernel(
    x_ptr, p_ptr, g_ptr, minv_ptr, n, event, kick: tl.float64, h: tl.float64, minv_s: tl.float64,
    DRIFT: tl.constexpr, MINV: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    idx, mask = _block(n, BLOCK)
    p = _load(p_ptr, idx, mask, F64)
    g = _load(g_ptr, idx, mask, F64)
    p = p - _scalar(kick, F64) * g
    tl.store(p_ptr + idx, p.to(p_ptr.dtype.element_ty), mask=mask)
    if DRIFT:
        # the drift reads the momentum as stored, so a half-precision state matches the
        # eager fallback, which rounds p to the state dtype between the two updates
        p = p.to(p_ptr.dtype.element_ty)
        p = _cvt(p, F64)
        x = _load(x_ptr, idx, mask, F64)
        if MINV == 0:
            v = p
        else:
            v = p * _minv(minv_ptr, minv_s, idx, mask, event, MINV, F64)
        x = x + _scalar(h, F64) * v
        tl.store(x_ptr + idx, x.to(x_ptr.dtype.element_ty), mask=mask)


def kick_drift(x, p, g, minv, minv_s, minv_mode, kick, step_size, drift):
    """In place: ``p -= kick*g``; then, if ``drift``, ``x += step_size * p * minv``."""
    n, event, grid = _elementwise(x, _EW_BLOCK)
    if n == 0:
        return
    _kick_drift_kernel[grid](
        x, p, g, minv if minv is not None else x, n, event,
        float(kick), float(step_size), float(minv_s),
        DRIFT=bool(drift), MINV=minv_mode, F64=x.dtype.itemsize == 8, BLOCK=_EW_BLOCK, **_LAUNCH,
    )  # fmt: skip


@triton.jit
def _drift(x, p, m, h, MINV: tl.constexpr):
    """The leapfrog drift ``x + h * M^{-1} p`` (``m`` is unused without a mass, MINV 0)."""
    if MINV == 0:
        y = x + h * p
    else:
        y = x + h * (p * m)
    return y


@triton.jit(do_not_specialize=["n_steps"])
def _leapfrog_analytic_kernel(
    x_ptr, p_ptr, g_ptr, x_out, p_out, g_out, minv_ptr, mu_ptr, prec_ptr,
    n, event, n_steps, h: tl.float64, half_h: tl.float64, minv_s: tl.float64,
    a: tl.float64, b2: tl.float64,
    KIND: tl.constexpr, MINV: tl.constexpr, HAS_GRAD: tl.constexpr, F64: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    idx, mask = _block(n, BLOCK)
    x = _load(x_ptr, idx, mask, F64)
    p = _load(p_ptr, idx, mask, F64)
    h_c = _scalar(h, F64)
    hh = _scalar(half_h, F64)
    a_c = _scalar(a, F64)
    b2_c = _scalar(b2, F64)
    mu, prec = _gauss_params(mu_ptr, prec_ptr, x, idx, mask, event, KIND, F64)
    if MINV == 0:
        m = x * 0 + 1
    else:
        m = _minv(minv_ptr, minv_s, idx, mask, event, MINV, F64)
    if HAS_GRAD:
        g = _load(g_ptr, idx, mask, F64)
    else:
        g = _grad(x, a_c, b2_c, mu, prec, KIND)
    p = p - hh * g
    for _ in range(n_steps - 1):
        x = _drift(x, p, m, h_c, MINV)
        g = _grad(x, a_c, b2_c, mu, prec, KIND)
        p = p - h_c * g
    x = _drift(x, p, m, h_c, MINV)
    g = _grad(x, a_c, b2_c, mu, prec, KIND)
    p = p - hh * g
    tl.store(x_out + idx, x.to(x_out.dtype.element_ty), mask=mask)
    tl.store(p_out + idx, p.to(p_out.dtype.element_ty), mask=mask)
    tl.store(g_out + idx, g.to(g_out.dtype.element_ty), mask=mask)


def leapfrog_analytic(
    x, p, g, x_out, p_out, g_out, minv, minv_s, minv_mode, kind, a, b2, mu, prec, n_steps, h
):
    """Launch the whole leapfrog trajectory for an elementwise analytic energy."""
    n, event, grid = _elementwise(x, _CHAIN_BLOCK)
    if n == 0:
        return
    _leapfrog_analytic_kernel[grid](
        x, p, g if g is not None else x, x_out, p_out, g_out, minv if minv is not None else x,
        mu if mu is not None else x, prec if prec is not None else x,
        n, event, int(n_steps), float(h), 0.5 * float(h), float(minv_s), float(a), float(b2),
        KIND=kind, MINV=minv_mode, HAS_GRAD=g is not None, F64=x.dtype.itemsize == 8,
        BLOCK=_CHAIN_BLOCK, **_LAUNCH,
    )  # fmt: skip
