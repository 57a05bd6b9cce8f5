"""Sparsity selection against brute-force references, on random data and edge cases."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseflow.ir.errors import InputError
from sparseflow.passes.sparsity import (
    SparseSelection,
    flightllm_block_n,
    select_block,
    select_flightllm,
    select_global_unstructured,
    select_nm,
    select_unstructured,
)

SHAPES = [(8, 16), (5, 13), (33, 70), (64, 128)]


def _weights(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    w = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    w[1 % shape[0]] = 0.0  # a row of zeros
    return w


def _round_trips(sel: SparseSelection, w: np.ndarray) -> None:
    assert np.array_equal(sel.pack(w).to_dense(), sel.apply(w))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", [0.0, 0.1, 0.37, 0.5, 1.0])
def test_unstructured_keeps_the_largest(shape: tuple[int, int], density: float) -> None:
    w = _weights(shape)
    sel = select_unstructured(w, density)
    assert sel.mask.sum() == int(np.floor(density * w.size + 0.5))
    if 0 < sel.mask.sum() < w.size:
        assert np.abs(w[sel.mask]).min() >= np.abs(w[~sel.mask]).max()
    assert sel.format.density == sel.mask.mean()
    _round_trips(sel, w)


def test_global_unstructured_shares_one_threshold() -> None:
    a, b = _weights((16, 32), 1), 10 * _weights((8, 64), 2)
    sels = select_global_unstructured([a, b], 0.3)
    kept = np.concatenate([np.abs(a[sels[0].mask]), np.abs(b[sels[1].mask])])
    dropped = np.concatenate([np.abs(a[~sels[0].mask]), np.abs(b[~sels[1].mask])])
    assert kept.size == int(np.floor(0.3 * (a.size + b.size) + 0.5))
    assert kept.min() >= dropped.max()
    assert sels[1].format.density > sels[0].format.density  # the larger matrix keeps more


def _nm_reference(w: np.ndarray, n: int, m: int) -> np.ndarray:
    mask = np.zeros(w.shape, bool)
    for r in range(w.shape[0]):
        for g in range(0, w.shape[1], m):
            order = np.argsort(-np.abs(w[r, g : g + m]), kind="stable")
            mask[r, g + order[:n]] = True
    return mask


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8), (8, 16), (5, 16), (16, 16)])
def test_nm_matches_group_reference(shape: tuple[int, int], n: int, m: int) -> None:
    w = _weights(shape)
    sel = select_nm(w, n, m)
    assert np.array_equal(sel.mask, _nm_reference(w, n, m))
    full = shape[1] // m * m
    per_group = sel.mask[:, :full].reshape(shape[0], -1, m).sum(-1)
    assert np.all(per_group == n)
    assert sel.format.density == n / m
    _round_trips(sel, w)


def test_two_four_is_exactly_half_per_group() -> None:
    w = _weights((32, 64), 3)
    mask = select_nm(w, 2, 4).mask
    assert np.all(mask.reshape(32, 16, 4).sum(-1) == 2)


@pytest.mark.parametrize(("n", "m"), [(5, 4), (0, 4), (2, 5), (2, 32)])
def test_nm_rejects_bad_patterns(n: int, m: int) -> None:
    with pytest.raises(InputError, match="N:M"):
        select_nm(_weights((4, 16)), n, m)


def _block_norms(w: np.ndarray, bm: int, bk: int) -> np.ndarray:
    br, bc = -(-w.shape[0] // bm), -(-w.shape[1] // bk)
    norms = np.zeros((br, bc))
    for i in range(br):
        for j in range(bc):
            norms[i, j] = np.linalg.norm(w[i * bm : (i + 1) * bm, j * bk : (j + 1) * bk])
    return norms


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("block", [(4, 1), (1, 4), (16, 1), (16, 16), (3, 5)])
def test_block_keeps_largest_norm_blocks(shape: tuple[int, int], block: tuple[int, int]) -> None:
    w = _weights(shape)
    sel = select_block(w, block, 0.4)
    norms = _block_norms(w, *block)
    kept = _block_norms(sel.mask.astype(np.float32), *block) > 0
    assert kept.sum() == int(np.floor(0.4 * norms.size + 0.5))
    if 0 < kept.sum() < kept.size:
        assert norms[kept].min() >= norms[~kept].max()
    assert sel.format.block == block
    for i, j in zip(*np.nonzero(kept), strict=True):  # kept blocks are whole
        bm, bk = block
        assert sel.mask[i * bm : (i + 1) * bm, j * bk : (j + 1) * bk].all()
    _round_trips(sel, w)


@pytest.mark.parametrize("density", [-0.1, 1.5])
def test_density_outside_unit_interval_raises(density: float) -> None:
    w = _weights((8, 16))
    for select in (
        lambda: select_unstructured(w, density),
        lambda: select_block(w, (4, 1), density),
    ):
        with pytest.raises(InputError, match="density"):
            select()
    with pytest.raises(InputError, match="density"):
        select_global_unstructured([w], density)
    with pytest.raises(InputError, match="density"):
        select_flightllm(w, density)


def test_flightllm_rejects_density_below_two_of_sixteen() -> None:
    with pytest.raises(InputError, match="density"):
        select_flightllm(_weights((16, 16)), 0.1)


@pytest.mark.parametrize("shape", [(64, 128), (33, 70), (16, 16)])
@pytest.mark.parametrize("density", [0.125, 0.3, 0.5, 0.8, 1.0])
def test_flightllm_meets_density_and_keeps_row_maxima(
    shape: tuple[int, int], density: float
) -> None:
    w = _weights(shape, 4)
    w[:16, :16] = 0.0  # an all-zero block
    sel = select_flightllm(w, density)
    padded = sel.block_n.size * 256
    kept = int(sel.block_n.astype(int).sum()) * 16
    assert kept <= density * padded + 1e-9 and kept >= density * padded - 128
    assert np.isin(sel.block_n, [2, 4, 8, 16]).all()
    assert sel.format.density == kept / padded
    for i, j in np.ndindex(*sel.block_n.shape):
        rows, cols = slice(16 * i, 16 * i + 16), slice(16 * j, 16 * j + 16)
        block, keep = np.abs(w[rows, cols]), sel.mask[rows, cols]
        for r in range(block.shape[0]):
            assert keep[r].sum() == min(sel.block_n[i, j], block.shape[1])
            if keep[r].any() and (~keep[r]).any():
                assert block[r][keep[r]].min() >= block[r][~keep[r]].max()
    _round_trips(sel, w)


def test_flightllm_gives_important_blocks_more_weights() -> None:
    w = _weights((64, 64), 5) * 0.01
    w[16:32, 32:48] *= 100.0
    block_n = flightllm_block_n(w, 0.25)
    assert block_n[1, 2] == 16 and block_n.min() == 2


def test_flightllm_greedy_beats_uniform_n() -> None:
    rng = np.random.default_rng(6)
    w = rng.normal(size=(64, 64)) * rng.uniform(0.1, 3, size=(4, 4)).repeat(16, 0).repeat(16, 1)
    greedy = select_flightllm(w, 0.5)
    uniform = select_nm(w, 8, 16)
    assert greedy.format.density == 0.5
    assert (greedy.apply(w) ** 2).sum() > (uniform.apply(w) ** 2).sum()


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 70),
    density=st.floats(0.125, 1.0),
    zero_fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_every_selection_round_trips_on_random_shapes(
    rows: int, cols: int, density: float, zero_fraction: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(rows, cols)).astype(np.float32)
    w[rng.random((rows, cols)) < zero_fraction] = 0.0  # up to all-zero blocks and rows
    for sel in (
        select_unstructured(w, density),
        select_nm(w, 2, 4),
        select_nm(w, 3, 16),
        select_block(w, (4, 1), density),
        select_block(w, (2, 3), density),
        select_flightllm(w, density),
    ):
        _round_trips(sel, w)
        assert not np.any(sel.apply(w)[~sel.mask])
