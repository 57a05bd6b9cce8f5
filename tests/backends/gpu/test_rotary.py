"""Check RoPE against a rotate-half numpy reference and against rotation identities."""

import numpy as np
import pytest

from sparseflow.backends.gpu.rotary import rope
from sparseflow.ir.errors import InputError


def _reference(x: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    dim = x.shape[-1]
    inv_freq = 1.0 / theta ** (np.arange(0, dim, 2) / dim)
    angles = positions[:, None].astype(np.float64) * inv_freq[None, :]
    cos = np.concatenate([np.cos(angles)] * 2, axis=-1)
    sin = np.concatenate([np.sin(angles)] * 2, axis=-1)
    if x.ndim == 3:
        cos, sin = cos[:, None, :], sin[:, None, :]
    x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
    rotated = np.concatenate([-x2, x1], axis=-1)
    return x * cos + rotated * sin


@pytest.mark.parametrize(
    ("shape", "theta"),
    [((5, 3, 8), 10000.0), ((1, 1, 2), 10000.0), ((7, 2, 6), 500000.0), ((4, 10), 10000.0)],
)
def test_rope_matches_rotate_half_reference(shape: tuple[int, ...], theta: float) -> None:
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    positions = rng.integers(0, 200, size=shape[0]).astype(np.int64)
    expected = _reference(x.astype(np.float64), positions, theta)
    np.testing.assert_allclose(rope(x, positions, theta=theta, threads=32), expected, atol=2e-4)


def test_rope_position_zero_is_identity_and_norm_preserved() -> None:
    x = np.random.default_rng(2).standard_normal((3, 2, 16)).astype(np.float16)
    y = rope(x, np.array([0, 1, 4095], np.int32), threads=16)
    np.testing.assert_array_equal(y[0], x[0].astype(np.float32))
    np.testing.assert_allclose(_pair_norms(y), _pair_norms(x.astype(np.float32)), rtol=1e-4)


def _pair_norms(a: np.ndarray) -> np.ndarray:
    half = a.shape[-1] // 2
    return a[..., :half] ** 2 + a[..., half:] ** 2


@pytest.mark.parametrize(
    ("x", "positions", "message"),
    [
        (np.ones((2, 1, 5), np.float32), np.arange(2), "head dimension 5 must be even"),
        (np.ones((2, 1, 4), np.float32), np.arange(3), r"positions: shape \(3,\)"),
        (np.ones((2, 4), np.float32), np.array([0, -1]), "positions: must be >= 0"),
        (np.ones((2, 4), np.float32), np.array([0.0, 1.0]), "positions: expected dtype"),
    ],
)
def test_rope_rejects_bad_input(x: np.ndarray, positions: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        rope(x, positions)
