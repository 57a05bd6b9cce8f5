"""Dense GEMM Y = X @ W^T with shared-memory tiling (fp32 or fp16 inputs, fp32 accumulate).

Layout (project contract): X [T, K] activations, W [N, K] weights (out, in), Y [T, N] float32.
The kernel is the shared tiled shell of tiled.py: tile x tile output blocks, X and W tiles
staged in shared memory as float32, float32 accumulation, ragged edges loading zeros.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import float32

from sparseflow.backends.gpu.device import cuda
from sparseflow.backends.gpu.launch import (
    DeviceArray,
    Kernel,
    LaunchConfig,
    check_block_size,
    default_tile,
    tiled_2d,
)
from sparseflow.backends.gpu.tiled import tiled_dot
from sparseflow.backends.gpu.validate import FLOAT_DTYPES, check_array, check_dim


@functools.cache
def gemm_kernel(tile: int) -> Kernel:
    """Return the tiled dense GEMM kernel for square tiles of edge `tile`."""
    dot = tiled_dot(tile, float32)

    @cuda.jit
    def kernel(x, w, y):
        row, col, acc = dot(x, w, w.shape[0])
        if row < x.shape[0] and col < w.shape[0]:
            y[row, col] = acc

    return kernel


def launch_gemm(x: DeviceArray, w: DeviceArray, y: DeviceArray, tile: int) -> LaunchConfig:
    """Launch the dense GEMM on device arrays x [T, K], w [N, K] into y [T, N] float32."""
    config = tiled_2d(x.shape[0], w.shape[0], tile)
    gemm_kernel(tile)[config.grid, config.block](x, w, y)
    return config


def gemm(x: np.ndarray, w: np.ndarray, *, tile: int | None = None) -> np.ndarray:
    """Return Y = X @ W^T as float32 [T, N] for fp32/fp16 X [T, K] and W [N, K], on the GPU."""
    x = check_array("x", x, FLOAT_DTYPES, 2)
    w = check_array("w", w, FLOAT_DTYPES, 2)
    check_dim("w", 1, w.shape[1], x.shape[1], "in-features K must match x")
    tile = check_block_size("tile", default_tile() if tile is None else tile, upper=32)
    y = cuda.device_array((x.shape[0], w.shape[0]), dtype=np.float32)
    launch_gemm(cuda.to_device(x), cuda.to_device(w), y, tile)
    return y.copy_to_host()
