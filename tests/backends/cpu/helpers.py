"""Random pruned matrices and float64 references for the CPU kernel tests."""

from __future__ import annotations

import numpy as np


def block_pruned(
    rng: np.random.Generator, shape: tuple[int, int], block: tuple[int, int], density: float
) -> np.ndarray:
    """Return a random f32 matrix keeping about `density` of its (bm, bk) blocks.

    The first block row and the last block column are forced to zero, so every case has an
    empty block row (empty output rows) and an all-zero block column.
    """
    n_rows, n_cols = shape
    bm, bk = block
    n_br, n_bc = -(-n_rows // bm), -(-n_cols // bk)
    keep = rng.random((n_br, n_bc)) < density
    keep[0, :] = False
    keep[:, -1] = False
    mask = np.kron(keep, np.ones((bm, bk), bool))[:n_rows, :n_cols]
    values = rng.standard_normal(shape).astype(np.float32)
    values[values == 0] = 1.0
    return np.where(mask, values, 0).astype(np.float32)


def nm_pruned(rng: np.random.Generator, shape: tuple[int, int], n: int, m: int) -> np.ndarray:
    """Return a random f32 matrix with at most n non-zeros per group of m along K.

    Row 0 is all zero, and the ragged tail group (K % m != 0) keeps fewer entries.
    """
    n_rows, n_cols = shape
    w = rng.standard_normal(shape).astype(np.float32)
    for g0 in range(0, n_cols, m):
        group = w[:, g0 : g0 + m]
        width = group.shape[1]
        drop = np.argsort(np.abs(group), axis=1)[:, : max(0, width - n)]
        np.put_along_axis(group, drop, 0.0, axis=1)
    w[0] = 0.0
    return w


def reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Return X W^T computed in float64."""
    return x.astype(np.float64) @ w.astype(np.float64).T


def assert_close(y: np.ndarray, ref: np.ndarray) -> None:
    """Check y against a float64 reference with an f32 tolerance scaled by K-sized sums."""
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert y.dtype == np.float32
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-5 * scale * 8)
