"""Sparsity selection: which weights of W[N, K] (out, in) to keep, and their sparse storage.

Requires float weights [N, K] and a density (fraction kept) in [0, 1], an N:M pattern with
0 < N <= M and M in {4, 8, 16}, or a block shape. Ensures a `SparseSelection`: a boolean
keep-mask that follows the pattern exactly, the `SparseFormat` describing it, and `pack` to
store any payload (float values or quantization codes) in the ir.formats layout.

Selection rules (magnitude pruning; counts are density * total rounded half up):
unstructured keeps the largest |w| (per matrix, or over several matrices with one global
threshold); N:M keeps the N largest |w| of every M consecutive weights along K (a ragged last
group keeps min(N, its length)); block keeps the blocks of largest L2 norm; FlightLLM mixed N:16
is described at `flightllm_block_n`. Equal magnitudes keep the lower index (deterministic).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import (
    FLIGHTLLM_BLOCK,
    FLIGHTLLM_N_CHOICES,
    PackedWeight,
    QuantCodes,
    pack_weight,
)
from sparseflow.ir.types import SparseFormat, SparsePattern

NM_GROUP_SIZES = (4, 8, 16)  # M values the kernels and the FlightLLM index width support


@dataclass(frozen=True, eq=False)
class SparseSelection:
    """A keep-mask over W[N, K], its sparse format, and the per-block N of nmblock layouts."""

    mask: np.ndarray
    format: SparseFormat
    block_n: np.ndarray | None = None

    def apply(self, w: np.ndarray) -> np.ndarray:
        """Return W with the dropped weights set to zero (float32)."""
        return np.where(self.mask, np.asarray(w, np.float32), np.float32(0))

    def pack(
        self, payload: np.ndarray | QuantCodes, float_dtype: DType = DType.F32
    ) -> PackedWeight:
        """Store float weights (in `float_dtype`) or quantization codes in this selection's
        sparse layout."""
        return pack_weight(payload, self.format, self.mask, self.block_n, float_dtype)


def _matrix(w: np.ndarray, what: str) -> np.ndarray:
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2 or 0 in w.shape:
        raise InputError(f"{what}: weight must be a non-empty 2-D [N, K] matrix, got {w.shape}")
    return w


def _check_density(density: float, what: str) -> None:
    if not 0.0 <= density <= 1.0:
        raise InputError(f"{what}: density {density} is outside [0, 1]")


def _count(density: float, total: int) -> int:
    """Return density * total rounded half up: how many of `total` items to keep."""
    return int(np.floor(density * total + 0.5))


def _top_mask(scores: np.ndarray, keep: int) -> np.ndarray:
    """Return a flat mask of the `keep` highest scores (ties keep the lower index)."""
    mask = np.zeros(scores.size, bool)
    mask[np.argsort(-scores.ravel(), kind="stable")[:keep]] = True
    return mask


def select_unstructured(w: np.ndarray, density: float) -> SparseSelection:
    """Keep the density * N * K (rounded half up) largest-magnitude weights of one matrix."""
    w = _matrix(w, "unstructured sparsity")
    _check_density(density, "unstructured sparsity")
    mask = _top_mask(np.abs(w), _count(density, w.size)).reshape(w.shape)
    return _unstructured(mask)


def _unstructured(mask: np.ndarray) -> SparseSelection:
    density = float(mask.sum()) / mask.size
    return SparseSelection(mask, SparseFormat(SparsePattern.UNSTRUCTURED, density))


def select_global_unstructured(
    weights: Sequence[np.ndarray], density: float
) -> list[SparseSelection]:
    """Keep the largest-magnitude weights over all matrices together (one global threshold)."""
    _check_density(density, "global unstructured sparsity")
    mats = [_matrix(w, f"global unstructured sparsity, matrix {i}") for i, w in enumerate(weights)]
    flat = np.concatenate([np.abs(w).ravel() for w in mats])
    mask = _top_mask(flat, _count(density, flat.size))
    bounds = np.cumsum([0] + [w.size for w in mats])
    return [
        _unstructured(mask[a:b].reshape(w.shape))
        for a, b, w in zip(bounds, bounds[1:], mats, strict=False)
    ]


def _check_nm(n: int, m: int) -> None:
    if m not in NM_GROUP_SIZES:
        raise InputError(f"N:M sparsity {n}:{m}: M must be one of {NM_GROUP_SIZES}")
    if not 0 < n <= m:
        raise InputError(f"N:M sparsity {n}:{m}: need 0 < N <= M")


def select_nm(w: np.ndarray, n: int, m: int) -> SparseSelection:
    """Keep the N largest-magnitude weights of every M consecutive weights along K."""
    w = _matrix(w, f"N:M sparsity {n}:{m}")
    _check_nm(n, m)
    rows, k = w.shape
    k_pad = -(-k // m) * m
    scores = np.full((rows, k_pad), -1.0, np.float32)  # padding never outranks a real weight
    scores[:, :k] = np.abs(w)
    order = np.argsort(-scores.reshape(rows, -1, m), axis=-1, kind="stable")[..., :n]
    mask = np.zeros((rows, k_pad // m, m), bool)
    np.put_along_axis(mask, order, True, axis=-1)
    mask = mask.reshape(rows, k_pad)[:, :k]
    return SparseSelection(mask, SparseFormat(SparsePattern.NM, n / m, n=n, m=m))


def _block_view(a: np.ndarray, bm: int, bk: int, fill: float) -> np.ndarray:
    """Return `a` padded to whole blocks as [block row, block col, bm, bk]."""
    rows, cols = -(-a.shape[0] // bm) * bm, -(-a.shape[1] // bk) * bk
    padded = np.full((rows, cols), fill, dtype=a.dtype)
    padded[: a.shape[0], : a.shape[1]] = a
    return padded.reshape(rows // bm, bm, cols // bk, bk).transpose(0, 2, 1, 3)


def _unblock(blocks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Invert `_block_view` and crop the padding."""
    br, bc, bm, bk = blocks.shape
    return blocks.transpose(0, 2, 1, 3).reshape(br * bm, bc * bk)[: shape[0], : shape[1]]


def select_block(w: np.ndarray, block: tuple[int, int], density: float) -> SparseSelection:
    """Keep the (bm x bk) blocks of largest L2 norm, W zero-padded to whole blocks."""
    bm, bk = block
    what = f"block sparsity {bm}x{bk}"
    w = _matrix(w, what)
    _check_density(density, what)
    if bm < 1 or bk < 1:
        raise InputError(f"{what}: block sides must be positive")
    norms = np.sqrt((_block_view(w, bm, bk, 0.0).astype(np.float64) ** 2).sum(axis=(2, 3)))
    kept = _top_mask(norms, _count(density, norms.size)).reshape(norms.shape)
    mask = _unblock(np.broadcast_to(kept[:, :, None, None], kept.shape + (bm, bk)), w.shape)
    fmt = SparseFormat(SparsePattern.BLOCK, float(kept.sum()) / kept.size, block=(bm, bk))
    return SparseSelection(mask.copy(), fmt)


def flightllm_block_n(w: np.ndarray, density: float) -> np.ndarray:
    """Choose N in {2, 4, 8, 16} per 16x16 block so that the kept fraction meets `density`.

    Greedy by importance: every block starts at N = 2 (the floor, density 1/8); the upgrades
    N -> 2N (adding N weights to each of the block's 16 rows) are ranked by the squared
    magnitude they would recover per added weight and taken in that order while they fit in
    the budget floor(density * padded size). The kept fraction never exceeds `density` and
    falls short by less than one upgrade (at most 128 weights) unless every block is dense.
    """
    w = _matrix(w, "FlightLLM N:16 sparsity")
    floor = FLIGHTLLM_N_CHOICES[0] / FLIGHTLLM_BLOCK
    if not floor <= density <= 1.0:
        raise InputError(f"FlightLLM N:16 sparsity: density {density} is outside [{floor}, 1]")
    energy = _block_view(w.astype(np.float64) ** 2, FLIGHTLLM_BLOCK, FLIGHTLLM_BLOCK, 0.0)
    ranked = -np.sort(-energy, axis=-1)  # per row, largest first
    steps = FLIGHTLLM_N_CHOICES
    gains = np.stack([ranked[..., a:b].sum(axis=(-1, -2)) for a, b in pairwise(steps)])
    costs = np.array([FLIGHTLLM_BLOCK * (b - a) for a, b in pairwise(steps)])
    level = np.zeros(energy.shape[:2], np.int64)
    budget = int(np.floor(density * energy.size)) - steps[0] * FLIGHTLLM_BLOCK * level.size
    step_of, block_of = _upgrade_order(gains / costs[:, None, None])
    flat_level = level.ravel()
    for step, block in zip(step_of.tolist(), block_of.tolist(), strict=True):
        if budget < costs[0]:
            break
        if flat_level[block] == step and costs[step] <= budget:
            flat_level[block] += 1
            budget -= int(costs[step])
    return np.array(steps, np.uint8)[flat_level.reshape(level.shape)]


def _upgrade_order(ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (step, flat block) of all upgrades, best ratio first, earlier step on ties."""
    ratio = ratio.reshape(ratio.shape[0], -1)
    step_index = np.repeat(np.arange(ratio.shape[0]), ratio.shape[1])
    order = np.lexsort((step_index, -ratio.ravel()))
    return np.divmod(order, ratio.shape[1])


def flightllm_mask(w: np.ndarray, block_n: np.ndarray) -> np.ndarray:
    """Return the mask keeping, in each row of each 16x16 block, its N largest-magnitude weights."""
    w = _matrix(w, "FlightLLM N:16 sparsity")
    scores = _block_view(np.abs(w), FLIGHTLLM_BLOCK, FLIGHTLLM_BLOCK, -1.0)
    if block_n.shape != scores.shape[:2]:
        raise InputError(f"FlightLLM N:16: block_n shape {block_n.shape} != {scores.shape[:2]}")
    order = np.argsort(-scores, axis=-1, kind="stable")
    keep = np.arange(FLIGHTLLM_BLOCK) < block_n[:, :, None, None].astype(np.int64)
    mask = np.zeros(scores.shape, bool)
    np.put_along_axis(mask, order, np.broadcast_to(keep, order.shape), axis=-1)
    return _unblock(mask, w.shape).copy()


def select_flightllm(w: np.ndarray, density: float) -> SparseSelection:
    """Choose the per-block N (see `flightllm_block_n`) and keep each row's largest weights."""
    block_n = flightllm_block_n(w, density)
    achieved = float(block_n.astype(np.int64).sum()) / (block_n.size * FLIGHTLLM_BLOCK)
    fmt = SparseFormat(
        SparsePattern.NM_BLOCK, achieved, m=FLIGHTLLM_BLOCK, block=(FLIGHTLLM_BLOCK,) * 2
    )
    return SparseSelection(flightllm_mask(w, block_n), fmt, block_n)
