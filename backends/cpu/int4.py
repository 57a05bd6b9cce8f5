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
from sparseflow.backends.cpu.threads import serial_below
from sparseflow.ir.errors import InputError

# Dequantized tile size of the GEMM path. numba (OpenMP) and BLAS keep separate thread pools
# that spin after each call, so alternating them often costs more than the f32 traffic; 32 MiB
# bounds the temporary while needing few switches (one for 4096 x 2048, two for 4096 x 4096).
GEMM_TILE_BYTES = 32 << 20


# Output rows per pass of the GEMV: each x_even/x_odd element loaded feeds four rows' FMAs.
# 4096 x 4096, g = 128, 1 thread: 0.65 ms with one row per pass, 0.51 ms with two, 0.48 ms
# with four (docs/cpu_executor.md).
GEMV_ROWS_PER_PASS = 4


@njit(cache=True, fastmath=FASTMATH_REDUCE)
def _nibbles_dot(b, x_low, x_high):
    """Return low(b) x_low + high(b) x_high for a byte b holding two uint4 codes.

    Each nibble is cast back to uint8 before the float conversion: numba widens integer
    arithmetic to 64 bits, and the cast lets LLVM convert 16 lanes at a time from 32-bit
    integers instead of 8 from 64-bit ones (1.5x on the whole GEMV).
    """
    low, high = np.uint8(b & np.uint8(15)), np.uint8(b >> np.uint8(4))
    return np.float32(low) * x_low + np.float32(high) * x_high


@njit(parallel=True, cache=True, fastmath=FASTMATH_REDUCE)
def _int4_gemv(packed, scales, zeros, x_even, x_odd, x_group_sum, y):
    """Compute y[N] = W x from packed uint4 W with group scales/zeros (one token).

    Four rows per pass (the last pass repeats row N - 1 to fill its four); per group, the
    inner loop runs from 0 over slices, the shape LLVM vectorises (a loop from a runtime
    start ran scalar, 6-7x slower).
    """
    rows, n_groups = scales.shape
    bpg = packed.shape[1] // n_groups
    for task in prange((rows + GEMV_ROWS_PER_PASS - 1) // GEMV_ROWS_PER_PASS):
        n0 = task * GEMV_ROWS_PER_PASS
        n1, n2, n3 = min(n0 + 1, rows - 1), min(n0 + 2, rows - 1), min(n0 + 3, rows - 1)
        t0 = t1 = t2 = t3 = np.float32(0.0)
        for g in range(n_groups):
            j0, j1 = g * bpg, (g + 1) * bpg
            xe, xo = x_even[j0:j1], x_odd[j0:j1]
            b0, b1 = packed[n0, j0:j1], packed[n1, j0:j1]
            b2, b3 = packed[n2, j0:j1], packed[n3, j0:j1]
            d0 = d1 = d2 = d3 = np.float32(0.0)
            for j in range(bpg):
                e, o = xe[j], xo[j]
                d0 += _nibbles_dot(b0[j], e, o)
                d1 += _nibbles_dot(b1[j], e, o)
                d2 += _nibbles_dot(b2[j], e, o)
                d3 += _nibbles_dot(b3[j], e, o)
            xs = x_group_sum[g]
            t0 += scales[n0, g] * (d0 - np.float32(zeros[n0, g]) * xs)
            t1 += scales[n1, g] * (d1 - np.float32(zeros[n1, g]) * xs)
            t2 += scales[n2, g] * (d2 - np.float32(zeros[n2, g]) * xs)
            t3 += scales[n3, g] * (d3 - np.float32(zeros[n3, g]) * xs)
        y[n0], y[n1], y[n2], y[n3] = t0, t1, t2, t3


@njit(parallel=True, cache=True)
def _int4_dequant_rows(packed, scales, zeros, row0, out):
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
    with serial_below(w.packed.nbytes):
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
