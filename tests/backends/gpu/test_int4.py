"""Check the int4 group-wise GEMV and GEMM against a numpy dequantise-then-matmul reference."""

import numpy as np
import pytest

from sparseflow.backends.gpu.int4 import int4_gemm, int4_gemv
from sparseflow.ir.errors import InputError

from .reference import dequant_int4


def _weight(rng: np.random.Generator, n: int, k: int, group: int) -> tuple[np.ndarray, ...]:
    packed = rng.integers(0, 256, size=(n, k // 2), dtype=np.uint8)
    scales = rng.uniform(0.01, 0.2, size=(n, k // group)).astype(np.float32)
    zeros = rng.integers(0, 16, size=(n, k // group), dtype=np.uint8)
    return packed, scales, zeros


@pytest.mark.parametrize(
    ("n", "k", "group", "threads"),
    [(17, 40, 8, 16), (1, 2, 2, 4), (5, 66, 22, 8), (9, 24, 3, 32), (3, 128, 128, 16)],
)
def test_int4_gemv_matches_numpy(n: int, k: int, group: int, threads: int) -> None:
    rng = np.random.default_rng(n * k + group)
    weight = _weight(rng, n, k, group)
    x = rng.standard_normal(k).astype(np.float32)
    expected = dequant_int4(*weight).astype(np.float64) @ x.astype(np.float64)
    np.testing.assert_allclose(
        int4_gemv(x, *weight, threads=threads), expected, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    ("t", "n", "k", "group", "tile"),
    [(33, 17, 40, 8, 8), (1, 6, 10, 5, 4), (5, 1, 16, 16, 8), (7, 9, 42, 6, 8)],
)
def test_int4_gemm_matches_numpy(t: int, n: int, k: int, group: int, tile: int) -> None:
    rng = np.random.default_rng(t + n * k + group)
    weight = _weight(rng, n, k, group)
    x = rng.standard_normal((t, k)).astype(np.float16)
    expected = x.astype(np.float64) @ dequant_int4(*weight).astype(np.float64).T
    np.testing.assert_allclose(int4_gemm(x, *weight, tile=tile), expected, rtol=1e-5, atol=1e-4)


def test_int4_gemv_agrees_with_gemm_on_one_token() -> None:
    rng = np.random.default_rng(11)
    weight = _weight(rng, 7, 32, 8)
    x = rng.standard_normal(32).astype(np.float32)
    np.testing.assert_allclose(
        int4_gemv(x, *weight, threads=8), int4_gemm(x[None, :], *weight, tile=4)[0], rtol=1e-5
    )


@pytest.mark.parametrize(
    ("index", "bad", "message"),
    [
        (1, np.zeros((4, 3), np.uint8), "packed: dim 1 is 6, expected 8"),
        (2, np.ones((4, 3), np.float32), "scales: 3 groups do not divide K = 8"),
        (3, np.full((4, 2), 16, np.uint8), r"zeros: values must lie in \[0, 15\]"),
        (3, np.zeros((4, 1), np.uint8), r"zeros: shape \(4, 1\), expected \(4, 2\)"),
        (2, np.ones((3, 2), np.float32), "scales: dim 0 is 3, expected 4"),
    ],
)
def test_int4_rejects_bad_storage(index: int, bad: np.ndarray, message: str) -> None:
    args = [np.ones(8, np.float32), *_weight(np.random.default_rng(0), 4, 8, 4)]
    args[index] = bad
    with pytest.raises(InputError, match=message):
        int4_gemv(*args)
