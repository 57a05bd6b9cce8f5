"""Provide the compressed weight containers the CPU kernels consume, and dense -> format converters.

The containers hold exactly the storage contract shared with the compression passes
(W is [N, K] = (out, in)):

- `CsrMatrix`: indptr int32[N+1], indices int32[nnz] (column k), values f32[nnz].
- `BsrMatrix`: W zero-padded to whole (bm, bk) blocks; indptr int32[N_pad/bm + 1], indices
  int32[nnzb] (block column), values [nnzb, bm, bk] f32 or int8; logical shape kept beside it.
- `NmMatrix`: K zero-padded to a multiple of M; values [N, (K_pad/M) n], indices uint8 of the
  same shape holding the offset 0..M-1 inside each group, ascending inside a group.

Every container validates its arrays on construction and raises `InputError` naming the field
at fault. The `*_from_dense` converters are exact (they keep every non-zero); they serve tests
and benchmarks, the production encoders live in the passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparseflow.ir.errors import InputError


def _check(cond: bool, message: str) -> None:
    """Raise `InputError(message)` unless `cond` holds."""
    if not cond:
        raise InputError(message)


def _check_indptr(indptr: np.ndarray, rows: int, nnz: int, name: str) -> None:
    """Check that `indptr` is int32[rows + 1], starts at 0, ends at nnz and never decreases."""
    _check(indptr.dtype == np.int32, f"{name}.indptr: dtype {indptr.dtype}, expected int32")
    _check(indptr.shape == (rows + 1,), f"{name}.indptr: shape {indptr.shape}, want ({rows + 1},)")
    _check(indptr[0] == 0 and indptr[-1] == nnz, f"{name}.indptr: must run from 0 to {nnz}")
    _check(bool(np.all(np.diff(indptr) >= 0)), f"{name}.indptr: must be non-decreasing")


@dataclass(frozen=True)
class CsrMatrix:
    """Hold W[N, K] in CSR form (row = output channel n, column = input k)."""

    shape: tuple[int, int]
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        n_rows, n_cols = self.shape
        nnz = self.values.shape[0]
        _check(self.values.dtype == np.float32, f"csr.values: dtype {self.values.dtype}, want f32")
        _check(self.values.ndim == 1, "csr.values: must be 1-D")
        _check_indptr(self.indptr, n_rows, nnz, "csr")
        _check(self.indices.dtype == np.int32, "csr.indices: dtype must be int32")
        _check(self.indices.shape == (nnz,), f"csr.indices: shape must be ({nnz},)")
        in_range = nnz == 0 or (self.indices.min() >= 0 and self.indices.max() < n_cols)
        _check(bool(in_range), f"csr.indices: column index outside 0..{n_cols - 1}")

    @property
    def density(self) -> float:
        """Return the fraction of stored entries."""
        return self.values.shape[0] / max(1, self.shape[0] * self.shape[1])


@dataclass(frozen=True)
class BsrMatrix:
    """Hold W[N, K] in block-CSR form with blocks of (bm, bk) and zero-padded edges."""

    shape: tuple[int, int]
    block: tuple[int, int]
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        bm, bk = self.block
        _check(bm >= 1 and bk >= 1, f"bsr.block: {self.block} must be positive")
        nnzb = self.values.shape[0]
        ok_dtype = self.values.dtype in (np.float32, np.int8)
        _check(ok_dtype, f"bsr.values: dtype {self.values.dtype}, want f32 or int8")
        _check(self.values.shape == (nnzb, bm, bk), f"bsr.values: shape must be (nnzb, {bm}, {bk})")
        _check_indptr(self.indptr, self.block_rows, nnzb, "bsr")
        _check(self.indices.dtype == np.int32, "bsr.indices: dtype must be int32")
        _check(self.indices.shape == (nnzb,), f"bsr.indices: shape must be ({nnzb},)")
        n_bc = self.block_cols
        in_range = nnzb == 0 or (self.indices.min() >= 0 and self.indices.max() < n_bc)
        _check(bool(in_range), f"bsr.indices: block column outside 0..{n_bc - 1}")

    @property
    def block_rows(self) -> int:
        """Return N_pad / bm."""
        return -(-self.shape[0] // self.block[0])

    @property
    def block_cols(self) -> int:
        """Return K_pad / bk."""
        return -(-self.shape[1] // self.block[1])

    @property
    def density(self) -> float:
        """Return the fraction of the padded matrix covered by stored blocks."""
        return self.values.shape[0] / max(1, self.block_rows * self.block_cols)


@dataclass(frozen=True)
class NmMatrix:
    """Hold W[N, K] with n kept weights in every group of m along K (K padded to whole groups)."""

    shape: tuple[int, int]
    n: int
    m: int
    values: np.ndarray
    indices: np.ndarray

    def __post_init__(self) -> None:
        rows, cols = self.shape
        _check(1 <= self.n <= self.m <= 256, f"nm: need 1 <= n <= m <= 256, got {self.n}:{self.m}")
        want = (rows, self.groups * self.n)
        _check(self.values.dtype == np.float32, "nm.values: dtype must be f32")
        _check(self.values.shape == want, f"nm.values: shape {self.values.shape}, want {want}")
        _check(self.indices.dtype == np.uint8, "nm.indices: dtype must be uint8")
        _check(self.indices.shape == want, f"nm.indices: shape {self.indices.shape}, want {want}")
        if self.indices.size:
            _check(int(self.indices.max()) < self.m, f"nm.indices: offset >= m = {self.m}")
            grouped = self.indices.reshape(rows, self.groups, self.n).astype(np.int16)
            ascending = np.all(np.diff(grouped, axis=2) > 0)
            _check(bool(ascending), "nm.indices: offsets must be ascending inside a group")

    @property
    def groups(self) -> int:
        """Return K_pad / m."""
        return -(-self.shape[1] // self.m)


def _check_dense(w: np.ndarray, name: str) -> None:
    """Check that `w` is a 2-D array with finite entries."""
    _check(w.ndim == 2, f"{name}: weight must be 2-D [N, K], got {w.ndim}-D")
    _check(bool(np.all(np.isfinite(w))), f"{name}: weight holds NaN or inf")


def csr_from_dense(w: np.ndarray) -> CsrMatrix:
    """Encode every non-zero of dense W[N, K] into a `CsrMatrix`."""
    _check_dense(w, "csr_from_dense")
    rows, cols = np.nonzero(w)
    counts = np.bincount(rows, minlength=w.shape[0])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    values = w[rows, cols].astype(np.float32)
    return CsrMatrix(w.shape, indptr, cols.astype(np.int32), values)


def bsr_from_dense(w: np.ndarray, block: tuple[int, int]) -> BsrMatrix:
    """Encode dense W[N, K] (f32 or int8) as BSR, storing every block holding a non-zero."""
    _check_dense(w, "bsr_from_dense")
    bm, bk = block
    _check(bm >= 1 and bk >= 1, f"bsr_from_dense: block {block} must be positive")
    n_rows, n_cols = w.shape
    n_br, n_bc = -(-n_rows // bm), -(-n_cols // bk)
    dtype = np.int8 if w.dtype == np.int8 else np.float32
    padded = np.zeros((n_br * bm, n_bc * bk), dtype=dtype)
    padded[:n_rows, :n_cols] = w
    tiles = padded.reshape(n_br, bm, n_bc, bk).transpose(0, 2, 1, 3)
    keep = np.any(tiles != 0, axis=(2, 3))
    br, bc = np.nonzero(keep)
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    values = np.ascontiguousarray(tiles[br, bc])
    return BsrMatrix(w.shape, (bm, bk), indptr, bc.astype(np.int32), values)


def nm_from_dense(w: np.ndarray, n: int, m: int) -> NmMatrix:
    """Encode dense W[N, K] that already has at most n non-zeros per group of m along K.

    Groups with fewer non-zeros are filled with explicit zeros at the lowest free offsets.
    """
    _check_dense(w, "nm_from_dense")
    _check(1 <= n <= m <= 256, f"nm_from_dense: need 1 <= n <= m <= 256, got {n}:{m}")
    rows, cols = w.shape
    groups = -(-cols // m)
    padded = np.zeros((rows, groups * m), dtype=np.float32)
    padded[:, :cols] = w
    grouped = padded.reshape(rows, groups, m)
    nonzero = grouped != 0
    worst = int(nonzero.sum(axis=2).max()) if nonzero.size else 0
    _check(worst <= n, f"nm_from_dense: a group holds {worst} non-zeros, more than n = {n}")
    # Rank offsets so non-zeros come first, then the lowest free zero offsets; keep n, sort.
    order = np.argsort(~nonzero, axis=2, kind="stable")[:, :, :n]
    offsets = np.sort(order, axis=2)
    values = np.take_along_axis(grouped, offsets, axis=2)
    shape = (rows, groups * n)
    return NmMatrix(
        w.shape, n, m, values.reshape(shape).copy(), offsets.reshape(shape).astype(np.uint8)
    )
