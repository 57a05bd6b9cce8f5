"""Check the shared tiled GEMM shell with a loader of its own: W stored transposed, [K, N]."""

import numpy as np
import pytest
from numba import float32, int32

from sparseflow.backends.gpu.device import cuda
from sparseflow.backends.gpu.launch import tiled_2d
from sparseflow.backends.gpu.tiled import tiled_dot


@cuda.jit(device=True)
def load_transposed(w_t, n, k):
    return w_t[k, n]


def _run(x: np.ndarray, w_t: np.ndarray, tile: int, acc_type: object) -> np.ndarray:
    dot = tiled_dot(tile, acc_type, load_transposed)

    @cuda.jit
    def kernel(x, w_t, y):
        row, col, acc = dot(x, w_t, w_t.shape[1])
        if row < x.shape[0] and col < w_t.shape[1]:
            y[row, col] = acc

    y = np.full((x.shape[0], w_t.shape[1]), -1, dtype=x.dtype)
    config = tiled_2d(x.shape[0], w_t.shape[1], tile)
    kernel[config.grid, config.block](x, w_t, y)
    return y


@pytest.mark.parametrize(("t", "n", "k", "tile"), [(5, 7, 9, 4), (1, 3, 2, 2), (8, 8, 8, 4)])
def test_tiled_dot_reads_w_through_the_loader(t: int, n: int, k: int, tile: int) -> None:
    rng = np.random.default_rng(t * 100 + n * 10 + k)
    x = rng.integers(-128, 128, size=(t, k), dtype=np.int32)
    w_t = rng.integers(-128, 128, size=(k, n), dtype=np.int32)
    np.testing.assert_array_equal(_run(x, w_t, tile, int32), x @ w_t)


def test_tiled_dot_accumulates_float32() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 11)).astype(np.float32)
    w_t = rng.standard_normal((11, 5)).astype(np.float32)
    expected = x.astype(np.float64) @ w_t.astype(np.float64)
    np.testing.assert_allclose(_run(x, w_t, 4, float32), expected, rtol=1e-5, atol=1e-5)
