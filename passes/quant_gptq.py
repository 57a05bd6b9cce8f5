"""GPTQ (Frantar et al. 2023): group-wise INT4 weights by Hessian-guided error compensation.

Requires float W[N, K] (out, in) and calibration inputs X[n, K] of this layer (or their
Hessian H = (2/n) X^T X), an optional boolean keep-mask (sparsity goes first: the sweep
quantizes dropped weights to exactly zero and compensates their error in the later columns,
as SparseGPT does), and a group size dividing K.
Ensures int4 `QuantCodes` (asymmetric min-max by default, symmetric with z = 8 on request)
that ir.formats stores like RTN int4, dense or under the sparse selection of the mask.

Algorithm (reference): dead inputs (diag H = 0) get H[i, i] = 1 and W[:, i] = 0; optional
act-order permutes columns by descending diag H; H += damp * mean(diag H) I; U = upper
Cholesky factor of H^-1. For column blocks [i1, i2): for each column i, refit the group's
(s, z) on the current W when i starts a group, q = Q(W[:, i]), e = (W[:, i] - q) / U[i, i],
W[:, i:i2] -= e U[i, i:i2]; then W[:, i2:] -= E U[i1:i2, i2:]. A refit reads the current W,
including the block's pending updates to columns past the block (the reference code reads
the stale copy there; the two agree when the group size equals the block size). With
act-order the groups stay contiguous in the original column order (so the storage needs no
group index): their parameters are fitted once on the weights before any update ("static
groups" of the reference implementation).
"""

from __future__ import annotations

import numpy as np

from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import QuantCodes
from sparseflow.passes.quantize import (
    asymmetric_codes,
    asymmetric_params,
    int4_codes,
    symmetric_quantize,
)

GPTQ_DAMP = 0.01  # fraction of mean(diag H) added to the diagonal (reference default)
GPTQ_BLOCK = 128  # columns per lazy-update block (reference default)
BITS = 4


def gptq_hessian(x: np.ndarray) -> np.ndarray:
    """Return H = (2 / n) X^T X (float64) from calibration inputs X[n, K]."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InputError(f"gptq: calibration inputs must be [n, K] with n > 0, got {x.shape}")
    return (2.0 / x.shape[0]) * (x.T @ x)


def _fit(values: np.ndarray, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return per-row (scale, zero) of int4 for `values` [N, g]."""
    if symmetric:
        _, scale = symmetric_quantize(values, BITS)
        return scale, np.full(scale.shape, 8.0)
    return asymmetric_params(values, BITS)


def _quantize_column(col: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    return asymmetric_codes(col, scale, zero, BITS)


def _inverse_cholesky(h: np.ndarray) -> np.ndarray:
    """Return the upper Cholesky factor U of H^-1 (H^-1 = U^T U)."""
    try:
        lower = np.linalg.cholesky(h)
        h_inv = np.linalg.solve(lower.T, np.linalg.solve(lower, np.eye(h.shape[0])))
        return np.linalg.cholesky(h_inv).T
    except np.linalg.LinAlgError:
        raise InputError("gptq: the damped Hessian is not positive definite") from None


class _Groups:
    """The (s, z) of every (row, group), fitted statically or refitted while GPTQ runs."""

    def __init__(self, n_rows: int, k: int, group: int) -> None:
        self.group = group
        self.scale = np.zeros((n_rows, k // group), np.float32)
        self.zero = np.zeros((n_rows, k // group))

    def fit(self, index: int, values: np.ndarray, symmetric: bool) -> None:
        self.scale[:, index], self.zero[:, index] = _fit(values, symmetric)


def _prepare(
    w: np.ndarray, h: np.ndarray, mask: np.ndarray | None, damp: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero dead inputs and damp H; return (W, H, keep-mask) in float64."""
    w, h = w.astype(np.float64), h.astype(np.float64).copy()
    keep = np.ones(w.shape, bool) if mask is None else np.asarray(mask, bool)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    return w, h, keep


def quantize_gptq(
    w: np.ndarray,
    hessian: np.ndarray,
    group_size: int | None = 128,
    act_order: bool = False,
    mask: np.ndarray | None = None,
    damp: float = GPTQ_DAMP,
    block_size: int = GPTQ_BLOCK,
    symmetric: bool = False,
) -> QuantCodes:
    """Quantize W[N, K] to int4 by GPTQ with Hessian `hessian` [K, K] (see module docstring)."""
    w = np.asarray(w, dtype=np.float32)
    _check(w, hessian, group_size, mask, damp, block_size)
    k = w.shape[1]
    group = k if group_size is None else group_size
    w, h, keep = _prepare(w, hessian, mask, damp)
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(k)
    groups = _Groups(w.shape[0], k, group)
    if act_order:
        for g in range(k // group):
            cols = slice(g * group, (g + 1) * group)
            groups.fit(g, w[:, cols] * keep[:, cols], symmetric)
    u = _inverse_cholesky(h[np.ix_(perm, perm)])
    codes = _run_blocks(
        w[:, perm], keep[:, perm], u, perm, groups, act_order, block_size, symmetric
    )
    out = np.empty_like(codes)
    out[:, perm] = codes
    return int4_codes(out, groups.scale, groups.zero, group_size, symmetric)


def _check(
    w: np.ndarray,
    h: np.ndarray,
    group_size: int | None,
    mask: np.ndarray | None,
    damp: float,
    block_size: int,
) -> None:
    if w.ndim != 2 or 0 in w.shape:
        raise InputError(f"gptq: weight must be a non-empty [N, K] matrix, got {w.shape}")
    k = w.shape[1]
    if np.shape(h) != (k, k):
        raise InputError(f"gptq: Hessian shape {np.shape(h)} does not match K = {k}")
    if group_size is not None and (group_size < 1 or k % group_size):
        raise InputError(f"gptq: group size {group_size} does not divide K = {k}")
    if mask is not None and np.shape(mask) != w.shape:
        raise InputError(f"gptq: mask shape {np.shape(mask)} differs from weight {w.shape}")
    if damp <= 0 or block_size < 1:
        raise InputError(f"gptq: need damp > 0 and block size >= 1 (got {damp}, {block_size})")


def _current(
    block: np.ndarray, i: int, i1: int, w: np.ndarray, err: np.ndarray, u: np.ndarray, stop: int
) -> np.ndarray:
    """Return the current W[:, i1 + i : stop]: the block's working columns, then the columns
    beyond the block with the block's pending (lazy) updates applied."""
    i2 = i1 + block.shape[1]
    inside = block[:, i : stop - i1]
    if stop <= i2:
        return inside
    beyond = w[:, i2:stop] - err[:, :i] @ u[i1 : i1 + i, i2:stop]
    return np.concatenate([inside, beyond], axis=1)


def _run_blocks(
    w: np.ndarray,
    keep: np.ndarray,
    u: np.ndarray,
    perm: np.ndarray,
    groups: _Groups,
    static: bool,
    block_size: int,
    symmetric: bool,
) -> np.ndarray:
    """Run the blocked GPTQ sweep over permuted columns; return permuted int4 codes."""
    n_rows, k = w.shape
    codes = np.zeros((n_rows, k), np.uint8)
    for i1 in range(0, k, block_size):
        i2 = min(i1 + block_size, k)
        block, err = w[:, i1:i2].copy(), np.zeros((n_rows, i2 - i1))
        for i in range(i2 - i1):
            col, g = i1 + i, perm[i1 + i] // groups.group
            if not static and col % groups.group == 0:
                ahead = _current(block, i, i1, w, err, u, col + groups.group)
                groups.fit(g, ahead * keep[:, col : col + groups.group], symmetric)
            scale, zero = groups.scale[:, g].astype(np.float64), groups.zero[:, g]
            q = np.where(keep[:, col], _quantize_column(block[:, i], scale, zero), zero)
            codes[:, col] = q
            err[:, i] = (block[:, i] - (q - zero) * scale) / u[col, col]
            block[:, i:] -= np.outer(err[:, i], u[col, col:i2])
        w[:, i2:] -= err @ u[i1:i2, i2:]
    return codes
