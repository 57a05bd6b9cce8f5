"""int8 (dense and BSR) and int4 group-wise kernels against numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from sparseflow.backends.cpu import int8 as int8_mod
from sparseflow.backends.cpu.formats import bsr_from_dense
from sparseflow.backends.cpu.int4 import int4_gemm, int4_gemv
from sparseflow.backends.cpu.int8 import bsr_int8_spmm, int8_gemm
from sparseflow.backends.cpu.quant import (
    Int4Weight,
    Int8Weight,
    dequantize_int4,
    int4_weight_from_dense,
    int8_weight_from_dense,
    pack_int4,
    quantize_int8_rows,
    unpack_int4,
)
from sparseflow.ir.errors import InputError

SHAPES = [(64, 48), (37, 53), (1, 19)]
TOKENS = [1, 2, 7, 33]


def _int8_reference(qx: np.ndarray, sx: np.ndarray, qw: np.ndarray, sw: np.ndarray) -> np.ndarray:
    """Return (qX qW^T in int64 -> int32) * sx * sw, the int8 contract, in f32."""
    acc = (qx.astype(np.int64) @ qw.astype(np.int64).T).astype(np.int32)
    return (acc.astype(np.float32) * sx[:, None]) * sw[None, :]


def _random_int8(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Return int8 values over the full range -128..127 (the kernels must not assume +-127)."""
    return rng.integers(-128, 128, size=shape).astype(np.int8)


@pytest.mark.parametrize("shape", SHAPES)
def test_int8_gemm_is_bit_exact(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] + 7 * shape[1])
    w = int8_weight_from_dense(rng.standard_normal(shape).astype(np.float32))
    for t in TOKENS:
        qx, sx = quantize_int8_rows(rng.standard_normal((t, shape[1])).astype(np.float32))
        ref = _int8_reference(qx, sx, w.q, w.scale)
        assert np.array_equal(int8_gemm(qx, sx, w), ref)


def test_int8_exact_past_the_f32_flush_interval() -> None:
    """K beyond 1024 products: the f32 partial sums must be flushed before they round."""
    rng = np.random.default_rng(11)
    k = 3 * int8_mod.EXACT_F32_TERMS + 5
    qw, qx = np.full((8, k), -128, np.int8), np.full((3, k), -128, np.int8)
    qw[:, ::7] = _random_int8(rng, (8, len(range(0, k, 7))))
    sw, sx = np.ones(8, np.float32), np.ones(3, np.float32)
    dense = Int8Weight(qw, sw)
    ref = _int8_reference(qx, sx, qw, sw)
    assert np.array_equal(int8_gemm(qx, sx, dense), ref)
    for block in [(4, 1), (16, 1)]:
        sparse = bsr_from_dense(qw, block)
        assert np.array_equal(bsr_int8_spmm(qx, sx, sparse, sw), ref)
        assert np.array_equal(bsr_int8_spmm(qx[:1], sx[:1], sparse, sw), ref[:1])  # decode


@pytest.mark.parametrize("block", [(4, 1), (16, 1), (2, 3)])
@pytest.mark.parametrize("shape", SHAPES)
def test_bsr_int8_is_bit_exact(block: tuple[int, int], shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(block[0] * 31 + shape[1])
    mask = rng.random(((shape[0] + block[0] - 1) // block[0], shape[1])) < 0.4
    mask[0] = False  # an empty block row
    qw = _random_int8(rng, shape)
    qw[~np.repeat(mask, block[0], axis=0)[: shape[0]]] = 0
    sw = rng.random(shape[0]).astype(np.float32) + 0.01
    sparse = bsr_from_dense(qw, block)
    for t in TOKENS:
        qx, sx = _random_int8(rng, (t, shape[1])), rng.random(t).astype(np.float32)
        assert np.array_equal(bsr_int8_spmm(qx, sx, sparse, sw), _int8_reference(qx, sx, qw, sw))


def test_int8_rejects_bad_scale() -> None:
    w = int8_weight_from_dense(np.ones((4, 8), np.float32))
    with pytest.raises(InputError, match="activation scale"):
        int8_gemm(np.ones((2, 8), np.int8), np.ones(3, np.float32), w)


def test_int4_pack_round_trip_and_nibble_order() -> None:
    q = np.array([[1, 2, 15, 0]], np.uint8)
    packed = pack_int4(q)
    assert packed.tolist() == [[0x21, 0x0F]]
    assert np.array_equal(unpack_int4(packed), q)


# Row counts 40, 33, 10, 7, 1 leave 0, 1, 2, 3 and 1 rows for the GEMV's last four-row pass.
INT4_CASES = [((40, 256), 128), ((33, 96), 32), ((10, 32), 8), ((7, 64), 16), ((1, 64), 64)]


@pytest.mark.parametrize("shape_group", INT4_CASES)
def test_int4_matches_dequantized_reference(shape_group: tuple[tuple[int, int], int]) -> None:
    shape, group = shape_group
    rng = np.random.default_rng(shape[0] + group)
    w = rng.standard_normal(shape).astype(np.float32)
    w[0, :group] = 0.0  # an all-zero group takes the (-1, +1) range of the quantizer
    w4 = int4_weight_from_dense(w, group)
    deq = dequantize_int4(w4)
    assert np.abs(deq - w).max() <= w4.scales.max() * 0.5 + 1e-6
    for t in TOKENS:
        x = rng.standard_normal((t, shape[1])).astype(np.float32)
        ref = x.astype(np.float64) @ deq.astype(np.float64).T
        got = int4_gemm(x, w4)
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))
    x1 = rng.standard_normal((1, shape[1])).astype(np.float32)
    assert np.array_equal(int4_gemv(x1, w4), int4_gemm(x1, w4))


def test_int4_rejects_bad_group_and_tokens() -> None:
    with pytest.raises(InputError, match="does not divide"):
        int4_weight_from_dense(np.ones((2, 100), np.float32), 128)
    with pytest.raises(InputError, match="zeros"):
        Int4Weight(np.zeros((2, 4), np.uint8), np.ones((2, 1), np.float32),
                   np.zeros((2, 2), np.uint8), 8)  # fmt: skip
    w4 = int4_weight_from_dense(np.ones((2, 8), np.float32), 8)
    with pytest.raises(InputError, match="T = 2"):
        int4_gemv(np.ones((2, 8), np.float32), w4)
