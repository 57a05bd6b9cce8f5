"""Check softmax, LayerNorm and RMSNorm against float64 numpy references."""

import numpy as np
import pytest

from sparseflow.backends.gpu.norms import layernorm, rmsnorm, softmax
from sparseflow.ir.errors import InputError

SHAPES = [(5, 37), (1, 1), (1, 64), (2, 3, 17), (9,)]


def _x(shape: tuple[int, ...], seed: int, dtype: type = np.float32) -> np.ndarray:
    return (3 * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_matches_numpy(shape: tuple[int, ...]) -> None:
    x = _x(shape, len(shape) + shape[-1]).astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    expected = e / e.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(softmax(x.astype(np.float32), threads=8), expected, atol=1e-6)


def test_softmax_is_stable_for_large_logits_and_masks() -> None:
    x = np.array([[1000.0, 1001.0, -np.inf, 999.0], [-np.inf, 5.0, -np.inf, -np.inf]], np.float32)
    e = np.exp(np.array([[-1.0, 0.0, -np.inf, -2.0]]))
    y = softmax(x, threads=4)
    np.testing.assert_allclose(y[0], (e / e.sum())[0], rtol=1e-6)
    np.testing.assert_array_equal(y[1], [0.0, 1.0, 0.0, 0.0])


def test_softmax_rejects_fully_masked_row() -> None:
    with pytest.raises(InputError, match="entirely -inf"):
        softmax(np.full((2, 3), -np.inf, np.float32))


@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm_matches_numpy(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(shape[-1])
    x = _x(shape, 3, np.float16)
    gamma = rng.standard_normal(shape[-1]).astype(np.float32)
    beta = rng.standard_normal(shape[-1]).astype(np.float32)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=-1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=-1, keepdims=True)
    expected = (x64 - mean) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(layernorm(x, gamma, beta, threads=16), expected, atol=2e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_rmsnorm_matches_numpy(shape: tuple[int, ...]) -> None:
    x = _x(shape, 5)
    gamma = np.random.default_rng(1).standard_normal(shape[-1]).astype(np.float32)
    x64 = x.astype(np.float64)
    expected = x64 / np.sqrt((x64**2).mean(axis=-1, keepdims=True) + 1e-6) * gamma
    np.testing.assert_allclose(rmsnorm(x, gamma, threads=4), expected, rtol=1e-5, atol=1e-5)


def test_norms_reject_bad_arguments() -> None:
    x = _x((2, 4), 0)
    with pytest.raises(InputError, match=r"gamma: shape \(3,\), expected \(4,\)"):
        rmsnorm(x, np.ones(3, np.float32))
    with pytest.raises(InputError, match="eps=0"):
        layernorm(x, np.ones(4, np.float32), np.zeros(4, np.float32), eps=0)
    with pytest.raises(InputError, match="threads=12"):
        softmax(x, threads=12)
    with pytest.raises(InputError, match="x: contains NaN"):
        layernorm(
            np.full((1, 2), np.inf, np.float32), np.ones(2, np.float32), np.ones(2, np.float32)
        )
