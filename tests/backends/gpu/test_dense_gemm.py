"""Check the tiled dense GEMM against numpy on ragged, odd and single-row shapes."""

import numpy as np
import pytest

from sparseflow.backends.gpu.dense_gemm import gemm
from sparseflow.ir.errors import InputError


@pytest.mark.parametrize(
    ("t", "n", "k", "tile"),
    [(33, 17, 40, 8), (1, 9, 13, 8), (5, 1, 7, 4), (16, 16, 16, 8), (3, 4, 1, 2)],
)
def test_gemm_fp32_matches_numpy(t: int, n: int, k: int, tile: int) -> None:
    rng = np.random.default_rng(t * 1000 + n * 10 + k)
    x = rng.standard_normal((t, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    expected = x.astype(np.float64) @ w.astype(np.float64).T
    np.testing.assert_allclose(gemm(x, w, tile=tile), expected, rtol=1e-5, atol=1e-5)


def test_gemm_fp16_inputs_accumulate_in_fp32() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((9, 37)).astype(np.float16)
    w = rng.standard_normal((11, 37)).astype(np.float16)
    y = gemm(x, w, tile=8)
    assert y.dtype == np.float32
    expected = x.astype(np.float64) @ w.astype(np.float64).T
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)


def test_gemm_rejects_mismatched_k() -> None:
    x = np.ones((2, 3), np.float32)
    with pytest.raises(InputError, match="w: dim 1 is 4"):
        gemm(x, np.ones((5, 4), np.float32))


@pytest.mark.parametrize(
    ("x", "w", "message"),
    [
        (np.ones((2, 3), np.float64), np.ones((2, 3), np.float32), "x: expected dtype"),
        (np.ones(3, np.float32), np.ones((2, 3), np.float32), "x: expected a 2-D"),
        (np.ones((0, 3), np.float32), np.ones((2, 3), np.float32), "x: empty"),
        (np.full((2, 3), np.nan, np.float32), np.ones((2, 3), np.float32), "x: contains NaN"),
        ([[1.0]], np.ones((1, 1), np.float32), "x: expected a numpy array"),
    ],
)
def test_gemm_rejects_bad_input(x: object, w: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        gemm(x, w)  # type: ignore[arg-type]


def test_gemm_rejects_tile_not_power_of_two() -> None:
    with pytest.raises(InputError, match="tile=6"):
        gemm(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), tile=6)
