"""Provide int4 weight-only group-wise products Y = X W^T with on-the-fly dequantization.

W is an `Int4Weight` (uint4 codes, two per byte, per-(row, group) scale s and zero point z;
w = (q - z) s). Two paths:
- GEMV (T = 1, decode): reads only the packed bytes, never materialises W. Per group,
  y[n] += s (sum_j q_j x_j - z sum_j x_j): the zero point is folded into a per-group sum of x,
  and the even/odd nibbles meet pre-split even/odd halves of x, so the inner loop is a
  vectorised byte -> float multiply-add.
- GEMM (T > 1, prefill): dequantizes a tile of rows into a cache-sized f32 buffer and hands
  it to BLAS, so compute runs at dense BLAS speed while W stays 4-bit in memory.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from sparseflow.backends.cpu._common import DECODE_MAX_TOKENS, check_activation
from sparseflow.backends.cpu.bsr_fp32 import FASTMATH_REDUCE
from sparseflow.backends.cpu.quant import Int4Weight
from sparseflow.ir.errors import InputError

# Dequantized tile size of the GEMM path. numba (OpenMP) and BLAS keep separate thread pools
# that spin after each call, so alternating them often costs more than the f32 traffic; 32 MiB
# bounds the temporary while needing few switches (one for 4096 x 2048, two for 4096 x 4096).
GEMM_TILE_BYTES = 32 << 20


@njit(parallel=True, cache=True, fastmath=FASTMATH_REDUCE)
def _int4_gemv(packed, scales, zeros, x_even, x_odd, x_group_sum, y):  # noqa: ANN001, ANN201
    """Compute y[N] = W x from packed uint4 W with group scales/zeros (one token).

    The inner loop has this shape on purpose: a row slice, a trip count from 0 and uint8 nibble
    arithmetic vectorise; the previous form (2-D index, loop from a runtime start, int32
    widening) ran scalar and 6-7x slower (docs/cpu_executor.md).
    """
    rows, n_groups = scales.shape
    bytes_per_group = packed.shape[1] // n_groups
    for n in prange(rows):
        row = packed[n]
        total = np.float32(0.0)
        for g in range(n_groups):
            base = g * bytes_per_group
            dot = np.float32(0.0)
            for j in range(bytes_per_group):
                b = row[base + j]
                low, high = np.float32(b & np.uint8(15)), np.float32(b >> np.uint8(4))
                dot += low * x_even[base + j] + high * x_odd[base + j]
            total += scales[n, g] * (dot - np.float32(zeros[n, g]) * x_group_sum[g])
        y[n] = total


@njit(parallel=True, cache=True)
def _int4_dequant_rows(packed, scales, zeros, row0, out):  # noqa: ANN001, ANN201
    """Write the f32 weights of rows row0 .. row0 + len(out) into out[rows, K]."""
    n_groups = scales.shape[1]
    bytes_per_group = packed.shape[1] // n_groups
    for r in prange(out.shape[0]):
        n = row0 + r
        for g in range(n_groups):
            s, z = scales[n, g], np.float32(zeros[n, g])
            for j in range(g * bytes_per_group, (g + 1) * bytes_per_group):
                b = np.int32(packed[n, j])
                out[r, 2 * j] = (np.float32(b & 15) - z) * s
                out[r, 2 * j + 1] = (np.float32(b >> 4) - z) * s


def int4_gemv(x: np.ndarray, w: Int4Weight) -> np.ndarray:
    """Return Y[1, N] = x[1, K] W^T for an `Int4Weight`, reading W only in packed form."""
    n_rows, n_cols = w.shape
    check_activation(x, n_cols, np.float32, "int4_gemv")
    if x.shape[0] != 1:
        raise InputError(f"int4_gemv: activation has T = {x.shape[0]} tokens, expected 1")
    xv = x[0]
    group_sum = xv.reshape(-1, w.group).sum(axis=1, dtype=np.float32)
    y = np.empty(n_rows, np.float32)
    x_even, x_odd = np.ascontiguousarray(xv[0::2]), np.ascontiguousarray(xv[1::2])
    _int4_gemv(w.packed, w.scales, w.zeros, x_even, x_odd, group_sum, y)
    return y.reshape(1, n_rows)


def int4_gemm(x: np.ndarray, w: Int4Weight) -> np.ndarray:
    """Return Y[T, N] = X[T, K] W^T for an `Int4Weight`; T = 1 takes the GEMV path."""
    n_rows, n_cols = w.shape
    check_activation(x, n_cols, np.float32, "int4_gemm")
    if x.shape[0] == 0:
        return np.zeros((0, n_rows), np.float32)
    if x.shape[0] <= DECODE_MAX_TOKENS:
        return int4_gemv(x, w)
    tile_rows = max(1, GEMM_TILE_BYTES // (4 * max(1, n_cols)))
    tile = np.empty((min(tile_rows, n_rows), n_cols), np.float32)
    y = np.empty((x.shape[0], n_rows), np.float32)
    for row0 in range(0, n_rows, tile_rows):
        rows = min(tile_rows, n_rows - row0)
        _int4_dequant_rows(w.packed, w.scales, w.zeros, row0, tile[:rows])
        np.matmul(x, tile[:rows].T, out=y[:, row0 : row0 + rows])
    return y
