"""Check 2:4 metadata packing and the 2:4 SpMM against a numpy reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseflow.backends.gpu.sparse24 import (
    pack_24_metadata,
    prune_24,
    spmm_24,
    unpack_24_metadata,
)
from sparseflow.ir.errors import InputError

from .reference import dense_from_24, random_24_indices


def test_pack_puts_offset_j_in_bits_2j() -> None:
    indices = np.array([[0, 1, 2, 3, 1, 3] + [0, 2] * 5 + [1, 2]], dtype=np.uint8)
    meta = pack_24_metadata(indices)
    assert meta.shape == (1, 2)
    expected_word0 = sum(int(v) << (2 * j) for j, v in enumerate(indices[0, :16]))
    assert int(meta[0, 0]) == expected_word0
    assert int(meta[0, 1]) == 1 | (2 << 2)


@pytest.mark.parametrize(("rows", "groups"), [(1, 1), (5, 8), (7, 9), (3, 33)])
def test_pack_unpack_round_trip(rows: int, groups: int) -> None:
    indices = random_24_indices(np.random.default_rng(groups), rows, groups)
    meta = pack_24_metadata(indices)
    np.testing.assert_array_equal(unpack_24_metadata(meta, 2 * groups), indices)


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        (np.array([[1, 0]], np.uint8), "strictly ascending"),
        (np.array([[1, 1]], np.uint8), "strictly ascending"),
        (np.array([[0, 4]], np.uint8), r"lie in \[0, 3\]"),
        (np.array([[0, 1, 2]], np.uint8), "even count"),
        (np.array([[0, 1]], np.int32), "dtype uint8"),
    ],
)
def test_pack_rejects_bad_indices(indices: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        pack_24_metadata(indices)


def test_prune_keeps_two_largest_per_group() -> None:
    w = np.array([[0.1, -3.0, 2.0, 0.5, 1.0, 1.0, 1.0]], dtype=np.float32)
    values, indices = prune_24(w)
    np.testing.assert_array_equal(indices, [[1, 2, 0, 1]])
    np.testing.assert_array_equal(values, [[-3.0, 2.0, 1.0, 1.0]])


@pytest.mark.parametrize(
    ("t", "n", "k", "tile"),
    [(33, 17, 40, 8), (1, 5, 3, 8), (6, 1, 70, 4), (9, 11, 64, 8), (2, 3, 4, 2)],
)
def test_spmm_24_matches_numpy(t: int, n: int, k: int, tile: int) -> None:
    rng = np.random.default_rng(t + 7 * n + 31 * k)
    kept = -(-k // 4) * 2
    indices = random_24_indices(rng, n, kept // 2)
    values = rng.standard_normal((n, kept)).astype(np.float32)
    x = rng.standard_normal((t, k)).astype(np.float32)
    expected = x.astype(np.float64) @ dense_from_24(values, indices, k).T
    y = spmm_24(x, values, pack_24_metadata(indices), tile=tile)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_spmm_24_fp16_from_pruned_dense() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((10, 21)).astype(np.float16)
    x = rng.standard_normal((4, 21)).astype(np.float16)
    values, indices = prune_24(w)
    expected = x.astype(np.float64) @ dense_from_24(values, indices, 21).T
    y = spmm_24(x, values, pack_24_metadata(indices), tile=4)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)


def test_spmm_24_rejects_values_for_another_k() -> None:
    x = np.ones((2, 8), np.float32)
    values = np.ones((3, 6), np.float32)
    meta = np.zeros((3, 1), np.uint32)
    with pytest.raises(InputError, match="values: dim 1 is 6, expected 4"):
        spmm_24(x, values, meta)


def test_spmm_24_rejects_short_metadata() -> None:
    x = np.ones((2, 40), np.float32)
    values = np.ones((3, 20), np.float32)
    with pytest.raises(InputError, match=r"meta: shape \(3, 1\), expected \(3, 2\)"):
        spmm_24(x, values, np.zeros((3, 1), np.uint32))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip_property(rows: int, groups: int, seed: int) -> None:
    indices = random_24_indices(np.random.default_rng(seed), rows, groups)
    np.testing.assert_array_equal(
        unpack_24_metadata(pack_24_metadata(indices), 2 * groups), indices
    )
