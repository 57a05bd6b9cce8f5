"""Rotary position embedding (RoPE), LLaMA rotate-half style.

For head dimension D (even) and half = D / 2, with inverse frequencies
inv_freq[i] = 1 / theta^(2i / D) computed in float32 as Hugging Face's LLaMA does, and
angle[t, i] = float32(position[t]) * inv_freq[i] (also float32):
    y[..., i]        = x[..., i] cos(angle) - x[..., i + half] sin(angle)
    y[..., i + half] = x[..., i + half] cos(angle) + x[..., i] sin(angle)
which is x * cos + rotate_half(x) * sin with rotate_half(x) = concat(-x2, x1).
One thread per (token, head, i < half) rotation pair.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import float32

from sparseflow.backends.gpu.device import cuda
from sparseflow.backends.gpu.launch import (
    DeviceArray,
    Kernel,
    LaunchConfig,
    check_block_size,
    flat_1d,
)
from sparseflow.backends.gpu.validate import FLOAT_DTYPES, check_array, check_positive, check_shape
from sparseflow.ir.errors import InputError

# RoFormer (Su et al. 2021) and LLaMA use base 10000 for the rotary frequencies.
ROPE_THETA = 10000.0
# 256 threads per block for an elementwise kernel: 8 warps, a common default occupancy choice.
ELEMENTWISE_THREADS = 256
INT_DTYPES = tuple(np.dtype(t) for t in (np.int32, np.int64, np.uint32, np.int16, np.uint16))


def inverse_frequencies(head_dim: int, theta: float = ROPE_THETA) -> np.ndarray:
    """Return inv_freq f32 [head_dim / 2] = 1 / theta^(2i / head_dim), as LLaMA computes it."""
    exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim
    return (1.0 / (np.float32(theta) ** exponents)).astype(np.float32)


@functools.cache
def rope_kernel() -> Kernel:
    """Return the RoPE kernel over x [T, H, D] with one thread per rotation pair."""

    @cuda.jit
    def kernel(x, positions, inv_freq, y):
        tokens, heads, dim = x.shape
        half = dim // 2
        item = cuda.grid(1)
        if item >= tokens * heads * half:
            return
        i = item % half
        h = (item // half) % heads
        t = item // (half * heads)
        angle = float32(positions[t]) * inv_freq[i]
        cos = math.cos(angle)
        sin = math.sin(angle)
        first = float32(x[t, h, i])
        second = float32(x[t, h, i + half])
        y[t, h, i] = first * cos - second * sin
        y[t, h, i + half] = second * cos + first * sin

    return kernel


def launch_rope(
    x: DeviceArray, positions: DeviceArray, inv_freq: DeviceArray, y: DeviceArray, threads: int
) -> LaunchConfig:
    """Launch RoPE on device arrays x [T, H, D], positions [T], inv_freq [D/2] into y."""
    tokens, heads, dim = x.shape
    config = flat_1d(tokens * heads * (dim // 2), threads)
    rope_kernel()[config.grid, config.block](x, positions, inv_freq, y)
    return config


def rope(
    x: np.ndarray,
    positions: np.ndarray,
    *,
    theta: float = ROPE_THETA,
    threads: int = ELEMENTWISE_THREADS,
) -> np.ndarray:
    """Return x rotated by RoPE as float32, for fp32/fp16 x [T, H, D] or [T, D] and int [T].

    positions[t] is the absolute position of token t; D must be even.
    """
    x = check_array("x", x, FLOAT_DTYPES, (2, 3))
    positions = check_array("positions", positions, INT_DTYPES, 1)
    check_shape("positions", positions.shape, (x.shape[0],), "one position per token of x")
    if int(positions.min()) < 0:
        raise InputError(f"positions: must be >= 0, got {int(positions.min())}")
    if x.shape[-1] % 2:
        raise InputError(f"x: head dimension {x.shape[-1]} must be even for RoPE")
    theta = check_positive("theta", theta)
    threads = check_block_size("threads", threads)
    x3 = x if x.ndim == 3 else x[:, None, :]
    inv_freq = inverse_frequencies(x.shape[-1], theta)
    y = cuda.device_array(x3.shape, dtype=np.float32)
    launch_rope(cuda.to_device(x3), cuda.to_device(positions), cuda.to_device(inv_freq), y, threads)
    return y.copy_to_host().reshape(x.shape)
