"""Provide fp32 block-sparse (BSR) x dense products Y = X W^T on the CPU with numba.

Paths, picked by block shape and token count:
- column blocks (bm x 1, bm a multiple of 4: 4x1, 16x1): four blocks at a time, each token
  vector of X loaded once for four output rows (`col4_tokens`);
- row blocks (1 x bk, bk a multiple of 4: 1x4, 1x16): four X rows per pass into one output row;
- any other block: a generic loop over the block's entries;
- T = 1 (decode): GEMV kernels that reduce along K.
All are parallel over block rows, so each thread owns disjoint output rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from sparseflow.backends.cpu._common import (
    DECODE_MAX_TOKENS,
    axpy1,
    axpy4,
    check_activation,
    col4_dot,
    col4_tokens,
    pad_vector,
    transpose_padded,
    untranspose,
)
from sparseflow.backends.cpu.formats import BsrMatrix
from sparseflow.backends.cpu.threads import serial_below
from sparseflow.ir.errors import InputError

# Reassociation lets LLVM vectorise the K reductions of the decode kernels; the tests bound
# the resulting rounding differences against float64 references.
FASTMATH_REDUCE = {"reassoc", "contract"}


@njit(parallel=True, cache=True)
def _bsr_col_tokens(indptr, indices, flat, bm, xt, yt):
    """Compute yt = W xt for column blocks flat[nnzb bm] with bm % 4 == 0, into yt directly.

    4x1 blocks get their own `col4_tokens` call with the stride as a literal (as in decode).
    """
    for br in prange(indptr.shape[0] - 1):
        p0, p1 = indptr[br], indptr[br + 1]
        cols = indices[p0:p1]
        for i0 in range(0, bm, 4):
            acc = yt[br * bm + i0 : br * bm + i0 + 4]
            acc[:] = 0.0
            vals = flat[bm * p0 + i0 : bm * p1]
            if bm == 4:
                col4_tokens(acc, xt, cols, vals, 4)
            else:
                col4_tokens(acc, xt, cols, vals, bm)


@njit(parallel=True, cache=True)
def _bsr_row_tokens(indptr, indices, values, xt, yt):
    """Compute yt = W xt for row blocks values[nnzb, bk] with bk % 4 == 0."""
    bk = values.shape[1]
    for br in prange(indptr.shape[0] - 1):
        acc = np.zeros(xt.shape[1], np.float32)
        for p in range(indptr[br], indptr[br + 1]):
            k0 = indices[p] * bk
            for j in range(0, bk, 4):
                v = values[p]
                axpy4(acc, xt[k0 + j], xt[k0 + j + 1], xt[k0 + j + 2], xt[k0 + j + 3],
                      v[j], v[j + 1], v[j + 2], v[j + 3])  # fmt: skip
        yt[br] = acc


@njit(parallel=True, cache=True)
def _bsr_generic_tokens(indptr, indices, values, xt, yt):
    """Compute yt = W xt for blocks values[nnzb, bm, bk] of any shape."""
    bm, bk = values.shape[1], values.shape[2]
    for br in prange(indptr.shape[0] - 1):
        acc = np.zeros((bm, xt.shape[1]), np.float32)
        for p in range(indptr[br], indptr[br + 1]):
            k0 = indices[p] * bk
            for i in range(bm):
                for j in range(bk):
                    axpy1(acc[i], xt[k0 + j], values[p, i, j])
        yt[br * bm : (br + 1) * bm] = acc


@njit(parallel=True, cache=True, fastmath=FASTMATH_REDUCE)
def bsr_col_decode(indptr, indices, flat, bm, x, y, zero):
    """Compute y = W x for column blocks flat[nnzb bm] with bm % 4 == 0 (decode, one token).

    Four output rows at a time in scalar registers (no per-row heap accumulator). 4x1 blocks
    get their own `col4_dot` call with the stride as a literal, so their values load as
    contiguous vectors (about 4x faster than a runtime stride on 4096 x 4096 at 90 %).
    `zero` sets the accumulator: f32 here, int64 for the exact int8 kernel (`int8.py`), whose
    sums fit y's int32 by the K bound (fastmath touches float arithmetic only).
    """
    for br in prange(indptr.shape[0] - 1):
        p0, p1 = indptr[br], indptr[br + 1]
        cols = indices[p0:p1]
        for i0 in range(0, bm, 4):
            vals = flat[bm * p0 + i0 : bm * p1]
            if bm == 4:
                sums = col4_dot(vals, cols, x, 4, zero)
            else:
                sums = col4_dot(vals, cols, x, bm, zero)
            row = br * bm + i0
            y[row], y[row + 1], y[row + 2], y[row + 3] = sums


@njit(parallel=True, cache=True, fastmath=FASTMATH_REDUCE)
def _bsr_generic_decode(indptr, indices, values, x, y):
    """Compute y = W x for blocks values[nnzb, bm, bk] of any shape (decode, one token)."""
    bm, bk = values.shape[1], values.shape[2]
    for br in prange(indptr.shape[0] - 1):
        for i in range(bm):
            s = np.float32(0.0)
            for p in range(indptr[br], indptr[br + 1]):
                k0 = indices[p] * bk
                for j in range(bk):
                    s += values[p, i, j] * x[k0 + j]
            y[br * bm + i] = s


def bsr_path(block: tuple[int, int]) -> str:
    """Return the prefill kernel family used for a block shape: 'col', 'row' or 'generic'."""
    bm, bk = block
    if bk == 1 and bm % 4 == 0:
        return "col"
    if bm == 1 and bk % 4 == 0:
        return "row"
    return "generic"


def bsr_spmm(x: np.ndarray, w: BsrMatrix) -> np.ndarray:
    """Return Y[T, N] = X[T, K] W^T for fp32 X and an fp32 `BsrMatrix` W (shape (N, K))."""
    n_rows, n_cols = w.shape
    check_activation(x, n_cols, np.float32, "bsr_spmm")
    if w.values.dtype != np.float32:
        raise InputError("bsr_spmm: weight values must be f32 (use bsr_int8_spmm for int8)")
    bm, bk = w.block
    k_pad, n_pad = w.block_cols * bk, w.block_rows * bm
    path = bsr_path(w.block)
    nnzb = w.values.shape[0]
    if x.shape[0] == 0:
        return np.zeros((0, n_rows), np.float32)
    if x.shape[0] <= DECODE_MAX_TOKENS:
        y, xv = np.empty(n_pad, np.float32), pad_vector(x, k_pad)
        with serial_below(w.values.nbytes + w.indices.nbytes):
            if path == "col":
                flat = w.values.reshape(-1)
                bsr_col_decode(w.indptr, w.indices, flat, bm, xv, y, np.float32(0.0))
            else:
                _bsr_generic_decode(w.indptr, w.indices, w.values, xv, y)
        return np.ascontiguousarray(y[:n_rows].reshape(1, n_rows))
    xt = transpose_padded(x, k_pad)
    yt = np.empty((n_pad, x.shape[0]), np.float32)
    if path == "col":
        _bsr_col_tokens(w.indptr, w.indices, w.values.reshape(-1), bm, xt, yt)
    elif path == "row":
        _bsr_row_tokens(w.indptr, w.indices, w.values.reshape(nnzb, bk), xt, yt)
    else:
        _bsr_generic_tokens(w.indptr, w.indices, w.values, xt, yt)
    return untranspose(yt, n_rows)
