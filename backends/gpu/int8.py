"""INT8 GEMM with int32 accumulation and a per-token x per-channel scale epilogue (W8A8).

Contract (SmoothQuant W8A8, see the quantization notes): qX int8 [T, K] with per-token scales
sx f32 [T]; qW int8 [N, K] with per-channel scales sw f32 [N];
acc = int32(qX @ qW^T), Y = float32(acc) * sx[:, None] * sw[None, :], evaluated left to right
in float32, so results are bit-exact against numpy doing the same.

Tiling is the shared tiled shell of tiled.py: int8 tiles staged in shared memory as int32, exact
integer accumulation (|acc| <= K * 128 * 128 stays inside int32 for K < 131072).
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
    default_tile,
    tiled_2d,
)
from sparseflow.backends.gpu.tiled import tiled_dot
from sparseflow.backends.gpu.validate import FLOAT32, check_array, check_dim, check_shape
from sparseflow.ir.errors import InputError

INT8 = (np.dtype(np.int8),)
# Largest K whose worst-case sum K * (-128) * (-128) = K * 2^14 fits in int32 (2^31 - 1).
MAX_DEPTH = (2**31 - 1) // 2**14


@functools.cache
def int8_gemm_kernel(tile: int) -> Kernel:
    """Return the tiled int8 GEMM kernel (int32 accumulate, scale epilogue) for edge `tile`."""
    dot = tiled_dot(tile, int32)

    @cuda.jit
    def kernel(qx, sx, qw, sw, acc_out, y):
        row, col, acc = dot(qx, qw, qw.shape[0])
        if row < qx.shape[0] and col < qw.shape[0]:
            acc_out[row, col] = acc
            y[row, col] = float32(acc) * sx[row] * sw[col]

    return kernel


def launch_int8_gemm(
    qx: DeviceArray,
    sx: DeviceArray,
    qw: DeviceArray,
    sw: DeviceArray,
    acc_out: DeviceArray,
    y: DeviceArray,
    tile: int,
) -> LaunchConfig:
    """Launch the int8 GEMM on device arrays, writing int32 acc_out and float32 y [T, N]."""
    config = tiled_2d(qx.shape[0], qw.shape[0], tile)
    int8_gemm_kernel(tile)[config.grid, config.block](qx, sx, qw, sw, acc_out, y)
    return config


def int8_gemm(
    qx: np.ndarray,
    sx: np.ndarray,
    qw: np.ndarray,
    sw: np.ndarray,
    *,
    tile: int | None = None,
    return_int32: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Return Y = int32(qX @ qW^T) * sx[:, None] * sw[None, :] as float32 [T, N].

    With return_int32, return (Y, acc) where acc is the int32 [T, N] accumulator.
    """
    qx = check_array("qx", qx, INT8, 2)
    qw = check_array("qw", qw, INT8, 2)
    sx = check_array("sx", sx, FLOAT32, 1)
    sw = check_array("sw", sw, FLOAT32, 1)
    check_dim("qw", 1, qw.shape[1], qx.shape[1], "in-features K must match qx")
    if qx.shape[1] > MAX_DEPTH:
        raise InputError(f"qx: K = {qx.shape[1]} could overflow the int32 accumulator")
    check_shape("sx", sx.shape, (qx.shape[0],), "one scale per token of qx")
    check_shape("sw", sw.shape, (qw.shape[0],), "one scale per output channel of qw")
    tile = check_block_size("tile", default_tile() if tile is None else tile, upper=32)
    shape = (qx.shape[0], qw.shape[0])
    acc = cuda.device_array(shape, dtype=np.int32)
    y = cuda.device_array(shape, dtype=np.float32)
    device = [cuda.to_device(a) for a in (qx, sx, qw, sw)]
    launch_int8_gemm(*device, acc, y, tile)
    if return_int32:
        return y.copy_to_host(), acc.copy_to_host()
    return y.copy_to_host()
