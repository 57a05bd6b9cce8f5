"""Check the int8 GEMM bit-exactly against numpy (int32 accumulator and scaled output)."""

import numpy as np
import pytest

from sparseflow.backends.gpu.int8 import int8_gemm
from sparseflow.ir.errors import InputError


def _case(rng: np.random.Generator, t: int, n: int, k: int) -> tuple[np.ndarray, ...]:
    qx = rng.integers(-128, 128, size=(t, k), dtype=np.int8)
    qw = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    sx = rng.uniform(1e-3, 1e-1, size=t).astype(np.float32)
    sw = rng.uniform(1e-3, 1e-1, size=n).astype(np.float32)
    return qx, sx, qw, sw


@pytest.mark.parametrize(
    ("t", "n", "k", "tile"),
    [(33, 17, 40, 8), (1, 9, 13, 8), (5, 1, 7, 4), (4, 6, 1, 2), (8, 8, 24, 8)],
)
def test_int8_gemm_is_bit_exact(t: int, n: int, k: int, tile: int) -> None:
    qx, sx, qw, sw = _case(np.random.default_rng(t * n + k), t, n, k)
    y, acc = int8_gemm(qx, sx, qw, sw, tile=tile, return_int32=True)
    expected_acc = qx.astype(np.int32) @ qw.astype(np.int32).T
    np.testing.assert_array_equal(acc, expected_acc)
    expected_y = expected_acc.astype(np.float32) * sx[:, None] * sw[None, :]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, expected_y)


def test_int8_gemm_extreme_values_do_not_wrap() -> None:
    k = 64
    qx = np.full((2, k), -128, np.int8)
    qw = np.full((3, k), -128, np.int8)
    ones = np.ones(2, np.float32), np.ones(3, np.float32)
    _, acc = int8_gemm(qx, ones[0], qw, ones[1], tile=4, return_int32=True)
    assert (acc == k * 128 * 128).all()


@pytest.mark.parametrize(
    ("index", "bad", "message"),
    [
        (1, np.ones(4, np.float32), r"sx: shape \(4,\), expected \(3,\)"),
        (3, np.ones(2, np.float32), r"sw: shape \(2,\), expected \(5,\)"),
        (0, np.ones((3, 7), np.float32), "qx: expected dtype int8"),
        (2, np.ones((5, 6), np.int8), "qw: dim 1 is 6, expected 7"),
    ],
)
def test_int8_gemm_rejects_bad_input(index: int, bad: np.ndarray, message: str) -> None:
    args = list(_case(np.random.default_rng(0), 3, 5, 7))
    args[index] = bad
    with pytest.raises(InputError, match=message):
        int8_gemm(*args)
