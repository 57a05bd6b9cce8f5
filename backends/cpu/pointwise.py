"""Provide numba kernels for the row-wise ops around the linears: GELU, LayerNorm, softmax.

Each computes what the op's numpy reference computes (ir/ops_math.py), in one parallel pass
over rows instead of numpy's several whole-array temporaries, and with numba's own thread
pool, so an encoder whose linears run numba kernels does not hand the CPU back and forth
between numba and BLAS threads. GELU uses the exact erf (`math.erf`); the reference's
Abramowitz-Stegun erf is within 1.5e-7 of it. Inputs are viewed as [rows, last axis].
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# GELU tanh approximation constants (Hendrycks & Gimpel 2016, GPT-2's gelu_new).
_GELU_TANH_SCALE = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


@njit(parallel=True, cache=True)
def _gelu_rows(x, out, tanh_form):  # noqa: ANN001, ANN201 (numba-typed)
    """Write GELU(x) into out, row-parallel, computing in float64 like the reference."""
    for r in prange(x.shape[0]):
        for c in range(x.shape[1]):
            v = np.float64(x[r, c])
            if tanh_form:
                inner = _GELU_TANH_SCALE * (v + _GELU_TANH_CUBIC * v * v * v)
                out[r, c] = 0.5 * v * (1.0 + math.tanh(inner))
            else:
                out[r, c] = 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))


@njit(parallel=True, cache=True)
def _layernorm_rows(x, w, b, eps, out):  # noqa: ANN001, ANN201 (numba-typed)
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


@njit(parallel=True, cache=True)
def _softmax_rows(x, out):  # noqa: ANN001, ANN201 (numba-typed)
    """Write the max-subtracted softmax of each row into out."""
    for r in prange(x.shape[0]):
        top = x[r, 0]
        for c in range(1, x.shape[1]):
            top = max(top, x[r, c])
        total = 0.0
        for c in range(x.shape[1]):
            e = np.exp(x[r, c] - top)
            out[r, c] = e
            total += e
        inv = np.float32(1.0 / total)
        for c in range(x.shape[1]):
            out[r, c] *= inv


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


def softmax_last(x: np.ndarray) -> np.ndarray:
    """Return the softmax of x along its last axis."""
    out = np.empty(x.shape, np.float32)
    _softmax_rows(_rows(x), out.reshape(-1, x.shape[-1]))
    return out
