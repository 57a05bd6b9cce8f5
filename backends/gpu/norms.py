"""Row-wise fused softmax, LayerNorm and RMSNorm over the last axis (one block per row).

Each block owns one row: its threads stride over the row's columns, combine partial results
with shared-memory tree reductions, then write the normalised row. Inputs are fp32 or fp16 of
any rank (the leading axes are flattened into rows); outputs are float32 of the same shape.

- softmax: y = exp(x - max x) / sum exp(x - max x) (max subtracted for numerical stability);
  -inf entries (masked logits) are allowed, a row of only -inf is not.
- layernorm: y = (x - mean) / sqrt(var + eps) * gamma + beta, var the biased (1/n) variance
  computed from centred values (two passes, no cancellation), as torch.nn.LayerNorm.
- rmsnorm: y = x / sqrt(mean(x^2) + eps) * gamma, as LLaMA's RMSNorm.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from numba import float32

from sparseflow.backends.gpu.device import cuda
from sparseflow.backends.gpu.launch import Kernel, check_block_size, default_row_threads, per_row
from sparseflow.backends.gpu.reduce import block_max, block_sum
from sparseflow.backends.gpu.validate import (
    FLOAT32,
    FLOAT_DTYPES,
    check_array,
    check_positive,
    check_shape,
)
from sparseflow.ir.errors import InputError

# torch.nn.LayerNorm's default eps.
LAYERNORM_EPS = 1e-5
# LLaMA's rms_norm_eps (Hugging Face LlamaConfig default).
RMSNORM_EPS = 1e-6


@functools.cache
def softmax_kernel(threads: int) -> Kernel:
    """Return the row-wise softmax kernel for blocks of `threads` threads."""

    @cuda.jit
    def kernel(x, y):
        scratch = cuda.shared.array(threads, float32)
        row = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        width = x.shape[1]
        peak = float32(-math.inf)
        for c in range(tid, width, threads):
            peak = max(peak, float32(x[row, c]))
        peak = block_max(scratch, tid, peak)
        total = float32(0.0)
        for c in range(tid, width, threads):
            total += math.exp(float32(x[row, c]) - peak)
        inverse = float32(1.0) / block_sum(scratch, tid, total)
        for c in range(tid, width, threads):
            y[row, c] = math.exp(float32(x[row, c]) - peak) * inverse

    return kernel


@functools.cache
def layernorm_kernel(threads: int) -> Kernel:
    """Return the row-wise LayerNorm kernel for blocks of `threads` threads."""

    @cuda.jit
    def kernel(x, gamma, beta, eps, y):
        scratch = cuda.shared.array(threads, float32)
        row = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        width = x.shape[1]
        total = float32(0.0)
        for c in range(tid, width, threads):
            total += float32(x[row, c])
        mean = block_sum(scratch, tid, total) / float32(width)
        spread = float32(0.0)
        for c in range(tid, width, threads):
            centred = float32(x[row, c]) - mean
            spread += centred * centred
        inverse = float32(1.0) / math.sqrt(block_sum(scratch, tid, spread) / float32(width) + eps)
        for c in range(tid, width, threads):
            y[row, c] = (float32(x[row, c]) - mean) * inverse * gamma[c] + beta[c]

    return kernel


@functools.cache
def rmsnorm_kernel(threads: int) -> Kernel:
    """Return the row-wise RMSNorm kernel for blocks of `threads` threads."""

    @cuda.jit
    def kernel(x, gamma, eps, y):
        scratch = cuda.shared.array(threads, float32)
        row = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        width = x.shape[1]
        squares = float32(0.0)
        for c in range(tid, width, threads):
            value = float32(x[row, c])
            squares += value * value
        inverse = float32(1.0) / math.sqrt(block_sum(scratch, tid, squares) / float32(width) + eps)
        for c in range(tid, width, threads):
            y[row, c] = float32(x[row, c]) * inverse * gamma[c]

    return kernel


def _rows(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[-1])


def run_rows(
    kernel_factory: Callable[[int], Kernel], x: np.ndarray, threads: int | None, *extra: object
) -> np.ndarray:
    """Run a one-block-per-row kernel over the rows of x; numpy `extra` arguments are uploaded,
    device arrays (weights kept on the GPU) and scalars are passed as they are."""
    threads = check_block_size("threads", default_row_threads() if threads is None else threads)
    rows = _rows(x)
    y = cuda.device_array(rows.shape, dtype=np.float32)
    config = per_row(rows.shape[0], threads)
    device_extra = [cuda.to_device(e) if isinstance(e, np.ndarray) else e for e in extra]
    kernel_factory(threads)[config.grid, config.block](cuda.to_device(rows), *device_extra, y)
    return y.copy_to_host().reshape(x.shape)


def _check_gain(name: str, value: np.ndarray, width: int) -> np.ndarray:
    value = check_array(name, value, FLOAT32, 1)
    check_shape(name, value.shape, (width,), "one entry per column of x")
    return value


def softmax(x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Return the numerically stable softmax of fp32/fp16 x over its last axis, as float32."""
    x = check_array("x", x, FLOAT_DTYPES, range(1, 9), allow_neg_inf=True)
    if np.isneginf(_rows(x)).all(axis=1).any():
        raise InputError("x: a row is entirely -inf, its softmax is undefined")
    return run_rows(softmax_kernel, x, threads)


def layernorm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    *,
    eps: float = LAYERNORM_EPS,
    threads: int | None = None,
) -> np.ndarray:
    """Return LayerNorm of fp32/fp16 x over its last axis with f32 gamma and beta, as float32."""
    x = check_array("x", x, FLOAT_DTYPES, range(1, 9))
    gamma = _check_gain("gamma", gamma, x.shape[-1])
    beta = _check_gain("beta", beta, x.shape[-1])
    eps32 = np.float32(check_positive("eps", eps))
    return run_rows(layernorm_kernel, x, threads, gamma, beta, eps32)


def rmsnorm(
    x: np.ndarray, gamma: np.ndarray, *, eps: float = RMSNORM_EPS, threads: int | None = None
) -> np.ndarray:
    """Return RMSNorm of fp32/fp16 x over its last axis with f32 gamma, as float32."""
    x = check_array("x", x, FLOAT_DTYPES, range(1, 9))
    gamma = _check_gain("gamma", gamma, x.shape[-1])
    eps32 = np.float32(check_positive("eps", eps))
    return run_rows(rmsnorm_kernel, x, threads, gamma, eps32)
