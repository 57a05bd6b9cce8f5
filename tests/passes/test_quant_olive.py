"""OliVe outlier-victim pairs: encoding against a per-pair reference, storage, and accuracy."""

import numpy as np
import pytest

from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight, pack_weight
from sparseflow.passes.quant_olive import (
    initial_alpha,
    olive_fake_quant_tensor,
    pair_quantize,
    quantize_olive,
)
from sparseflow.passes.quantize import dequantize, quantize_int4_rtn, symmetric_quantize

NORMAL = [4.0 * i for i in range(-7, 8)]
OUTLIER = [48.0, 64.0, 96.0, 128.0, 192.0, 256.0, 384.0]
GRID = sorted(NORMAL + OUTLIER + [-v for v in OUTLIER])


def _pair_reference(u: np.ndarray) -> np.ndarray:
    """Return the real values (grid units) OliVe keeps for one row, pair by pair."""
    nearest = [min(GRID, key=lambda g, v=v: (abs(v - g), g)) for v in u]
    out = []
    for even, odd in zip(nearest[0::2], nearest[1::2], strict=True):
        if abs(even) > 32:
            out += [even, 0.0]
        elif abs(odd) > 32:
            out += [0.0, odd]
        else:
            out += [even, odd]
    return np.array(out)


def _decode_row(codes: np.ndarray) -> np.ndarray:
    pw = pack_weight(quantize_olive(np.ones((1, codes.size), np.float32)))
    packed = codes[0::2] | (codes[1::2] << 4)
    arrays = {"packed": packed[None, :].astype(np.uint8), "scale": np.ones(1, np.float32)}
    return PackedWeight(pw.type, arrays).to_dense()[0]


def test_pair_quantize_matches_reference() -> None:
    rng = np.random.default_rng(0)
    u = rng.standard_t(2, size=(4, 400)) * 12
    u[0, :4] = [100.0, 200.0, -50.0, 3.0]  # both outliers; outlier then normal
    codes = pair_quantize(u)
    for r in range(u.shape[0]):
        assert np.array_equal(_decode_row(codes[r]), _pair_reference(u[r]))
    outliers = np.abs(_decode_row(codes[0])) > 32
    assert not np.any(outliers[0::2] & outliers[1::2])  # at most one outlier per pair


@pytest.mark.parametrize("shape", [(8, 64), (3, 2), (17, 130)])
def test_weights_round_trip_through_storage(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    w = (rng.standard_t(3, size=shape) * 0.02).astype(np.float32)
    w[0] = 0.0  # a row of zeros
    codes = quantize_olive(w)
    pw = pack_weight(codes)
    assert pw.arrays["packed"].shape == (shape[0], shape[1] // 2)
    assert pw.nbytes == shape[0] * shape[1] // 2 + 4 * shape[0]
    scale = codes.side["scale"][:, None].astype(np.float64)
    ref = np.stack([_pair_reference(row) for row in w / scale]) * scale
    np.testing.assert_allclose(pw.to_dense(), ref, rtol=1e-6, atol=1e-12)
    assert np.all(pw.to_dense()[0] == 0)


def test_initial_alpha_is_three_sigma_bound() -> None:
    x = np.array([[1.0, 3.0, 5.0, 7.0]])
    mu, sigma = 4.0, np.sqrt(5.0)
    assert np.isclose(initial_alpha(x)[0], max(abs(mu + 3 * sigma), abs(mu - 3 * sigma)))


def _error(y_hat: np.ndarray, y: np.ndarray) -> float:
    return float(np.linalg.norm(y_hat - y) / np.linalg.norm(y))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_olive_beats_int4_on_outlier_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t, k, n = 64, 256, 128
    w = (rng.standard_t(3, size=(n, k)) * 0.02).astype(np.float32)  # heavy-tailed weights
    x = rng.normal(size=(t, k)).astype(np.float32)
    cols = rng.choice(k, 1, replace=False)  # 1 of 256 feature columns: 0.4%
    x[:, cols] = rng.uniform(20, 60, size=(t, 1)) * rng.choice([-1, 1], size=(t, 1))
    y = x @ w.T
    w_olive = dequantize(quantize_olive(w))
    w_int4 = dequantize(quantize_int4_rtn(w, None, symmetric=True))
    assert _error(x @ w_olive.T, y) < 0.75 * _error(x @ w_int4.T, y)  # weights only
    x_codes, x_scale = symmetric_quantize(x, 4)  # int4 activations per token
    x_int4 = x_codes * x_scale[:, None]
    x_olive = olive_fake_quant_tensor(x)
    assert _error(x_olive @ w_olive.T, y) < 0.75 * _error(x_int4 @ w_int4.T, y)  # W4A4


def test_odd_k_raises() -> None:
    with pytest.raises(InputError, match="even"):
        quantize_olive(np.ones((2, 5), np.float32))
    with pytest.raises(InputError, match="even"):
        olive_fake_quant_tensor(np.ones((2, 5), np.float32))
