"""INT4 group-wise weight-only GEMV and GEMM (float activations, float32 accumulate).

Storage (project contract, see ir/formats.py): `packed` u8 [N, K/2] with even k in the low
nibble and odd k in the high nibble; `scales` f32 [N, K/g]; `zeros` u8 [N, K/g] in 0..15;
w[n, k] = float32(q - z) * s for the group k // g.

- GEMV (decode, one token): one block per output row; its threads stride over the row's
  bytes, dequantise two weights per byte, and combine partial sums with a shared-memory tree.
- GEMM (prefill): the shared tiled shell of tiled.py, dequantising each W element on its way
  to the shared-memory tile.

Both kernels read weights through `dequant`, with the weight passed as one tuple
(packed, scales, zeros, group).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

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
from sparseflow.backends.gpu.tiled import tiled_dot
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
# A checked host-side int4 weight: (packed, scales, zeros, group size).
Int4Weight = tuple[np.ndarray, np.ndarray, np.ndarray, int]


@cuda.jit(device=True)
def dequant(weight, n, k):
    """Return the float32 weight w[n, k] from weight = (packed, scales, zeros, group)."""
    packed, scales, zeros, group = weight
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
        weight = (packed, scales, zeros, group)
        acc = float32(0.0)
        for b in range(tid, packed.shape[1], threads):
            k = 2 * b
            low = dequant(weight, n, k)
            high = dequant(weight, n, k + 1)
            acc += low * float32(x[k]) + high * float32(x[k + 1])
        total = block_sum(partial, tid, acc)
        if tid == 0:
            y[n] = total

    return kernel


@functools.cache
def int4_gemm_kernel(tile: int) -> Kernel:
    """Return the tiled int4 weight-only GEMM kernel for square tiles of edge `tile`."""
    dot = tiled_dot(tile, float32, dequant)

    @cuda.jit
    def kernel(x, packed, scales, zeros, group, y):
        row, col, acc = dot(x, (packed, scales, zeros, group), packed.shape[0])
        if row < x.shape[0] and col < packed.shape[0]:
            y[row, col] = acc

    return kernel


def check_int4_weight(
    packed: np.ndarray, scales: np.ndarray, zeros: np.ndarray, depth: int
) -> Int4Weight:
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
    weight = check_int4_weight(packed, scales, zeros, x.shape[0])
    threads = check_block_size("threads", default_row_threads() if threads is None else threads)
    return _run_int4(launch_int4_gemv, x, weight, threads)


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
    weight = check_int4_weight(packed, scales, zeros, x.shape[1])
    tile = check_block_size("tile", default_tile() if tile is None else tile, upper=32)
    return _run_int4(launch_int4_gemm, x, weight, tile)


def _run_int4(
    launch: Callable[..., LaunchConfig], x: np.ndarray, weight: Int4Weight, block: int
) -> np.ndarray:
    """Run `launch` (GEMV or GEMM) on device copies of x and weight; return y float32.

    y has x's shape with K replaced by N: [N] for x [K], [T, N] for x [T, K].
    """
    packed, scales, zeros, group = weight
    y = cuda.device_array((*x.shape[:-1], packed.shape[0]), dtype=np.float32)
    device = [cuda.to_device(a) for a in (x, packed, scales, zeros)]
    launch(*device, group, y, block)
    return y.copy_to_host()
