"""Provide the input checks, layout transforms and SIMD micro-kernels shared by the CPU kernels.

Layout: the prefill kernels compute Yt[N_pad, T] = W Xt with Xt = X^T laid out [K_pad, T],
so the innermost loop runs along tokens, contiguous in memory, and LLVM vectorises it to the
machine's SIMD width (refs/toolchain.md: "SIMD along tokens"). Decode (T = 1) kernels keep x
as a vector and reduce along K instead.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from sparseflow.ir.errors import InputError

# Token-dimension threshold under which the decode (GEMV) kernels run instead of the
# tokens-along-SIMD kernels: with one token there is no SIMD work along T.
DECODE_MAX_TOKENS = 1


def check_activation(x: np.ndarray, k: int, dtype: type, name: str) -> None:
    """Raise `InputError` unless x is a 2-D [T, k] array of `dtype`."""
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise InputError(f"{name}: activation must be a 2-D [T, K] array")
    if x.dtype != dtype:
        raise InputError(f"{name}: activation dtype {x.dtype}, expected {np.dtype(dtype)}")
    if x.shape[1] != k:
        raise InputError(f"{name}: activation has K = {x.shape[1]}, weight has K = {k}")


# Square tile edge of the blocked transposes: 32 x 32 f32 = 4 KiB per tile, far inside L1.
_TRANSPOSE_TILE = 32


@njit(parallel=True, cache=True)
def _transpose_into(src, dst):  # noqa: ANN001, ANN201 (numba-typed)
    """Write dst[j, i] = src[i, j] tile by tile, parallel over column tiles of src."""
    rows, cols = src.shape
    tile = _TRANSPOSE_TILE
    for jb in prange((cols + tile - 1) // tile):
        j0, j1 = jb * tile, min(jb * tile + tile, cols)
        for i0 in range(0, rows, tile):
            for j in range(j0, j1):
                for i in range(i0, min(i0 + tile, rows)):
                    dst[j, i] = src[i, j]


def transpose_padded(x: np.ndarray, k_pad: int) -> np.ndarray:
    """Return x[T, K] as a contiguous [k_pad, T] array, zero rows below K."""
    xt = np.empty((k_pad, x.shape[0]), dtype=x.dtype)
    xt[x.shape[1] :] = 0
    _transpose_into(np.ascontiguousarray(x), xt)
    return xt


def pad_vector(x: np.ndarray, k_pad: int) -> np.ndarray:
    """Return the single row of x[1, K] as a contiguous length-k_pad vector, zero-padded.

    Without padding this is x's own row (no copy when it is contiguous): kernels only read it.
    """
    row = np.ascontiguousarray(x[0])
    if k_pad == row.shape[0]:
        return row
    xv = np.zeros(k_pad, dtype=x.dtype)
    xv[: x.shape[1]] = row
    return xv


def untranspose(yt: np.ndarray, n: int) -> np.ndarray:
    """Return the first n rows of yt[N_pad, T] as a contiguous [T, n] array."""
    y = np.empty((yt.shape[1], n), dtype=yt.dtype)
    _transpose_into(yt[:n], y)
    return y


@njit(cache=True)
def axpy4(acc, x0, x1, x2, x3, v0, v1, v2, v3):  # noqa: ANN001, ANN201 (numba-typed)
    """Add v0 x0 + v1 x1 + v2 x2 + v3 x3 into acc, vectorised along its length."""
    for t in range(acc.shape[0]):
        acc[t] += v0 * x0[t] + v1 * x1[t] + v2 * x2[t] + v3 * x3[t]


@njit(cache=True)
def axpy1(acc, x0, v0):  # noqa: ANN001, ANN201 (numba-typed)
    """Add v0 x0 into acc, vectorised along its length."""
    for t in range(acc.shape[0]):
        acc[t] += v0 * x0[t]


@njit(cache=True)
def rank1x4x4(acc, i0, x0, x1, x2, x3, values, p):  # noqa: ANN001, ANN201 (numba-typed)
    """Add the 4x1 column blocks values[p..p+3, i0..i0+3] into acc rows i0..i0+3.

    acc[i0 + i] += sum_j values[p + j, i0 + i] xj. Each token vector of x is loaded once and
    used for four output rows (16 FMAs per 4 loads), which keeps the loop compute-bound.
    """
    a00, a01, a02, a03 = values[p, i0], values[p, i0 + 1], values[p, i0 + 2], values[p, i0 + 3]
    q = p + 1
    a10, a11, a12, a13 = values[q, i0], values[q, i0 + 1], values[q, i0 + 2], values[q, i0 + 3]
    q = p + 2
    a20, a21, a22, a23 = values[q, i0], values[q, i0 + 1], values[q, i0 + 2], values[q, i0 + 3]
    q = p + 3
    a30, a31, a32, a33 = values[q, i0], values[q, i0 + 1], values[q, i0 + 2], values[q, i0 + 3]
    for t in range(acc.shape[1]):
        e0, e1, e2, e3 = x0[t], x1[t], x2[t], x3[t]
        acc[i0, t] += a00 * e0 + a10 * e1 + a20 * e2 + a30 * e3
        acc[i0 + 1, t] += a01 * e0 + a11 * e1 + a21 * e2 + a31 * e3
        acc[i0 + 2, t] += a02 * e0 + a12 * e1 + a22 * e2 + a32 * e3
        acc[i0 + 3, t] += a03 * e0 + a13 * e1 + a23 * e2 + a33 * e3


@njit(cache=True, inline="always")
def col4_dot(vals, cols, x, stride, zero):  # noqa: ANN001, ANN201 (numba-typed)
    """Return the four sums s_i = zero + sum_q vals[stride q + i] x[cols[q]], i = 0..3.

    Decode kernel of 4-row column blocks. The loop runs from 0 over slices and indexes x with
    an unsigned column, so no index needs a negative-wraparound select: LLVM then vectorises
    it with contiguous loads of `vals` (when `stride` is the literal 4) and a gather of x.
    `zero` sets the accumulator type (f32, or int64 for exact int8 products).
    """
    a0 = a1 = a2 = a3 = zero
    for q in range(cols.shape[0]):
        xk = x[np.uint32(cols[q])]
        v = stride * q
        a0 += vals[v] * xk
        a1 += vals[v + 1] * xk
        a2 += vals[v + 2] * xk
        a3 += vals[v + 3] * xk
    return a0, a1, a2, a3
