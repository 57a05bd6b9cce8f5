"""fp32 BSR, CSR and N:M kernels against float64 numpy references on random data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from sparseflow.backends.cpu import bsr_fp32
from sparseflow.backends.cpu._common import transpose_padded, untranspose
from sparseflow.backends.cpu.bsr_fp32 import bsr_path, bsr_spmm
from sparseflow.backends.cpu.csr_nm_fp32 import csr_spmm, nm_spmm
from sparseflow.backends.cpu.formats import bsr_from_dense, csr_from_dense, nm_from_dense
from sparseflow.ir.errors import InputError


def _load_helpers():
    """Import the sibling helpers module (tests are not a package)."""
    path = Path(__file__).with_name("helpers.py")
    spec = importlib.util.spec_from_file_location("cpu_test_helpers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


H = _load_helpers()
# (N, K): aligned, ragged in both dimensions, and a single output row.
SHAPES = [(64, 48), (37, 53), (1, 19)]
TOKENS = [1, 2, 7, 33]
BLOCKS = [(4, 1), (1, 4), (16, 1), (1, 16), (2, 3)]


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("shape", SHAPES)
def test_bsr_spmm_matches_reference(block: tuple[int, int], shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(hash((block, shape)) % 2**32)
    w = H.block_pruned(rng, shape, block, density=0.4)
    sparse = bsr_from_dense(w, block)
    for t in TOKENS:
        x = rng.standard_normal((t, shape[1])).astype(np.float32)
        H.assert_close(bsr_spmm(x, sparse), H.reference(x, w))


def test_bsr_paths_cover_the_named_blocks() -> None:
    assert [bsr_path(b) for b in BLOCKS] == ["col", "row", "col", "row", "generic"]


def test_bsr_tail_of_fewer_than_four_blocks_and_long_rows() -> None:
    rng = np.random.default_rng(3)
    w = H.block_pruned(rng, (8, 29), (4, 1), density=1.0)
    w[4:, 6:] = 0  # second block row: 6 blocks = one unrolled group of 4 + a tail of 2
    x = rng.standard_normal((5, 29)).astype(np.float32)
    H.assert_close(bsr_spmm(x, bsr_from_dense(w, (4, 1))), H.reference(x, w))


@pytest.mark.parametrize("shape", [(37, 150), (1, 70), (130, 3), (16, 64)])
def test_transposes_match_numpy_across_ragged_tiles(shape: tuple[int, int]) -> None:
    x = np.random.default_rng(shape[1]).standard_normal(shape).astype(np.float32)
    xt = transpose_padded(x, shape[1] + 5)
    assert np.array_equal(xt[: shape[1]], x.T) and not xt[shape[1] :].any()
    assert np.array_equal(untranspose(xt, shape[1] - 1), x[:, : shape[1] - 1])


def test_decode_reads_a_strided_activation_row() -> None:
    """One token given as a non-contiguous view (every second column of a wider array)."""
    rng = np.random.default_rng(8)
    w = H.block_pruned(rng, (36, 21), (4, 1), density=0.5)
    x = rng.standard_normal((1, 42)).astype(np.float32)[:, ::2]
    ref = H.reference(x, w)
    H.assert_close(bsr_spmm(x, bsr_from_dense(w, (4, 1))), ref)
    H.assert_close(csr_spmm(x, csr_from_dense(w)), ref)
    H.assert_close(nm_spmm(x, nm_from_dense(w, 4, 4)), ref)


def test_bsr_all_zero_matrix_and_zero_tokens() -> None:
    sparse = bsr_from_dense(np.zeros((8, 12), np.float32), (4, 1))
    assert sparse.values.shape[0] == 0
    x = np.ones((3, 12), np.float32)
    assert np.array_equal(bsr_spmm(x, sparse), np.zeros((3, 8), np.float32))
    assert bsr_spmm(np.ones((0, 12), np.float32), sparse).shape == (0, 8)


@pytest.mark.parametrize("shape", SHAPES)
def test_csr_spmm_matches_reference(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    w = H.block_pruned(rng, shape, (1, 1), density=0.3)
    sparse = csr_from_dense(w)
    for t in TOKENS:
        x = rng.standard_normal((t, shape[1])).astype(np.float32)
        H.assert_close(csr_spmm(x, sparse), H.reference(x, w))


@pytest.mark.parametrize("n_m", [(2, 4), (1, 4), (4, 16), (3, 8)])
@pytest.mark.parametrize("shape", SHAPES)
def test_nm_spmm_matches_reference(n_m: tuple[int, int], shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(n_m[0] * 97 + n_m[1] + shape[1])
    w = H.nm_pruned(rng, shape, *n_m)
    sparse = nm_from_dense(w, *n_m)
    for t in TOKENS:
        x = rng.standard_normal((t, shape[1])).astype(np.float32)
        H.assert_close(nm_spmm(x, sparse), H.reference(x, w))


def test_nm_from_dense_rejects_too_many_nonzeros() -> None:
    with pytest.raises(InputError, match="n = 2"):
        nm_from_dense(np.ones((2, 8), np.float32), 2, 4)


def test_kernels_reject_bad_activations() -> None:
    sparse = bsr_from_dense(np.eye(8, dtype=np.float32), (4, 1))
    with pytest.raises(InputError, match="K = 7"):
        bsr_spmm(np.ones((2, 7), np.float32), sparse)
    with pytest.raises(InputError, match="dtype"):
        csr_spmm(np.ones((2, 8)), csr_from_dense(np.eye(8, dtype=np.float32)))


def test_second_call_does_not_recompile() -> None:
    rng = np.random.default_rng(5)
    w = H.block_pruned(rng, (32, 40), (4, 1), density=0.5)
    sparse, x = bsr_from_dense(w, (4, 1)), rng.standard_normal((9, 40)).astype(np.float32)
    bsr_spmm(x, sparse)
    before = len(bsr_fp32._bsr_col_tokens.signatures)
    bsr_spmm(x[:3], sparse)
    bsr_spmm(rng.standard_normal((17, 40)).astype(np.float32), sparse)
    assert before == 1
    assert len(bsr_fp32._bsr_col_tokens.signatures) == 1
