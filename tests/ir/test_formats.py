"""Storage layouts: every encoder/decoder pair against independent numpy and scipy references."""

import numpy as np
import pytest
import scipy.sparse as sps

from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import (
    PackedWeight,
    QuantCodes,
    pack_nibbles,
    pack_weight,
    unpack_nibbles,
)
from sparseflow.ir.types import QuantParams, QuantScheme, SparseFormat, SparsePattern, TensorType

SHAPES = [(8, 16), (5, 13), (33, 70), (1, 4)]


def _weights(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    w = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    w[w == 0] = 1.0  # scipy drops stored zeros; keep every entry non-zero
    return w


def _nm_mask_loop(w: np.ndarray, n: int, m: int) -> np.ndarray:
    mask = np.zeros(w.shape, bool)
    for r in range(w.shape[0]):
        for g in range(0, w.shape[1], m):
            group = np.abs(w[r, g : g + m])
            mask[r, g + np.argsort(-group, kind="stable")[:n]] = True
    return mask


def _block_mask(shape: tuple[int, int], block: tuple[int, int], seed: int) -> np.ndarray:
    bm, bk = block
    br, bc = -(-shape[0] // bm), -(-shape[1] // bk)
    kept = np.random.default_rng(seed).random((br, bc)) < 0.5
    return np.kron(kept, np.ones(block, bool)).astype(bool)[: shape[0], : shape[1]]


def test_nibbles_round_trip_odd_lengths() -> None:
    codes = np.random.default_rng(1).integers(0, 16, size=(3, 7)).astype(np.uint8)
    packed = pack_nibbles(codes)
    assert packed.shape == (3, 4)
    assert np.array_equal(packed[:, 0] & 15, codes[:, 0])  # even entry in the low nibble
    assert np.array_equal(packed[:, 0] >> 4, codes[:, 1])
    assert np.array_equal(unpack_nibbles(packed, 7), codes)
    with pytest.raises(InputError):
        pack_nibbles(np.array([16]))


@pytest.mark.parametrize("shape", SHAPES)
def test_dense_float_round_trip(shape: tuple[int, int]) -> None:
    w = _weights(shape)
    pw = pack_weight(w)
    assert np.array_equal(pw.to_dense(), w)
    assert pw.nbytes == w.size * 4


@pytest.mark.parametrize("shape", SHAPES)
def test_csr_matches_scipy(shape: tuple[int, int]) -> None:
    w = _weights(shape)
    mask = np.random.default_rng(2).random(shape) < 0.3
    mask[0] = False  # a row with nothing kept
    pw = pack_weight(w, SparseFormat(SparsePattern.UNSTRUCTURED, mask.mean()), mask)
    ref = sps.csr_matrix(w * mask)
    assert pw.arrays["indptr"].dtype == np.int32 and pw.arrays["indices"].dtype == np.int32
    assert np.array_equal(pw.arrays["indptr"], ref.indptr)
    assert np.array_equal(pw.arrays["indices"], ref.indices)
    assert np.array_equal(pw.arrays["values"], ref.data)
    assert np.array_equal(pw.to_dense(), w * mask)
    assert pw.nbytes == 4 * (shape[0] + 1) + 8 * ref.nnz


@pytest.mark.parametrize("block", [(4, 1), (1, 4), (16, 1), (2, 2)])
def test_bsr_matches_scipy(block: tuple[int, int]) -> None:
    shape = (16, 32)
    w = _weights(shape)
    mask = _block_mask(shape, block, 3)
    pw = pack_weight(w, SparseFormat(SparsePattern.BLOCK, mask.mean(), block=block), mask)
    ref = sps.bsr_matrix(w * mask, blocksize=block)
    ref.sort_indices()
    assert np.array_equal(pw.arrays["indptr"], ref.indptr)
    assert np.array_equal(pw.arrays["indices"], ref.indices)
    assert np.array_equal(pw.arrays["values"], ref.data)
    assert np.array_equal(pw.to_dense(), w * mask)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("block", [(4, 1), (16, 16), (3, 5)])
def test_bsr_ragged_edges_round_trip(shape: tuple[int, int], block: tuple[int, int]) -> None:
    w = _weights(shape)
    mask = _block_mask(shape, block, 4)
    pw = pack_weight(w, SparseFormat(SparsePattern.BLOCK, 0.5, block=block), mask)
    bm, bk = block
    assert pw.arrays["values"].shape[1:] == block
    assert pw.arrays["indptr"].shape == (-(-shape[0] // bm) + 1,)
    assert np.array_equal(pw.to_dense(), w * mask)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8), (3, 16), (16, 16)])
def test_nm_layout_against_loop(shape: tuple[int, int], n: int, m: int) -> None:
    w = _weights(shape)
    mask = _nm_mask_loop(w, n, m)
    pw = pack_weight(w, SparseFormat(SparsePattern.NM, n / m, n=n, m=m), mask)
    groups = -(-shape[1] // m)
    values, indices = pw.arrays["values"], pw.arrays["indices"]
    assert values.shape == indices.shape == (shape[0], groups * n)
    assert indices.dtype == np.uint8
    for r in range(shape[0]):
        for g in range(groups):
            idx = indices[r, g * n : (g + 1) * n].astype(int)
            assert np.all(np.diff(idx) > 0)  # ascending inside the group
            cols = g * m + idx
            real = cols < shape[1]
            assert np.array_equal(values[r, g * n : (g + 1) * n][real], w[r, cols[real]])
            assert np.all(values[r, g * n : (g + 1) * n][~real] == 0)
    assert np.array_equal(pw.to_dense(), w * mask)


def test_nm_rejects_a_mask_off_pattern() -> None:
    w = _weights((4, 8))
    mask = _nm_mask_loop(w, 2, 4)
    mask[0, 0] = ~mask[0, 0]
    with pytest.raises(InputError):
        pack_weight(w, SparseFormat(SparsePattern.NM, 0.5, n=2, m=4), mask)


def _nmblock_mask(w: np.ndarray, block_n: np.ndarray) -> np.ndarray:
    mask = np.zeros(w.shape, bool)
    for br in range(block_n.shape[0]):
        for bc in range(block_n.shape[1]):
            rows = slice(br * 16, br * 16 + 16)
            mask[rows, bc * 16 : bc * 16 + 16] = _nm_mask_loop(
                w[rows, bc * 16 : bc * 16 + 16], int(block_n[br, bc]), 16
            )
    return mask


@pytest.mark.parametrize("shape", [(16, 32), (33, 70), (5, 13)])
def test_nmblock_stream_order(shape: tuple[int, int]) -> None:
    w = _weights(shape)
    br, bc = -(-shape[0] // 16), -(-shape[1] // 16)
    block_n = np.random.default_rng(5).choice([2, 4, 8, 16], size=(br, bc)).astype(np.uint8)
    mask = _nmblock_mask(w, block_n)
    fmt = SparseFormat(SparsePattern.NM_BLOCK, 0.5, m=16, block=(16, 16))
    pw = pack_weight(w, fmt, mask, block_n)
    padded = np.zeros((br * 16, bc * 16), np.float32)
    padded[: shape[0], : shape[1]] = w * mask
    stream, offsets = [], []
    for i in range(br):
        for j in range(bc):
            for r in range(16):
                row = padded[i * 16 + r, j * 16 : j * 16 + 16]
                keep = np.sort(np.argsort(-np.abs(row), kind="stable")[: block_n[i, j]])
                stream.extend(row[keep])
                offsets.extend(keep)
    assert np.array_equal(pw.arrays["values"], np.array(stream, np.float32))
    assert np.array_equal(unpack_nibbles(pw.arrays["indices"], len(offsets)), offsets)
    assert np.array_equal(pw.to_dense(), w * mask)
    assert pw.nbytes == block_n.size + (len(offsets) + 1) // 2 + 4 * len(offsets)


def _int4_codes(shape: tuple[int, int], group: int, seed: int) -> QuantCodes:
    rng = np.random.default_rng(seed)
    groups = (shape[0], shape[1] // group)
    side = {
        "scales": rng.uniform(0.01, 0.1, groups).astype(np.float32),
        "zeros": rng.integers(0, 16, groups).astype(np.uint8),
    }
    codes = rng.integers(0, 16, shape).astype(np.uint8)
    params = QuantParams(QuantScheme.INT, 4, "group", group, symmetric=False)
    return QuantCodes(params, DType.U4, codes, side)


def _int4_reference(q: QuantCodes, group: int) -> np.ndarray:
    s = np.repeat(q.side["scales"], group, axis=1)
    z = np.repeat(q.side["zeros"], group, axis=1).astype(np.float32)
    return (q.codes.astype(np.float32) - z) * s


@pytest.mark.parametrize(("shape", "group"), [((8, 256), 128), ((3, 12), 4), ((4, 9), 3)])
def test_int4_group_dense(shape: tuple[int, int], group: int) -> None:
    q = _int4_codes(shape, group, 6)
    pw = pack_weight(q)
    assert pw.arrays["packed"].shape == (shape[0], -(-shape[1] // 2))
    assert np.array_equal(pw.arrays["packed"][:, 0] & 15, q.codes[:, 0])
    assert np.array_equal(pw.to_dense(), _int4_reference(q, group))
    groups = shape[0] * shape[1] // group
    assert pw.nbytes == shape[0] * -(-shape[1] // 2) + 5 * groups


def test_int4_group_under_nm_sparsity() -> None:
    shape, group = (8, 64), 32
    q = _int4_codes(shape, group, 7)
    mask = _nm_mask_loop(np.random.default_rng(8).normal(size=shape), 2, 4)
    pw = pack_weight(q, SparseFormat(SparsePattern.NM, 0.5, n=2, m=4), mask)
    assert pw.arrays["packed"].shape == (8, 16) and pw.arrays["indices"].shape == (8, 32)
    assert np.array_equal(pw.to_dense(), _int4_reference(q, group) * mask)


def test_int8_per_channel_dense_and_bsr() -> None:
    rng = np.random.default_rng(9)
    codes = rng.integers(-127, 128, (16, 32)).astype(np.int8)
    scale = rng.uniform(0.01, 0.1, 16).astype(np.float32)
    q = QuantCodes(QuantParams(QuantScheme.INT, 8), DType.I8, codes, {"scale": scale})
    ref = codes.astype(np.float32) * scale[:, None]
    assert np.array_equal(pack_weight(q).to_dense(), ref)
    mask = _block_mask((16, 32), (4, 1), 10)
    pw = pack_weight(q, SparseFormat(SparsePattern.BLOCK, 0.5, block=(4, 1)), mask)
    assert pw.arrays["values"].dtype == np.int8 and pw.arrays["values"].shape[1:] == (4, 1)
    assert np.array_equal(pw.to_dense(), ref * mask)


def _e2m1_reference(code: int) -> float:
    sign = -1.0 if code & 8 else 1.0
    exponent, mantissa = (code >> 1) & 3, code & 1
    if exponent == 0:
        return sign * 0.5 * mantissa
    return sign * 2.0 ** (exponent - 1) * (1 + mantissa / 2)


def test_fp4_decoder_matches_e2m1_bit_formula() -> None:
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 16, (6, 10)).astype(np.uint8)
    bias = rng.uniform(-2, 6, 6).astype(np.float32)
    q = QuantCodes(QuantParams(QuantScheme.FP4, 4), DType.FP4, codes, {"exponent_bias": bias})
    ref = np.vectorize(_e2m1_reference)(codes) * 2.0 ** (1.0 - bias[:, None].astype(np.float64))
    np.testing.assert_allclose(pack_weight(q).to_dense(), ref, rtol=1e-6)


def test_olive_decoder_restores_outlier_victim_pairs() -> None:
    # pairs: (normal 3, normal -7), (outlier +48 low, victim), (victim, outlier -384 high)
    codes = np.array([[3, 16 - 7, 1, 8, 8, 8 | 7]], np.uint8)
    scale = np.array([0.5], np.float32)
    q = QuantCodes(QuantParams(QuantScheme.OLIVE, 4), DType.I4, codes, {"scale": scale})
    expected = np.array([[12, -28, 48, 0, 0, -384]], np.float32) * 0.5
    assert np.array_equal(pack_weight(q).to_dense(), expected)


def test_llm_int8_decoder_uses_fp16_outlier_columns() -> None:
    rng = np.random.default_rng(12)
    codes = rng.integers(-127, 128, (4, 6)).astype(np.int8)
    side = {
        "scb": rng.uniform(1, 2, 4).astype(np.float32),
        "outlier_cols": np.array([1, 4], np.int32),
        "outlier_values": rng.normal(size=(4, 2)).astype(np.float16),
    }
    q = QuantCodes(QuantParams(QuantScheme.LLM_INT8, 8), DType.I8, codes, side)
    ref = codes.astype(np.float32) * side["scb"][:, None] / 127
    ref[:, [1, 4]] = side["outlier_values"].astype(np.float32)
    np.testing.assert_allclose(pack_weight(q).to_dense(), ref, rtol=1e-6)


def test_bad_storage_requests_raise_input_error() -> None:
    with pytest.raises(InputError):
        pack_weight(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(InputError):
        pack_weight(
            np.ones((4, 4), np.float32),
            SparseFormat(SparsePattern.NM, 0.5, n=2, m=4),
            np.ones((4, 3), bool),
        )
    codes = QuantCodes(QuantParams(QuantScheme.INT, 3), DType.I8, np.zeros((2, 2), np.int8), {})
    with pytest.raises(InputError):
        pack_weight(codes)
    fp4 = TensorType(
        (2, 2),
        DType.FP4,
        SparseFormat(SparsePattern.NM, 0.5, n=2, m=4),
        QuantParams(QuantScheme.OLIVE, 4),
    )
    with pytest.raises(InputError):
        PackedWeight(fp4, {}).to_dense()


def _payloads(shape: tuple[int, int]) -> dict[str, tuple[QuantCodes | np.ndarray, np.ndarray]]:
    """Return payloads (float, int8, int4 g=16, fp4) with their dense reference values."""
    rng = np.random.default_rng(13)
    w = _weights(shape, 14)
    int8 = rng.integers(-127, 128, shape).astype(np.int8)
    scale = rng.uniform(0.01, 0.1, shape[0]).astype(np.float32)
    q8 = QuantCodes(QuantParams(QuantScheme.INT, 8), DType.I8, int8, {"scale": scale})
    q4 = _int4_codes(shape, 16, 15)
    fp4 = rng.integers(0, 16, shape).astype(np.uint8)
    bias = rng.uniform(0, 5, shape[0]).astype(np.float32)
    qf = QuantCodes(QuantParams(QuantScheme.FP4, 4), DType.FP4, fp4, {"exponent_bias": bias})
    fp4_ref = np.vectorize(_e2m1_reference)(fp4) * 2.0 ** (1.0 - bias[:, None].astype(np.float64))
    return {
        "float": (w, w),
        "int8": (q8, int8.astype(np.float32) * scale[:, None]),
        "int4": (q4, _int4_reference(q4, 16)),
        "fp4": (qf, fp4_ref.astype(np.float32)),
    }


@pytest.mark.parametrize("payload", ["float", "int8", "int4", "fp4"])
@pytest.mark.parametrize("layout", ["csr", "bsr4x1", "nm2:4", "nm8:16", "nmblock"])
def test_every_layout_stores_every_payload(layout: str, payload: str) -> None:
    shape = (40, 80)
    w = _weights(shape, 16)
    mask, block_n = np.random.default_rng(17).random(shape) < 0.3, None
    sparse = SparseFormat(SparsePattern.UNSTRUCTURED, float(mask.mean()))
    if layout == "bsr4x1":
        mask = _block_mask(shape, (4, 1), 18)
        sparse = SparseFormat(SparsePattern.BLOCK, 0.5, block=(4, 1))
    elif layout.startswith("nm") and layout != "nmblock":
        n, m = (int(v) for v in layout[2:].split(":"))
        mask, sparse = _nm_mask_loop(w, n, m), SparseFormat(SparsePattern.NM, n / m, n=n, m=m)
    elif layout == "nmblock":
        block_n = np.random.default_rng(19).choice([2, 4, 8, 16], size=(3, 5)).astype(np.uint8)
        mask = _nmblock_mask(w, block_n)
        sparse = SparseFormat(SparsePattern.NM_BLOCK, 0.5, m=16, block=(16, 16))
    stored, dense = _payloads(shape)[payload]
    pw = pack_weight(stored, sparse, mask, block_n)
    np.testing.assert_allclose(pw.to_dense(), dense * mask, rtol=1e-6, atol=0)
    stored_entries = pw.arrays["values" if "values" in pw.arrays else "packed"]
    bits = {"float": 32, "int8": 8, "int4": 4, "fp4": 4}[payload]
    assert stored_entries.nbytes * 8 // bits <= mask.size  # the payload is compressed
