"""GPTQ against a column-by-column OBQ reference, and GPTQ versus RTN on held-out inputs."""

import numpy as np
import pytest

from sparseflow.ir.errors import InputError
from sparseflow.passes.quant_gptq import gptq_hessian, quantize_gptq
from sparseflow.passes.quantize import dequantize, quantize_int4_rtn
from sparseflow.passes.sparsity import select_nm


def _correlated(k: int, seed: int) -> callable:
    """Return a sampler of inputs with correlated features and uneven feature scales."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(k, k)) / np.sqrt(k) + 0.3 * np.eye(k)
    feature_scale = rng.uniform(0.2, 3.0, size=k)
    return lambda n: ((rng.normal(size=(n, k)) @ mix) * feature_scale).astype(np.float32)


def _minmax(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xmin = np.minimum(values.min(axis=1), 0.0)
    xmax = np.maximum(values.max(axis=1), 0.0)
    zero_range = (xmin == 0) & (xmax == 0)
    xmin, xmax = np.where(zero_range, -1.0, xmin), np.where(zero_range, 1.0, xmax)
    scale = ((xmax - xmin) / 15).astype(np.float32).astype(np.float64)
    return scale, np.round(-xmin / scale)


def _obq_reference(w: np.ndarray, h: np.ndarray, group: int, mask: np.ndarray) -> np.ndarray:
    """Quantize one column at a time, eliminating it from the explicit inverse Hessian."""
    w, h = w.astype(np.float64).copy(), h.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h_inv = np.linalg.inv(h + 0.01 * np.mean(np.diag(h)) * np.eye(h.shape[0]))
    codes = np.zeros(w.shape)
    for i in range(w.shape[1]):
        if i % group == 0:
            scale, zero = _minmax(w[:, i : i + group] * mask[:, i : i + group])
        q = np.where(mask[:, i], np.clip(np.round(w[:, i] / scale) + zero, 0, 15), zero)
        codes[:, i] = q
        err = (w[:, i] - (q - zero) * scale) / h_inv[i, i]
        w[:, i:] -= np.outer(err, h_inv[i, i:])
        h_inv -= np.outer(h_inv[:, i], h_inv[i, :]) / h_inv[i, i]
    return codes


@pytest.mark.parametrize(("n", "k", "group", "block"), [(8, 64, 16, 128), (12, 96, 32, 20)])
def test_blocked_gptq_matches_obq_reference(n: int, k: int, group: int, block: int) -> None:
    x = _correlated(k, 0)(4 * k)
    x[:, 3] = 0.0  # a dead input
    w = np.random.default_rng(1).normal(0, 0.02, size=(n, k)).astype(np.float32)
    h = gptq_hessian(x)
    mask = np.random.default_rng(2).random((n, k)) < 0.8
    for keep in (None, mask):
        codes = quantize_gptq(w, h, group, mask=keep, block_size=block)
        ref = _obq_reference(w, h, group, np.ones_like(mask) if keep is None else keep)
        assert np.mean(codes.codes == ref) > 0.99
    assert np.all(dequantize(codes)[:, 3] == 0) and np.all(dequantize(codes)[~mask] == 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_on_held_out_inputs(seed: int, act_order: bool) -> None:
    k, n = 256, 64
    sample = _correlated(k, seed)
    calibration, held_out = sample(512), sample(256)
    w = np.random.default_rng(seed + 10).normal(0, 0.02, size=(n, k)).astype(np.float32)
    y = held_out @ w.T
    gptq = quantize_gptq(w, gptq_hessian(calibration), 128, act_order=act_order)
    rtn = quantize_int4_rtn(w, 128)
    gptq_err = np.linalg.norm(held_out @ dequantize(gptq).T - y)
    rtn_err = np.linalg.norm(held_out @ dequantize(rtn).T - y)
    assert gptq_err < 0.9 * rtn_err
    assert str(gptq.params) == "q=int4:group:g128:asym"


def test_gptq_respects_a_two_four_mask_and_packs_sparse() -> None:
    k, n = 256, 32
    sample = _correlated(k, 3)
    w = np.random.default_rng(4).normal(0, 0.02, size=(n, k)).astype(np.float32)
    sel = select_nm(w, 2, 4)
    codes = quantize_gptq(w, gptq_hessian(sample(512)), 64, mask=sel.mask, symmetric=True)
    dense = dequantize(codes)
    assert np.all(dense[~sel.mask] == 0)
    assert np.array_equal(sel.pack(codes).to_dense(), dense)
    held_out = sample(256)
    y = held_out @ w.T
    rtn = dequantize(quantize_int4_rtn(sel.apply(w), 64, symmetric=True)) * sel.mask
    assert np.linalg.norm(held_out @ dense.T - y) < np.linalg.norm(held_out @ rtn.T - y)


def test_gptq_rejects_bad_options() -> None:
    w = np.ones((4, 64), np.float32)
    h = np.eye(64)
    with pytest.raises(InputError, match="group size"):
        quantize_gptq(w, h, 48)
    with pytest.raises(InputError, match="Hessian"):
        quantize_gptq(w, np.eye(32))
    with pytest.raises(InputError, match="mask"):
        quantize_gptq(w, h, 32, mask=np.ones((4, 63), bool))
    with pytest.raises(InputError, match="calibration"):
        gptq_hessian(np.ones((0, 64)))
