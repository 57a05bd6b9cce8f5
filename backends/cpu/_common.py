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


# Tiles of the blocked transposes: 16 source rows (one gather of 16 f32 per destination
# row segment; more rows of a power-of-two stride collide in L1's sets) by 64 source columns.
# 1 thread, vs 32 x 32 scalar tiles: 128 x 4096 0.86 -> 0.21 ms, 4096 x 128 0.30 -> 0.15 ms.
_TRANSPOSE_ROWS, _TRANSPOSE_COLS = 16, 64


@njit(parallel=True, cache=True)
def _transpose_into(src, dst):
    """Write dst[j, i] = src[i, j] tile by tile, parallel over column tiles of src.

    The innermost loop runs from 0 along a destination row slice (contiguous stores, a gather
    from the source tile), the shape LLVM vectorises.
    """
    rows, cols = src.shape
    for jb in prange((cols + _TRANSPOSE_COLS - 1) // _TRANSPOSE_COLS):
        j0 = jb * _TRANSPOSE_COLS
        j1 = min(j0 + _TRANSPOSE_COLS, cols)
        for i0 in range(0, rows, _TRANSPOSE_ROWS):
            i1 = min(i0 + _TRANSPOSE_ROWS, rows)
            tile = src[i0:i1, j0:j1]
            for j in range(j1 - j0):
                row = dst[j0 + j, i0:i1]
                for i in range(row.shape[0]):
                    row[i] = tile[i, j]


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
def axpy4(acc, x0, x1, x2, x3, v0, v1, v2, v3):
    """Add v0 x0 + v1 x1 + v2 x2 + v3 x3 into acc, vectorised along its length."""
    for t in range(acc.shape[0]):
        acc[t] += v0 * x0[t] + v1 * x1[t] + v2 * x2[t] + v3 * x3[t]


@njit(cache=True)
def axpy1(acc, x0, v0):
    """Add v0 x0 into acc, vectorised along its length."""
    for t in range(acc.shape[0]):
        acc[t] += v0 * x0[t]


@njit(cache=True, inline="always")
def col4_tokens(acc, xt, cols, vals, stride):
    """Add sum_q vals[stride q + i] xt[cols[q]] into acc[i] for i = 0..3 (acc [4, T] f32).

    Prefill kernel of 4-row column blocks, four blocks per pass: each token vector of X is
    loaded once for four output rows (16 FMAs per 4 loads). Loops run from 0 over slices and
    x rows are picked with unsigned columns, so no index needs a wraparound select.
    """
    y0, y1, y2, y3 = acc[0], acc[1], acc[2], acc[3]
    q = 0
    while q + 4 <= cols.shape[0]:
        x0, x1 = xt[np.uint32(cols[q])], xt[np.uint32(cols[q + 1])]
        x2, x3 = xt[np.uint32(cols[q + 2])], xt[np.uint32(cols[q + 3])]
        v0, v1, v2, v3 = stride * q, stride * (q + 1), stride * (q + 2), stride * (q + 3)
        a00, a01, a02, a03 = vals[v0], vals[v0 + 1], vals[v0 + 2], vals[v0 + 3]
        a10, a11, a12, a13 = vals[v1], vals[v1 + 1], vals[v1 + 2], vals[v1 + 3]
        a20, a21, a22, a23 = vals[v2], vals[v2 + 1], vals[v2 + 2], vals[v2 + 3]
        a30, a31, a32, a33 = vals[v3], vals[v3 + 1], vals[v3 + 2], vals[v3 + 3]
        for t in range(y0.shape[0]):
            e0, e1, e2, e3 = x0[t], x1[t], x2[t], x3[t]
            y0[t] += a00 * e0 + a10 * e1 + a20 * e2 + a30 * e3
            y1[t] += a01 * e0 + a11 * e1 + a21 * e2 + a31 * e3
            y2[t] += a02 * e0 + a12 * e1 + a22 * e2 + a32 * e3
            y3[t] += a03 * e0 + a13 * e1 + a23 * e2 + a33 * e3
        q += 4
    while q < cols.shape[0]:
        x0, v0 = xt[np.uint32(cols[q])], stride * q
        a00, a01, a02, a03 = vals[v0], vals[v0 + 1], vals[v0 + 2], vals[v0 + 3]
        for t in range(y0.shape[0]):
            e0 = x0[t]
            y0[t] += a00 * e0
            y1[t] += a01 * e0
            y2[t] += a02 * e0
            y3[t] += a03 * e0
        q += 1


@njit(cache=True, inline="always")
def col4_dot(vals, cols, x, stride, zero):
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
