"""Provide int8 x int8 -> int32 products with per-token / per-channel scales (dense and BSR).

Y = (qX @ qW^T as int32) * sx[:, None] * sw[None, :]. The int32 accumulation is exact while
K * 128^2 < 2^31 (K < 131072), so these kernels agree bit for bit with a numpy int64
reference cast to int32; the scaling is one f32 multiply chain, the same as the reference.
Prefill kernels run tokens along SIMD (qXt[K, T]); decode (T = 1) kernels reduce along K.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from sparseflow.backends.cpu._common import (
    DECODE_MAX_TOKENS,
    check_activation,
    col4_tokens,
    pad_vector,
    transpose_padded,
)
from sparseflow.backends.cpu.bsr_fp32 import bsr_col_decode
from sparseflow.backends.cpu.formats import BsrMatrix
from sparseflow.backends.cpu.quant import Int8Weight
from sparseflow.backends.cpu.threads import serial_below
from sparseflow.ir.errors import InputError

# Largest K for which an int32 sum of int8 x int8 products cannot overflow: 2^31 / 128^2.
MAX_EXACT_K = 2**31 // (128 * 128)


# Exact f32 accumulation: int8 x int8 products are integers of magnitude <= 128^2 = 2^14, and
# f32 represents every integer up to 2^24 exactly, so 2^24 / 2^14 = 1024 products can be summed
# in f32 with no rounding before the partial sum is flushed into the int32 accumulator.
EXACT_F32_TERMS = 2**24 // 2**14


@njit(cache=True)
def _col4_exact(flat, stride, cols, xt, acc_f, acc_i):
    """Add sum_q flat[stride q + i] xt[cols[q]] into int32 acc_i[i] (i = 0..3) exactly.

    int8 x int8 products summed in f32 (`col4_tokens`, scratch acc_f[4, T]) over chunks of
    `EXACT_F32_TERMS` blocks, each chunk flushed into the int32 accumulator.
    """
    for c0 in range(0, cols.shape[0], EXACT_F32_TERMS):
        c1 = min(c0 + EXACT_F32_TERMS, cols.shape[0])
        acc_f[:] = 0.0
        col4_tokens(acc_f, xt, cols[c0:c1], flat[stride * c0 : stride * c1], stride)
        for i in range(4):
            for t in range(acc_f.shape[1]):
                acc_i[i, t] += np.int32(acc_f[i, t])


@njit(parallel=True, cache=True)
def _dense_int8_tokens(qw, xt, acc_out):
    """Compute acc_out[N_pad, T] = qW Xt in int32 for qW[N_pad, K] (N_pad % 4 == 0).

    Four rows of qW are four-row column blocks at every column k.
    """
    cols = np.arange(qw.shape[1]).astype(np.int32)
    for r in prange(qw.shape[0] // 4):
        wt = np.ascontiguousarray(qw[4 * r : 4 * r + 4].T).reshape(-1)
        acc_f, acc_i = np.empty((4, xt.shape[1]), np.float32), acc_out[4 * r : 4 * r + 4]
        acc_i[:] = 0
        _col4_exact(wt, 4, cols, xt, acc_f, acc_i)


@njit(parallel=True, cache=True)
def _dense_int8_decode(qw, qx, acc_out):
    """Compute acc_out[N] = qW qx in int32 (one token)."""
    for n in prange(qw.shape[0]):
        s = np.int32(0)
        for k in range(qw.shape[1]):
            s += np.int32(qw[n, k]) * np.int32(qx[k])
        acc_out[n] = s


@njit(parallel=True, cache=True)
def _bsr_int8_col_tokens(indptr, indices, flat, bm, xt, acc_out):
    """Compute acc_out += W Xt in int32 for int8 column blocks flat[nnzb bm], bm % 4 == 0."""
    for br in prange(indptr.shape[0] - 1):
        p0, p1 = indptr[br], indptr[br + 1]
        acc_f = np.empty((4, xt.shape[1]), np.float32)
        for i0 in range(0, bm, 4):
            row = br * bm + i0
            vals = flat[bm * p0 + i0 : bm * p1]
            _col4_exact(vals, bm, indices[p0:p1], xt, acc_f, acc_out[row : row + 4])


@njit(parallel=True, cache=True)
def _bsr_int8_generic(indptr, indices, values, xt, acc_out):
    """Compute acc_out = W qXt in int32 for int8 blocks values[nnzb, bm, bk] of any shape."""
    bm, bk = values.shape[1], values.shape[2]
    for br in prange(indptr.shape[0] - 1):
        acc = np.zeros((bm, xt.shape[1]), np.int32)
        for p in range(indptr[br], indptr[br + 1]):
            k0 = indices[p] * bk
            for i in range(bm):
                for j in range(bk):
                    v = np.int32(values[p, i, j])
                    for t in range(xt.shape[1]):
                        acc[i, t] += v * np.int32(xt[k0 + j, t])
        acc_out[br * bm : (br + 1) * bm] = acc


def _check_int8_inputs(qx: np.ndarray, sx: np.ndarray, k: int, sw: np.ndarray, name: str) -> None:
    """Raise `InputError` unless activation, scales and K fit the int8 contract."""
    check_activation(qx, k, np.int8, name)
    if sx.dtype != np.float32 or sx.shape != (qx.shape[0],):
        raise InputError(f"{name}: activation scale must be f32[{qx.shape[0]}]")
    if sw.dtype != np.float32 or sw.ndim != 1:
        raise InputError(f"{name}: weight scale must be f32[N]")
    if k >= MAX_EXACT_K:
        raise InputError(f"{name}: K = {k} could overflow the int32 accumulator")


def _scale(acc_t: np.ndarray, sx: np.ndarray, sw: np.ndarray) -> np.ndarray:
    """Return acc_t[N, T]^T * sx[:, None] * sw[None, :] as f32 [T, N]."""
    return (acc_t.T.astype(np.float32) * sx[:, None]) * sw[None, :]


def int8_gemm(qx: np.ndarray, sx: np.ndarray, w: Int8Weight) -> np.ndarray:
    """Return Y[T, N] = (qX qW^T as int32) sx sw for per-token int8 X and an `Int8Weight`."""
    n_rows, n_cols = w.q.shape
    _check_int8_inputs(qx, sx, n_cols, w.scale, "int8_gemm")
    if qx.shape[0] <= DECODE_MAX_TOKENS:
        acc = np.zeros((n_rows, qx.shape[0]), np.int32)
        if qx.shape[0]:
            with serial_below(w.q.nbytes):
                _dense_int8_decode(w.q, np.ascontiguousarray(qx[0]), acc[:, 0])
        return _scale(acc, sx, w.scale)
    n_pad = -(-n_rows // 4) * 4
    qw = w.q if n_pad == n_rows else np.vstack([w.q, np.zeros((n_pad - n_rows, n_cols), np.int8)])
    acc = np.empty((n_pad, qx.shape[0]), np.int32)
    _dense_int8_tokens(qw, transpose_padded(qx, n_cols).astype(np.float32), acc)
    return _scale(acc[:n_rows], sx, w.scale)


def bsr_int8_spmm(qx: np.ndarray, sx: np.ndarray, w: BsrMatrix, sw: np.ndarray) -> np.ndarray:
    """Return Y[T, N] = (qX W^T as int32) sx sw for int8 X and an int8 `BsrMatrix` W."""
    n_rows, n_cols = w.shape
    _check_int8_inputs(qx, sx, n_cols, sw, "bsr_int8_spmm")
    if w.values.dtype != np.int8:
        raise InputError("bsr_int8_spmm: weight values must be int8")
    if sw.shape != (n_rows,):
        raise InputError(f"bsr_int8_spmm: weight scale must be f32[{n_rows}]")
    bm, bk = w.block
    k_pad, n_pad = w.block_cols * bk, w.block_rows * bm
    acc = np.zeros((n_pad, qx.shape[0]), np.int32)
    if qx.shape[0] == 0:
        return _scale(acc[:n_rows], sx, sw)
    col_blocks = bk == 1 and bm % 4 == 0
    if col_blocks and qx.shape[0] <= DECODE_MAX_TOKENS:
        flat, xv = w.values.reshape(-1), pad_vector(qx, k_pad)
        with serial_below(w.values.nbytes + w.indices.nbytes):
            bsr_col_decode(w.indptr, w.indices, flat, bm, xv, acc[:, 0], np.int64(0))
        return _scale(acc[:n_rows], sx, sw)
    xt = transpose_padded(qx, k_pad)
    if col_blocks:
        xt_f32 = xt.astype(np.float32)
        _bsr_int8_col_tokens(w.indptr, w.indices, w.values.reshape(-1), bm, xt_f32, acc)
    else:
        _bsr_int8_generic(w.indptr, w.indices, w.values, xt, acc)
    return _scale(acc[:n_rows], sx, sw)
