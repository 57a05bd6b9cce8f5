"""PackedWeight -> CPU container converters: every layout and payload a kernel runs, checked
by multiplying random activations against the storage's own dense decoding."""

from __future__ import annotations

import numpy as np
import pytest

from sparseflow.backends.cpu.bsr_fp32 import bsr_spmm
from sparseflow.backends.cpu.convert import (
    float_container,
    has_float_container,
    has_int4_container,
    int4_from_packed,
    int8_bsr_from_packed,
    int8_from_packed,
)
from sparseflow.backends.cpu.csr_nm_fp32 import csr_spmm, nm_spmm
from sparseflow.backends.cpu.formats import BsrMatrix, CsrMatrix, NmMatrix
from sparseflow.backends.cpu.int4 import int4_gemm
from sparseflow.backends.cpu.int8 import bsr_int8_spmm, int8_gemm
from sparseflow.backends.cpu.quant import quantize_int8_rows
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import pack_weight
from sparseflow.ir.types import SparseFormat, SparsePattern
from sparseflow.passes.quant_fp4 import quantize_fp4_fixed
from sparseflow.passes.quantize import quantize_int4_rtn, quantize_int8_per_channel
from tests.backends.cpu.helpers import assert_close, block_pruned, nm_pruned, reference

SHAPES = [(40, 24), (37, 53)]  # the second has ragged blocks and N:M groups
TOKENS = [1, 6]


def _layouts(rng: np.random.Generator, shape: tuple[int, int]) -> dict:
    """Return {name: (pruned dense W, SparseFormat)} for CSR, BSR 4x1 / 2x3 and 2:4."""
    unstructured = rng.standard_normal(shape).astype(np.float32)
    unstructured[rng.random(shape) < 0.7] = 0.0
    nm = nm_pruned(rng, (shape[0] + 1, shape[1]), 2, 4)[1:]  # row 0 of nm_pruned is empty
    block = {b: block_pruned(rng, shape, b, 0.4) for b in [(4, 1), (2, 3)]}
    return {
        "csr": (unstructured, SparseFormat(SparsePattern.UNSTRUCTURED, 0.3)),
        "bsr4x1": (block[4, 1], SparseFormat(SparsePattern.BLOCK, 0.4, block=(4, 1))),
        "bsr2x3": (block[2, 3], SparseFormat(SparsePattern.BLOCK, 0.4, block=(2, 3))),
        "2:4": (nm, SparseFormat(SparsePattern.NM, 0.5, n=2, m=4)),
    }


KERNELS = {CsrMatrix: csr_spmm, BsrMatrix: bsr_spmm, NmMatrix: nm_spmm}


def _check_float(container: object, dense: np.ndarray, rng: np.random.Generator) -> None:
    for t in TOKENS:
        x = rng.standard_normal((t, dense.shape[1])).astype(np.float32)
        if isinstance(container, np.ndarray):
            y = np.matmul(x, container.T)
        else:
            y = KERNELS[type(container)](x, container)
        assert_close(y, reference(x, dense))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["csr", "bsr4x1", "bsr2x3", "2:4"])
@pytest.mark.parametrize("payload", ["f32", "int8"])
def test_sparse_layouts_convert_without_re_pruning(shape, layout, payload):
    rng = np.random.default_rng([shape[0], len(layout), len(payload)])
    w, fmt = _layouts(rng, shape)[layout]
    stored = quantize_int8_per_channel(w) if payload == "int8" else w
    pw = pack_weight(stored, fmt, w != 0)
    container = float_container(pw)
    assert np.any(pw.to_dense() != 0)
    assert np.array_equal(container.indices, pw.arrays["indices"])
    if fmt.pattern is not SparsePattern.NM:
        assert np.array_equal(container.indptr, pw.arrays["indptr"])
    _check_float(container, pw.to_dense(), rng)


def test_zero_weight_kept_by_the_mask_stays_stored():
    """A kept entry whose value is zero is still an entry: the converter copies the layout."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 12)).astype(np.float32)
    mask = rng.random(w.shape) < 0.5
    w[mask & (rng.random(w.shape) < 0.3)] = 0.0
    pw = pack_weight(w, SparseFormat(SparsePattern.UNSTRUCTURED, 0.5), mask)
    csr = float_container(pw)
    assert csr.values.shape[0] == mask.sum()
    _check_float(csr, pw.to_dense(), rng)


@pytest.mark.parametrize("shape", SHAPES)
def test_dense_float_and_int8_payloads(shape):
    rng = np.random.default_rng(shape[0])
    w = rng.standard_normal(shape).astype(np.float32)
    for stored in (w, quantize_int8_per_channel(w)):
        pw = pack_weight(stored)
        dense = float_container(pw)
        np.testing.assert_array_equal(dense, pw.to_dense())


@pytest.mark.parametrize("shape", SHAPES)
def test_int8_gemm_from_packed_matches_w8a8(shape):
    rng = np.random.default_rng(shape[1])
    pw = pack_weight(quantize_int8_per_channel(rng.standard_normal(shape)))
    weight = int8_from_packed(pw)
    assert np.array_equal(weight.q, pw.arrays["values"])
    for t in TOKENS:
        x = rng.standard_normal((t, shape[1])).astype(np.float32)
        qx, sx = quantize_int8_rows(x)
        expected = reference(qx.astype(np.float32) * sx[:, None], pw.to_dense())
        assert_close(int8_gemm(qx, sx, weight), expected)


@pytest.mark.parametrize("block", [(4, 1), (2, 3)])
def test_int8_bsr_from_packed_keeps_codes(block):
    rng = np.random.default_rng(block[1])
    w = block_pruned(rng, (37, 53), block, 0.4)
    fmt = SparseFormat(SparsePattern.BLOCK, 0.4, block=block)
    pw = pack_weight(quantize_int8_per_channel(w), fmt, w != 0)
    bsr, scale = int8_bsr_from_packed(pw)
    assert bsr.values.dtype == np.int8 and np.array_equal(bsr.values, pw.arrays["values"])
    for t in TOKENS:
        x = rng.standard_normal((t, 53)).astype(np.float32)
        qx, sx = quantize_int8_rows(x)
        expected = reference(qx.astype(np.float32) * sx[:, None], pw.to_dense())
        assert_close(bsr_int8_spmm(qx, sx, bsr, scale), expected)


@pytest.mark.parametrize(("group", "symmetric"), [(16, False), (None, True), (8, True)])
def test_int4_from_packed(group, symmetric):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((24, 48)).astype(np.float32)
    pw = pack_weight(quantize_int4_rtn(w, group, symmetric))
    assert has_int4_container(pw.type)
    weight = int4_from_packed(pw)
    assert np.array_equal(weight.packed, pw.arrays["packed"])
    for t in TOKENS:
        x = rng.standard_normal((t, 48)).astype(np.float32)
        assert_close(int4_gemm(x, weight), reference(x, pw.to_dense()))


def test_storages_without_a_container_are_named():
    rng = np.random.default_rng(9)
    w = rng.standard_normal((8, 16)).astype(np.float32)
    fp4 = pack_weight(quantize_fp4_fixed(w))
    assert not has_float_container(fp4.type) and not has_int4_container(fp4.type)
    with pytest.raises(InputError, match="fp4"):
        float_container(fp4)
    with pytest.raises(InputError, match="int4"):
        int4_from_packed(fp4)
    dense_int8 = pack_weight(quantize_int8_per_channel(w))
    with pytest.raises(InputError, match="int8 BSR"):
        int8_bsr_from_packed(dense_int8)
    with pytest.raises(InputError, match="int8_gemm"):
        int8_from_packed(pack_weight(w))
