"""Integer quantization primitives, W8A8, INT4 RTN and SmoothQuant against numpy references."""

import numpy as np
import pytest

from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import pack_weight
from sparseflow.passes.quantize import (
    dequantize,
    fold_smoothing,
    int8_matmul,
    quantize_activations_per_token,
    quantize_int4_rtn,
    quantize_int8_per_channel,
    smoothquant_scales,
    symmetric_quantize,
    w8a8_matmul,
)
from sparseflow.passes.sparsity import select_nm

SHAPES = [(8, 256), (5, 12), (33, 384), (1, 128)]


def _weights(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    w = np.random.default_rng(seed).normal(0, 0.05, size=shape).astype(np.float32)
    if shape[0] > 1:
        w[1] = 0.0  # a row of zeros
    return w


def _symmetric_reference(row: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    """Codes and scale: max(absmax, 1e-5) / qmax with its significand rounded to 11 bits
    (half to even), through frexp rather than the bit arithmetic of `symmetric_scale`."""
    qmax = 2 ** (bits - 1) - 1
    mantissa, exponent = np.frexp(np.float32(max(float(np.abs(row).max()), 1e-5) / qmax))
    s = np.float32(np.ldexp(np.round(mantissa * 2**11) / 2**11, exponent))
    return np.clip(np.round(row / s), -qmax, qmax), s


def _asymmetric_reference(group: np.ndarray) -> tuple[np.ndarray, float, float]:
    xmin, xmax = min(float(group.min()), 0.0), max(float(group.max()), 0.0)
    if xmin == 0 and xmax == 0:
        xmin, xmax = -1.0, 1.0
    s = np.float32((xmax - xmin) / 15)
    z = float(np.round(-xmin / s))
    return np.clip(np.round(group / s) + z, 0, 15), float(s), z


@pytest.mark.parametrize("shape", SHAPES)
def test_int8_per_channel_matches_reference(shape: tuple[int, int]) -> None:
    w = _weights(shape)
    codes = quantize_int8_per_channel(w)
    for r in range(shape[0]):
        ref_q, ref_s = _symmetric_reference(w[r], 8)
        assert np.array_equal(codes.codes[r], ref_q) and codes.side["scale"][r] == ref_s
    w_hat = dequantize(codes)
    assert np.array_equal(w_hat, codes.codes * codes.side["scale"][:, None])
    assert np.all(np.abs(w_hat - w) <= codes.side["scale"][:, None] / 2 + 1e-7)


@pytest.mark.parametrize(("t", "k", "n"), [(7, 64, 5), (32, 256, 48)])
def test_w8a8_matmul_matches_integer_reference(t: int, k: int, n: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(t, k)).astype(np.float32)
    w = _weights((n, k), 2)
    x_codes, x_scale = quantize_activations_per_token(x)
    pw = pack_weight(quantize_int8_per_channel(w))
    acc = x_codes.astype(np.int64) @ pw.arrays["values"].astype(np.int64).T
    ref = acc * x_scale[:, None].astype(np.float64) * pw.arrays["scale"][None, :]
    np.testing.assert_allclose(w8a8_matmul(x, pw), ref, rtol=1e-6)
    np.testing.assert_allclose(
        int8_matmul(x_codes, x_scale, pw.arrays["values"], pw.arrays["scale"]), ref, rtol=1e-6
    )
    y = x @ w.T
    assert np.linalg.norm(w8a8_matmul(x, pw) - y) < 0.02 * np.linalg.norm(y)


INT4_CASES = [(s, g) for s in SHAPES for g in (128, 4, None) if g is None or s[1] % g == 0]


@pytest.mark.parametrize(("shape", "group"), INT4_CASES)
def test_int4_asymmetric_rtn_matches_reference(shape: tuple[int, int], group: int | None) -> None:
    w = _weights(shape, 3)
    codes = quantize_int4_rtn(w, group)
    g = shape[1] if group is None else group
    for r in range(shape[0]):
        for j in range(shape[1] // g):
            ref_q, ref_s, ref_z = _asymmetric_reference(w[r, j * g : (j + 1) * g])
            assert np.array_equal(codes.codes[r, j * g : (j + 1) * g], ref_q)
            assert codes.side["scales"][r, j] == ref_s and codes.side["zeros"][r, j] == ref_z
    w_hat = dequantize(codes)
    step = np.repeat(codes.side["scales"], g, axis=1)
    assert np.all(np.abs(w_hat - w) <= step + 1e-7)
    if shape[0] > 1:
        assert np.all(w_hat[1] == 0)  # a zero row stays zero


def test_int4_symmetric_uses_zero_point_eight() -> None:
    w = _weights((6, 256), 4)
    codes = quantize_int4_rtn(w, 128, symmetric=True)
    assert np.all(codes.side["zeros"] == 8)
    for r in range(6):
        for j in range(2):
            ref_q, ref_s = _symmetric_reference(w[r, j * 128 : (j + 1) * 128], 4)
            assert np.array_equal(codes.codes[r, j * 128 : (j + 1) * 128], ref_q + 8)
            assert codes.side["scales"][r, j] == ref_s
    assert str(codes.params) == "q=int4:group:g128"


def test_int4_codes_pack_under_two_four() -> None:
    w = _weights((16, 256), 5)
    sel = select_nm(w, 2, 4)
    codes = quantize_int4_rtn(sel.apply(w), 128)
    pw = sel.pack(codes)
    assert np.array_equal(pw.to_dense(), dequantize(codes) * sel.mask)
    assert pw.nbytes == 16 * 64 + 16 * 128 + 16 * 2 * 5  # packed + indices + scales/zeros


@pytest.mark.parametrize("group", [0, 3, 100, 512])
def test_int4_group_must_divide_k(group: int) -> None:
    with pytest.raises(InputError, match="group size"):
        quantize_int4_rtn(_weights((4, 256)), group)


def _outlier_activations(t: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(t, k)).astype(np.float32)
    cols = rng.choice(k, max(1, k // 256), replace=False)
    x[:, cols] *= rng.uniform(20, 60, size=cols.size).astype(np.float32)
    return x


def test_smoothquant_scales_match_formula() -> None:
    rng = np.random.default_rng(6)
    a = rng.uniform(0.1, 50, 64)
    ws = [_weights((16, 64), 7), _weights((8, 64), 8)]
    s = smoothquant_scales(a, ws, alpha=0.5)
    w_max = np.maximum(np.maximum(np.abs(ws[0]).max(0), np.abs(ws[1]).max(0)), 1e-5)
    np.testing.assert_allclose(s, np.maximum(np.sqrt(a) / np.sqrt(w_max), 1e-5), rtol=1e-6)


@pytest.mark.parametrize("with_bias", [False, True])
def test_smoothquant_folding_is_exact_and_helps_w8a8(with_bias: bool) -> None:
    x = _outlier_activations(64, 512, 9)
    gamma = np.random.default_rng(10).uniform(0.5, 1.5, 512).astype(np.float32)
    beta = np.random.default_rng(11).normal(size=512).astype(np.float32) if with_bias else None
    ws = [_weights((96, 512), 12), _weights((64, 512), 13)]
    normed = x * gamma + (0 if beta is None else beta)
    s = smoothquant_scales(np.abs(normed).max(axis=0), ws)
    g2, b2, folded = fold_smoothing(gamma, beta, ws, s)
    smoothed = x * g2 + (0 if b2 is None else b2)
    for w, wf in zip(ws, folded, strict=True):
        y = normed @ w.T
        np.testing.assert_allclose(smoothed @ wf.T, y, rtol=1e-4, atol=1e-4 * np.abs(y).max())
        plain = np.linalg.norm(w8a8_matmul(normed, pack_weight(quantize_int8_per_channel(w))) - y)
        smooth = w8a8_matmul(smoothed, pack_weight(quantize_int8_per_channel(wf)))
        assert np.linalg.norm(smooth - y) < 0.5 * plain


def test_smoothquant_rejects_bad_options() -> None:
    with pytest.raises(InputError, match="alpha"):
        smoothquant_scales(np.ones(8), [_weights((4, 8))], alpha=1.5)
    with pytest.raises(InputError, match="K = 8"):
        smoothquant_scales(np.ones(8), [_weights((4, 9))])
    with pytest.raises(InputError, match="norm weight"):
        fold_smoothing(np.ones(7), None, [_weights((4, 8))], np.ones(8))


def test_symmetric_quantize_zero_rows_use_the_floor() -> None:
    codes, scale = symmetric_quantize(np.zeros((2, 5), np.float32), 8)
    assert np.all(codes == 0) and np.allclose(scale, 1e-5 / 127)
