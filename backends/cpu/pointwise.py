"""Provide numba kernels for the row-wise ops around the linears where they pay: GELU, LayerNorm.

Each computes what the op's numpy reference computes (ir/ops_math.py), in one parallel pass
over rows instead of numpy's several whole-array temporaries, and with numba's own thread
pool, so an encoder whose linears run numba kernels does not hand the CPU back and forth
between numba and BLAS threads. GELU's erf is a rational f32 approximation (within a few f32
ulps of erf; the reference's f64 Abramowitz-Stegun erf is within 1.5e-7). Softmax stays with
numpy: without SVML numba's exp is a scalar call, slower than numpy's SIMD exp.
Inputs are viewed as [rows, last axis].
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# GELU tanh approximation constants (Hendrycks & Gimpel 2016, GPT-2's gelu_new).
_GELU_TANH_SCALE = np.float32(math.sqrt(2.0 / math.pi))
_GELU_TANH_CUBIC = np.float32(0.044715)
_INV_SQRT2 = np.float32(1.0 / math.sqrt(2.0))
# f32 erf as a rational function on [-4, 4] (erf(4) = 1 - 1.5e-8 rounds to 1 in f32), from
# Eigen's generic_fast_erf_float (unsupported/Eigen/src/SpecialFunctions), highest power first:
# P has the odd-power coefficients alpha_13 .. alpha_1, Q the even-power beta_8 .. beta_0.
_ERF_CLAMP = np.float32(4.0)
_ERF_ALPHA = (
    np.float32(-2.72614225801306e-10),
    np.float32(2.77068142495902e-08),
    np.float32(-2.10102402082508e-06),
    np.float32(-5.69250639462346e-05),
    np.float32(-7.34990630326855e-04),
    np.float32(-2.95459980854025e-03),
    np.float32(-1.60960333262415e-02),
)
_ERF_BETA = (
    np.float32(-1.45660718464996e-05), np.float32(-2.13374055278905e-04),
    np.float32(-1.68282697438203e-03), np.float32(-7.37332916720468e-03),
    np.float32(-1.42647390514189e-02),
)  # fmt: skip


@njit(cache=True)
def _erf(x):
    """Return erf(x) in f32 as x P(x^2) / Q(x^2) on x clamped to [-4, 4] (no exp: vectorises)."""
    x = min(max(x, -_ERF_CLAMP), _ERF_CLAMP)
    x2 = x * x
    p = _ERF_ALPHA[0]
    for a in _ERF_ALPHA[1:]:
        p = p * x2 + a
    q = _ERF_BETA[0]
    for b in _ERF_BETA[1:]:
        q = q * x2 + b
    return x * p / q


@njit(parallel=True, cache=True, fastmath={"contract", "afn"})
def _gelu_rows(x, out, tanh_form):
    """Write GELU(x) into out, row-parallel, in f32."""
    half, one = np.float32(0.5), np.float32(1.0)
    for r in prange(x.shape[0]):
        for c in range(x.shape[1]):
            v = x[r, c]
            if tanh_form:
                inner = _GELU_TANH_SCALE * (v + _GELU_TANH_CUBIC * v * v * v)
                out[r, c] = half * v * (one + np.tanh(inner))
            else:
                out[r, c] = half * v * (one + _erf(v * _INV_SQRT2))


@njit(parallel=True, cache=True)
def _layernorm_rows(x, w, b, eps, out):
    """Write (x - mean) / sqrt(var + eps) * w + b per row into out (f32 like the reference)."""
    cols = x.shape[1]
    for r in prange(x.shape[0]):
        total = 0.0  # float64 sums: no drift over long rows
        for c in range(cols):
            total += x[r, c]
        mean = np.float32(total / cols)
        squares = 0.0
        for c in range(cols):
            d = x[r, c] - mean
            squares += d * d
        inv = np.float32(1.0) / np.sqrt(np.float32(squares / cols) + eps)
        for c in range(cols):
            out[r, c] = (x[r, c] - mean) * inv * w[c] + b[c]


def _rows(x: np.ndarray) -> np.ndarray:
    """Return x as a contiguous f32 [rows, last axis] array."""
    return np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """Return GELU(x) (approximate "none": erf form; "tanh": GPT-2's form) as f32."""
    out = np.empty(x.shape, np.float32)
    _gelu_rows(_rows(x), out.reshape(-1, x.shape[-1]), approximate == "tanh")
    return out


def layernorm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """Return LayerNorm of x over its last axis with scale w and shift b."""
    out = np.empty(x.shape, np.float32)
    w32, b32 = (np.ascontiguousarray(v, dtype=np.float32) for v in (w, b))
    _layernorm_rows(_rows(x), w32, b32, np.float32(eps), out.reshape(-1, x.shape[-1]))
    return out
