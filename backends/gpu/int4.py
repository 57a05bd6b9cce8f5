"""INT4 group-wise weight-only GEMV and GEMM (float activations, float32 accumulate).

Storage (project contract, see ir/formats.py): `packed` u8 [N, K/2] with even k in the low
nibble and odd k in the high nibble; `scales` f32 [N, K/g]; `zeros` u8 [N, K/g] in 0..15;
w[n, k] = float32(q - z) * s for the group k // g.

- GEMV (decode, one token): one block per output row; its threads stride over the row's
  bytes, dequantise two weights per byte, and combine partial sums with a shared-memory tree.
- GEMM (prefill): the dense tiled GEMM, dequantising each W tile on its way to shared memory.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import float32, int32

from sparseflow.backends.gpu.device import cuda
from sparseflow.backends.gpu.launch import (
    DeviceArray,
    Kernel,
    LaunchConfig,
    check_block_size,
    default_row_threads,
    default_tile,
    per_row,
    tiled_2d,
)
from sparseflow.backends.gpu.reduce import block_sum
from sparseflow.backends.gpu.validate import (
    FLOAT32,
    FLOAT_DTYPES,
    check_array,
    check_dim,
    check_int_range,
    check_shape,
)
from sparseflow.ir.errors import InputError

UINT8 = (np.dtype(np.uint8),)


@cuda.jit(device=True)
def dequant(packed, scales, zeros, group, n, k):
    """Return the float32 weight w[n, k] from group-wise int4 storage."""
    byte = int32(packed[n, k // 2])
    q = (byte >> 4) if k % 2 else (byte & 15)
    g = k // group
    return float32(q - int32(zeros[n, g])) * scales[n, g]


@functools.cache
def int4_gemv_kernel(threads: int) -> Kernel:
    """Return the int4 GEMV kernel for blocks of `threads` threads (a power of two)."""

    @cuda.jit
    def kernel(x, packed, scales, zeros, group, y):
        partial = cuda.shared.array(threads, float32)
        n = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        acc = float32(0.0)
        for b in range(tid, packed.shape[1], threads):
            k = 2 * b
            low = dequant(packed, scales, zeros, group, n, k)
            high = dequant(packed, scales, zeros, group, n, k + 1)
            acc += low * float32(x[k]) + high * float32(x[k + 1])
        total = block_sum(partial, tid, acc)
        if tid == 0:
            y[n] = total

    return kernel


@functools.cache
def int4_gemm_kernel(tile: int) -> Kernel:
    """Return the tiled int4 weight-only GEMM kernel for square tiles of edge `tile`."""
    padded = tile + 1

    @cuda.jit
    def kernel(x, packed, scales, zeros, group, y):
        x_tile = cuda.shared.array((tile, tile), float32)
        w_tile = cuda.shared.array((tile, padded), float32)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty
        col = cuda.blockIdx.x * tile + tx
        w_row = cuda.blockIdx.x * tile + ty
        rows, depth = x.shape
        cols = packed.shape[0]
        acc = float32(0.0)
        for k0 in range(0, depth, tile):
            k = k0 + tx
            x_tile[ty, tx] = float32(x[row, k]) if row < rows and k < depth else float32(0.0)
            if w_row < cols and k < depth:
                w_tile[ty, tx] = dequant(packed, scales, zeros, group, w_row, k)
            else:
                w_tile[ty, tx] = float32(0.0)
            cuda.syncthreads()
            for kk in range(tile):
                acc += x_tile[ty, kk] * w_tile[tx, kk]
            cuda.syncthreads()
        if row < rows and col < cols:
            y[row, col] = acc

    return kernel


def check_int4_weight(
    packed: np.ndarray, scales: np.ndarray, zeros: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Return (packed, scales, zeros, group size) after checking them against K = depth."""
    packed = check_array("packed", packed, UINT8, 2)
    scales = check_array("scales", scales, FLOAT32, 2)
    zeros = check_array("zeros", zeros, UINT8, 2)
    check_dim("packed", 1, 2 * packed.shape[1], depth, "K/2 bytes hold K nibbles; K from x")
    rows, groups = scales.shape
    check_dim("scales", 0, rows, packed.shape[0], "one row per output channel of packed")
    if depth % groups:
        raise InputError(f"scales: {groups} groups do not divide K = {depth}")
    check_shape("zeros", zeros.shape, scales.shape, "one zero point per scale")
    check_int_range("zeros", zeros, 0, 15)
    return packed, scales, zeros, depth // groups


def launch_int4_gemv(
    x: DeviceArray,
    packed: DeviceArray,
    scales: DeviceArray,
    zeros: DeviceArray,
    group: int,
    y: DeviceArray,
    threads: int,
) -> LaunchConfig:
    """Launch the int4 GEMV on device arrays x [K] into y [N] float32."""
    config = per_row(packed.shape[0], threads)
    int4_gemv_kernel(threads)[config.grid, config.block](x, packed, scales, zeros, group, y)
    return config


def launch_int4_gemm(
    x: DeviceArray,
    packed: DeviceArray,
    scales: DeviceArray,
    zeros: DeviceArray,
    group: int,
    y: DeviceArray,
    tile: int,
) -> LaunchConfig:
    """Launch the int4 GEMM on device arrays x [T, K] into y [T, N] float32."""
    config = tiled_2d(x.shape[0], packed.shape[0], tile)
    int4_gemm_kernel(tile)[config.grid, config.block](x, packed, scales, zeros, group, y)
    return config


def int4_gemv(
    x: np.ndarray,
    packed: np.ndarray,
    scales: np.ndarray,
    zeros: np.ndarray,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Return y = W x as float32 [N] for fp32/fp16 x [K] and group-wise int4 W [N, K]."""
    x = check_array("x", x, FLOAT_DTYPES, 1)
    packed, scales, zeros, group = check_int4_weight(packed, scales, zeros, x.shape[0])
    threads = check_block_size("threads", default_row_threads() if threads is None else threads)
    y = cuda.device_array(packed.shape[0], dtype=np.float32)
    device = [cuda.to_device(a) for a in (x, packed, scales, zeros)]
    launch_int4_gemv(*device, group, y, threads)
    return y.copy_to_host()


def int4_gemm(
    x: np.ndarray,
    packed: np.ndarray,
    scales: np.ndarray,
    zeros: np.ndarray,
    *,
    tile: int | None = None,
) -> np.ndarray:
    """Return Y = X @ W^T as float32 [T, N] for fp32/fp16 X [T, K] and group-wise int4 W."""
    x = check_array("x", x, FLOAT_DTYPES, 2)
    packed, scales, zeros, group = check_int4_weight(packed, scales, zeros, x.shape[1])
    tile = check_block_size("tile", default_tile() if tile is None else tile, upper=32)
    y = cuda.device_array((x.shape[0], packed.shape[0]), dtype=np.float32)
    device = [cuda.to_device(a) for a in (x, packed, scales, zeros)]
    launch_int4_gemm(*device, group, y, tile)
    return y.copy_to_host()
