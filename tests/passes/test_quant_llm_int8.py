"""LLM.int8(): decomposition against a step-by-step reference and the outlier acceptance test."""

import numpy as np
import pytest

from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import pack_weight
from sparseflow.passes.quant_llm_int8 import (
    llm_int8_matmul,
    outlier_columns,
    quantize_llm_int8,
)
from sparseflow.passes.quantize import quantize_int8_per_channel, w8a8_matmul


def _outlier_data(t: int, k: int, n: int, n_outliers: int, seed: int) -> tuple:
    """Return (X, calibration X, W, outlier columns): outlier features of magnitude 20-60."""
    rng = np.random.default_rng(seed)
    cols = np.sort(rng.choice(k, n_outliers, replace=False))

    def sample(rows: int) -> np.ndarray:
        x = rng.normal(size=(rows, k)).astype(np.float32)
        signs = rng.choice([-1.0, 1.0], size=(rows, n_outliers))
        x[:, cols] = (rng.uniform(20, 60, size=(rows, n_outliers)) * signs).astype(np.float32)
        return x

    w = rng.normal(0, 0.02, size=(n, k)).astype(np.float32)
    return sample(t), sample(t), w, cols


def _reference(x: np.ndarray, w: np.ndarray, threshold: float) -> np.ndarray:
    """Compute steps 1-5 of LLM.int8() literally, outlier weights from the dequantized CB."""
    scb = np.abs(w).max(axis=1)
    cb = np.round(127 * w / scb[:, None])
    cols = [k for k in range(x.shape[1]) if np.any(np.abs(x[:, k]) >= threshold)]
    x_in = x.copy()
    x_in[:, cols] = 0
    sca = np.abs(x_in).max(axis=1)
    ca = np.round(127 * x_in / sca[:, None])
    acc = ca.astype(np.int64) @ cb.astype(np.int64).T
    y = acc * sca[:, None] * scb[None, :] / 127**2
    w_out = (cb[:, cols] * scb[:, None] / 127).astype(np.float16).astype(np.float32)
    return y + x[:, cols].astype(np.float16).astype(np.float32) @ w_out.T


@pytest.mark.parametrize(("t", "k", "n", "outliers"), [(16, 128, 24, 1), (40, 512, 64, 2)])
def test_matmul_matches_step_by_step_reference(t: int, k: int, n: int, outliers: int) -> None:
    x, _, w, cols = _outlier_data(t, k, n, outliers, seed=k)
    y = llm_int8_matmul(x, pack_weight(quantize_llm_int8(w)))
    np.testing.assert_allclose(y, _reference(x, w, 6.0), rtol=1e-4, atol=1e-5)
    assert np.array_equal(outlier_columns(x), cols)


def test_without_outliers_it_is_vector_wise_int8() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 64)).astype(np.float32) * 0.5
    w = rng.normal(size=(16, 64)).astype(np.float32)
    assert outlier_columns(x).size == 0
    np.testing.assert_allclose(
        llm_int8_matmul(x, pack_weight(quantize_llm_int8(w))), _reference(x, w, 6.0), rtol=1e-5
    )


def test_storage_round_trip_keeps_fp16_outlier_columns() -> None:
    _, x_cal, w, _ = _outlier_data(32, 256, 16, 2, seed=2)
    codes = quantize_llm_int8(w, outlier_columns(x_cal))
    pw = pack_weight(codes)
    ref = codes.codes.astype(np.float32) * codes.side["scb"][:, None] / 127
    cols = codes.side["outlier_cols"]
    ref[:, cols] = w[:, cols].astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(pw.to_dense(), ref, rtol=1e-6)
    assert pw.nbytes == 16 * 256 + 16 * 4 + cols.size * 4 + 16 * cols.size * 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_outliers_llm_int8_is_5x_better_than_w8a8(seed: int) -> None:
    # 2 of 1024 feature columns (0.2%) carry magnitudes 20-60, as in the paper's outliers.
    x, x_cal, w, _ = _outlier_data(64, 1024, 256, 2, seed)
    y = x @ w.T
    w8a8 = np.linalg.norm(w8a8_matmul(x, pack_weight(quantize_int8_per_channel(w))) - y)
    static = pack_weight(quantize_llm_int8(w, outlier_columns(x_cal)))
    dynamic = pack_weight(quantize_llm_int8(w))
    assert w8a8 / np.linalg.norm(llm_int8_matmul(x, static) - y) >= 5.0
    assert w8a8 / np.linalg.norm(llm_int8_matmul(x, dynamic) - y) >= 4.0


def test_bad_inputs_raise() -> None:
    w = np.ones((4, 8), np.float32)
    with pytest.raises(InputError, match="outlier_cols"):
        quantize_llm_int8(w, np.array([8]))
    with pytest.raises(InputError, match="threshold"):
        outlier_columns(np.ones((2, 8)), threshold=0)
    with pytest.raises(InputError, match="K = 7"):
        llm_int8_matmul(np.ones((2, 7)), pack_weight(quantize_llm_int8(w)))
    with pytest.raises(InputError, match="llm.int8 weight"):
        llm_int8_matmul(np.ones((2, 8)), pack_weight(w))
