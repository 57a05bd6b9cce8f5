"""2:4 sparse SpMM Y = X @ W^T from compressed values and packed 2-bit metadata.

Storage (project contract, see ir/formats.py): W [N, K] is 2:4 sparse along K, K padded with
zeros to K_pad, a multiple of 4. `values` [N, K_pad/2] holds the two kept weights of each group
of 4; `indices` u8 [N, K_pad/2] holds their offsets 0..3 in the group, ascending.

Metadata packing (this backend's format): the offset of compressed column j sits in bits
2 (j % 16) .. 2 (j % 16) + 1 of uint32 word j // 16 of its row, so `meta` is u32
[N, ceil(K_pad/2 / 16)] and one word covers 8 groups = 32 dense columns. (NVIDIA's sparse
tensor cores also use two 2-bit indices per group of 4, with an interleaved word order; this
plain order suits a CUDA-core kernel.)

Kernel: tile x tile output blocks placed as in the tiled GEMM shell (tiled.tile_position); per
metadata word the block stages 16 compressed values for each of its `tile` weight rows, their
word, and the 32 matching dense columns of X for each of its `tile` tokens, then each thread
gathers X through the offsets.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import float32, uint32

from sparseflow.backends.gpu.device import cuda
from sparseflow.backends.gpu.launch import (
    DeviceArray,
    Kernel,
    LaunchConfig,
    ceil_div,
    check_block_size,
    default_tile,
    tiled_2d,
)
from sparseflow.backends.gpu.tiled import tile_position
from sparseflow.backends.gpu.validate import (
    FLOAT_DTYPES,
    check_array,
    check_dim,
    check_int_range,
    check_shape,
)
from sparseflow.ir.errors import InputError

# 2 bits per offset in a 32-bit word.
OFFSETS_PER_WORD = 16
# Dense columns one metadata word covers: 16 offsets = 8 groups of 4.
COLUMNS_PER_WORD = 32


def pack_24_metadata(indices: np.ndarray) -> np.ndarray:
    """Pack 2:4 offsets u8 [N, K_pad/2] into 2-bit metadata u32 [N, ceil(K_pad/2 / 16)]."""
    indices = check_array("indices", indices, (np.dtype(np.uint8),), 2)
    rows, kept = indices.shape
    if kept % 2:
        raise InputError(f"indices: dim 1 is {kept}, expected an even count (2 per group of 4)")
    check_int_range("indices", indices, 0, 3)
    pairs = indices.reshape(rows, kept // 2, 2)
    if np.any(pairs[:, :, 0] >= pairs[:, :, 1]):
        raise InputError("indices: the two offsets of each group must be strictly ascending")
    words = ceil_div(kept, OFFSETS_PER_WORD)
    padded = np.zeros((rows, words * OFFSETS_PER_WORD), dtype=np.uint32)
    padded[:, :kept] = indices
    shifts = 2 * np.arange(OFFSETS_PER_WORD, dtype=np.uint32)
    shifted = padded.reshape(rows, words, OFFSETS_PER_WORD) << shifts
    return np.bitwise_or.reduce(shifted, axis=2).astype(np.uint32)


def unpack_24_metadata(meta: np.ndarray, kept: int) -> np.ndarray:
    """Return the u8 [N, kept] offsets stored in 2-bit metadata u32 [N, ceil(kept / 16)]."""
    meta = check_array("meta", meta, (np.dtype(np.uint32),), 2)
    check_dim("meta", 1, meta.shape[1], ceil_div(kept, OFFSETS_PER_WORD), "16 offsets per word")
    shifts = 2 * np.arange(OFFSETS_PER_WORD, dtype=np.uint32)
    offsets = (meta[:, :, None] >> shifts) & np.uint32(3)
    return offsets.reshape(meta.shape[0], -1)[:, :kept].astype(np.uint8)


def prune_24(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (values, indices) keeping the 2 largest-magnitude weights of each group of 4.

    Pads K with zeros to a multiple of 4; ties keep the lower offset. For benchmarks and
    tests: the compression passes own pruning in the pipeline.
    """
    w = check_array("w", w, FLOAT_DTYPES, 2)
    rows, depth = w.shape
    padded = np.zeros((rows, ceil_div(depth, 4) * 4), dtype=w.dtype)
    padded[:, :depth] = w
    groups = padded.reshape(rows, -1, 4)
    order = np.argsort(-np.abs(groups), axis=2, kind="stable")[:, :, :2]
    indices = np.sort(order, axis=2)
    values = np.take_along_axis(groups, indices, axis=2)
    return values.reshape(rows, -1), indices.reshape(rows, -1).astype(np.uint8)


@functools.cache
def spmm_24_kernel(tile: int) -> Kernel:
    """Return the 2:4 SpMM kernel for square output tiles of edge `tile`."""
    values_pad = OFFSETS_PER_WORD + 1  # spare column: transposed reads avoid one shared bank
    x_pad = COLUMNS_PER_WORD + 1

    @cuda.jit
    def kernel(x, values, meta, y):
        x_tile = cuda.shared.array((tile, x_pad), float32)
        v_tile = cuda.shared.array((tile, values_pad), float32)
        m_tile = cuda.shared.array(tile, uint32)
        tx, ty, row, col, w_row = tile_position(tile)
        rows, depth = x.shape
        cols, kept = values.shape
        acc = float32(0.0)
        for word in range(meta.shape[1]):
            for c in range(tx, COLUMNS_PER_WORD, tile):
                k = word * COLUMNS_PER_WORD + c
                x_tile[ty, c] = float32(x[row, k]) if row < rows and k < depth else float32(0)
            for c in range(tx, OFFSETS_PER_WORD, tile):
                j = word * OFFSETS_PER_WORD + c
                inside = w_row < cols and j < kept
                v_tile[ty, c] = float32(values[w_row, j]) if inside else float32(0)
            if tx == 0:
                m_tile[ty] = meta[w_row, word] if w_row < cols else uint32(0)
            cuda.syncthreads()
            bits = m_tile[tx]
            for j in range(OFFSETS_PER_WORD):
                offset = (bits >> uint32(2 * j)) & uint32(3)
                acc += v_tile[tx, j] * x_tile[ty, 4 * (j // 2) + offset]
            cuda.syncthreads()
        if row < rows and col < cols:
            y[row, col] = acc

    return kernel


def launch_spmm_24(
    x: DeviceArray, values: DeviceArray, meta: DeviceArray, y: DeviceArray, tile: int
) -> LaunchConfig:
    """Launch the 2:4 SpMM on device arrays x [T, K], values, meta into y [T, N] float32."""
    config = tiled_2d(x.shape[0], values.shape[0], tile)
    spmm_24_kernel(tile)[config.grid, config.block](x, values, meta, y)
    return config


def spmm_24(
    x: np.ndarray, values: np.ndarray, meta: np.ndarray, *, tile: int | None = None
) -> np.ndarray:
    """Return Y = X @ W^T float32 [T, N] for X [T, K] and 2:4 W as values + packed metadata."""
    x = check_array("x", x, FLOAT_DTYPES, 2)
    values = check_array("values", values, FLOAT_DTYPES, 2)
    meta = check_array("meta", meta, (np.dtype(np.uint32),), 2)
    kept = ceil_div(x.shape[1], 4) * 2
    check_dim("values", 1, values.shape[1], kept, "K_pad / 2 for x's K")
    words = ceil_div(kept, OFFSETS_PER_WORD)
    check_shape("meta", meta.shape, (values.shape[0], words), "16 offsets per uint32 word")
    tile = check_block_size("tile", default_tile() if tile is None else tile, upper=32)
    y = cuda.device_array((x.shape[0], values.shape[0]), dtype=np.float32)
    launch_spmm_24(cuda.to_device(x), cuda.to_device(values), cuda.to_device(meta), y, tile)
    return y.copy_to_host()
