"""Provide block-wide shared-memory reductions for one-dimensional thread blocks.

Tree reductions over a shared buffer of blockDim.x float32 slots; the block size must be a
power of two. Warp shuffles would be faster on hardware but numba's CUDA simulator does not
implement them, and these kernels must run there. Every thread of the block must call a
reduction (each contains barriers); each returns the block-wide result to every thread.
"""

from __future__ import annotations

from sparseflow.backends.gpu.device import cuda


@cuda.jit(device=True)
def block_sum(buffer, thread, value):
    """Return the sum of `value` over the block, using `buffer` as scratch."""
    buffer[thread] = value
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if thread < stride:
            buffer[thread] += buffer[thread + stride]
        cuda.syncthreads()
        stride //= 2
    total = buffer[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def block_max(buffer, thread, value):
    """Return the maximum of `value` over the block, using `buffer` as scratch."""
    buffer[thread] = value
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if thread < stride and buffer[thread + stride] > buffer[thread]:
            buffer[thread] = buffer[thread + stride]
        cuda.syncthreads()
        stride //= 2
    total = buffer[0]
    cuda.syncthreads()
    return total
