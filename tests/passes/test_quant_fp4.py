"""FP4 E2M1 with per-channel exponent bias: the LLM-FP4 formula, storage, and the bias search."""

import math

import numpy as np
import pytest

from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import FP4_E2M1_GRID, pack_weight
from sparseflow.passes.quant_fp4 import (
    fp4_encode,
    fp4_fake_quant_tensor,
    fp4_round,
    initial_bias,
    max_value,
    quantize_fp4_fixed,
    quantize_fp4_searched,
    search_fp4_activation_bias,
)
from sparseflow.passes.quantize import dequantize


def _scalar_reference(x: float, b: float) -> float:
    """Apply the LLM-FP4 formula to one value (E = 2, M = 1), in plain Python floats."""
    maxval = (2 - 2**-1) * 2 ** (2**2 - 1 - b)
    x_c = min(max(x, -maxval), maxval)
    if x_c == 0:
        return 0.0
    e = max(math.floor(math.log2(abs(x_c)) + b), 1)
    step = 2.0 ** (e - 1 - b)
    return round(x_c / step) * step


@pytest.mark.parametrize("bias", [-1.5, 0.0, 1.0, 2.7, 7.3])
def test_round_matches_scalar_formula_and_e2m1_grid(bias: float) -> None:
    rng = np.random.default_rng(int(bias * 10) % 7)
    x = (rng.normal(size=(3, 200)) * 2.0 ** (1 - bias) * 3).astype(np.float32)
    x[0, :5] = 0.0
    got = fp4_round(x, np.full(3, bias))
    ref = np.vectorize(lambda v: _scalar_reference(float(v), bias))(x)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)
    grid = 2.0 ** (1 - bias) * FP4_E2M1_GRID.astype(np.float64)
    assert np.all(np.isclose(np.abs(got)[..., None], grid, rtol=1e-9).any(-1))
    assert np.abs(got).max() <= max_value(np.float64(bias)) * (1 + 1e-12)


@pytest.mark.parametrize("shape", [(8, 64), (5, 13), (1, 1)])
def test_codes_round_trip_through_storage(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    w = (rng.normal(0, 0.02, size=shape) * rng.uniform(0.2, 5, size=(shape[0], 1))).astype(
        np.float32
    )
    codes = quantize_fp4_fixed(w, 4.5)
    pw = pack_weight(codes)
    assert pw.arrays["packed"].shape == (shape[0], -(-shape[1] // 2))
    decoded = pw.to_dense()
    np.testing.assert_allclose(decoded, fp4_round(w, np.full(shape[0], 4.5)), rtol=1e-6)
    assert np.array_equal(fp4_encode(decoded, np.full(shape[0], 4.5)), codes.codes)
    assert pw.nbytes == pw.arrays["packed"].size + 4 * shape[0]


def test_initial_bias_maps_maxval_to_row_absmax() -> None:
    w = np.random.default_rng(2).normal(size=(6, 32)).astype(np.float32) * np.arange(1, 7)[:, None]
    np.testing.assert_allclose(max_value(initial_bias(w)), np.abs(w).max(axis=1), rtol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_searched_bias_beats_fixed_bias(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k, n = 256, 64
    w = (rng.normal(0, 0.02, size=(n, k)) * rng.uniform(0.3, 3, size=(n, 1))).astype(np.float32)
    w[:, :2] *= 8  # a few large weights per row make the clipping trade-off matter
    mix = rng.normal(size=(k, k)) / np.sqrt(k) + np.eye(k)
    calibration = (rng.normal(size=(256, k)) @ mix).astype(np.float32)
    held_out = (rng.normal(size=(256, k)) @ mix).astype(np.float32)
    searched = quantize_fp4_searched(w, calibration)

    def output_error(q: np.ndarray, x: np.ndarray) -> float:
        return float(np.linalg.norm(x @ (q - w).T) / np.linalg.norm(x @ w.T))

    fixed = output_error(dequantize(quantize_fp4_fixed(w)), held_out)
    mx_absmax = dequantize(quantize_fp4_fixed(w, 0.0))  # bias 0: maxval 12, no clipping here
    init = fp4_round(w, initial_bias(w)).astype(np.float32)  # per-channel absmax bias, no search
    got = output_error(dequantize(searched), held_out)
    assert got < 0.5 * fixed and got < output_error(mx_absmax, held_out)
    assert output_error(dequantize(searched), calibration) <= output_error(init, calibration)
    assert got < output_error(init, held_out)


def test_bad_options_raise() -> None:
    w = np.ones((4, 8), np.float32)
    with pytest.raises(InputError, match="K = 7"):
        quantize_fp4_searched(w, np.ones((3, 7)))
    with pytest.raises(InputError, match="search"):
        quantize_fp4_searched(w, np.ones((3, 8)), steps=0)
    with pytest.raises(InputError, match="2-D"):
        quantize_fp4_fixed(np.ones(8))


def test_activation_bias_search_beats_absmax_bias() -> None:
    rng = np.random.default_rng(5)
    k = 128
    w_hat = dequantize(quantize_fp4_fixed(rng.normal(0, 0.02, size=(32, k)), 5.0))
    x = rng.normal(size=(64, k)).astype(np.float32)
    x[:, 7] *= 25  # one outlier feature makes the absmax bias coarse for everything else
    y = x @ w_hat.T
    b0 = float(initial_bias(x.reshape(1, -1))[0])
    bias = search_fp4_activation_bias(x, w_hat)
    searched = np.linalg.norm(fp4_fake_quant_tensor(x, bias) @ w_hat.T - y)
    assert searched < np.linalg.norm(fp4_fake_quant_tensor(x, b0) @ w_hat.T - y)
    assert np.allclose(
        fp4_fake_quant_tensor(x, bias), fp4_round(x.reshape(1, -1), [bias]).reshape(x.shape)
    )
