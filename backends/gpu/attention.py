"""Decode attention over a long KV cache with split-K online softmax (flash-decoding), GQA.

Shapes: q [B, H, D] (one new token per sequence); k_cache, v_cache [B, H_kv, L, D] with H_kv
dividing H (query head h reads KV head h // (H / H_kv), as Hugging Face's repeat_kv); lengths
int [B], 1 <= lengths[b] <= L, the valid prefix of each cache. Output float32 [B, H, D]:
    out[b, h] = softmax(scale * K[b, kvh, :len] q[b, h]) V[b, kvh, :len], scale = 1/sqrt(D).

Phase 1 (grid B*H x S, one block per `chunk` keys): each thread scores one key; the block
reduces the chunk's max m_s and sum l_s of exp(score - m_s) in shared memory and writes the
unnormalised partial output o_s = sum exp(score - m_s) v. Phase 2 (one block per (b, h))
merges the S partials: M = max m_s, out = sum o_s e^(m_s - M) / sum l_s e^(m_s - M)
(Dao et al., "Flash-Decoding for long-context inference", 2023). Splits wholly past a
sequence's length write l_s = 0 and are skipped by the merge.
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
    ceil_div,
    check_block_size,
    default_row_threads,
    per_row,
)
from sparseflow.backends.gpu.reduce import block_max, block_sum
from sparseflow.backends.gpu.rotary import INT_DTYPES
from sparseflow.backends.gpu.validate import FLOAT_DTYPES, check_array, check_int_range, check_shape
from sparseflow.ir.errors import InputError


@functools.cache
def split_kernel(chunk: int) -> Kernel:
    """Return phase 1: per (b, h, split) partial max, exp-sum and output over `chunk` keys."""

    @cuda.jit
    def kernel(q, k, v, lengths, scale, part_max, part_sum, part_out):
        scratch = cuda.shared.array(chunk, float32)
        weights = cuda.shared.array(chunk, float32)
        heads, dim = q.shape[1], q.shape[2]
        b = cuda.blockIdx.x // heads
        h = cuda.blockIdx.x % heads
        kv_head = h // (heads // k.shape[1])
        split = cuda.blockIdx.y
        tid = cuda.threadIdx.x
        start = split * chunk
        length = lengths[b]
        score = float32(-math.inf)
        if start + tid < length:
            dot = float32(0.0)
            for d in range(dim):
                dot += float32(q[b, h, d]) * float32(k[b, kv_head, start + tid, d])
            score = dot * scale
        peak = block_max(scratch, tid, score)
        weight = float32(0.0)
        if start + tid < length:
            weight = math.exp(score - peak)
        weights[tid] = weight
        total = block_sum(scratch, tid, weight)  # its barriers also publish `weights`
        count = min(chunk, length - start)
        for d in range(tid, dim, chunk):
            acc = float32(0.0)
            for j in range(count):
                acc += weights[j] * float32(v[b, kv_head, start + j, d])
            part_out[b, h, split, d] = acc
        if tid == 0:
            part_max[b, h, split] = peak
            part_sum[b, h, split] = total

    return kernel


@functools.cache
def merge_kernel(threads: int) -> Kernel:
    """Return phase 2: merge the split partials of each (b, h) into the normalised output."""

    @cuda.jit
    def kernel(part_max, part_sum, part_out, out):
        heads, splits, dim = part_out.shape[1], part_out.shape[2], part_out.shape[3]
        b = cuda.blockIdx.x // heads
        h = cuda.blockIdx.x % heads
        peak = float32(-math.inf)
        for s in range(splits):
            peak = max(peak, part_max[b, h, s])
        denominator = float32(0.0)
        for s in range(splits):
            if part_sum[b, h, s] > 0:
                denominator += part_sum[b, h, s] * math.exp(part_max[b, h, s] - peak)
        for d in range(cuda.threadIdx.x, dim, threads):
            acc = float32(0.0)
            for s in range(splits):
                if part_sum[b, h, s] > 0:
                    acc += part_out[b, h, s, d] * math.exp(part_max[b, h, s] - peak)
            out[b, h, d] = acc / denominator

    return kernel


def launch_decode_attention(
    q: DeviceArray,
    k_cache: DeviceArray,
    v_cache: DeviceArray,
    lengths: DeviceArray,
    splits: int,
    scale: float,
    out: DeviceArray,
    chunk: int,
    threads: int,
) -> tuple[LaunchConfig, LaunchConfig]:
    """Launch both phases on device arrays; `splits` * `chunk` must cover max(lengths)."""
    batch, heads, dim = q.shape
    part_max = cuda.device_array((batch, heads, splits), dtype=np.float32)
    part_sum = cuda.device_array((batch, heads, splits), dtype=np.float32)
    part_out = cuda.device_array((batch, heads, splits, dim), dtype=np.float32)
    first = LaunchConfig(grid=(batch * heads, splits), block=(chunk,))
    split_kernel(chunk)[first.grid, first.block](
        q, k_cache, v_cache, lengths, np.float32(scale), part_max, part_sum, part_out
    )
    second = per_row(batch * heads, threads)
    merge_kernel(threads)[second.grid, second.block](part_max, part_sum, part_out, out)
    return first, second


def _check_inputs(
    q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, ...]:
    q = check_array("q", q, FLOAT_DTYPES, 3)
    k_cache = check_array("k_cache", k_cache, FLOAT_DTYPES, 4)
    v_cache = check_array("v_cache", v_cache, FLOAT_DTYPES, 4)
    lengths = check_array("lengths", lengths, INT_DTYPES, 1)
    batch, heads, dim = q.shape
    kv_heads, capacity = k_cache.shape[1], k_cache.shape[2]
    check_shape("k_cache", k_cache.shape, (batch, kv_heads, capacity, dim), "[B, H_kv, L, D]")
    if heads % kv_heads:
        raise InputError(f"k_cache: {kv_heads} KV heads do not divide {heads} query heads")
    check_shape("v_cache", v_cache.shape, k_cache.shape, "same layout as k_cache")
    check_shape("lengths", lengths.shape, (batch,), "one length per sequence")
    check_int_range("lengths", lengths, 1, capacity)
    return q, k_cache, v_cache, lengths.astype(np.int32)


def decode_attention(
    q: np.ndarray,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    lengths: np.ndarray,
    *,
    scale: float | None = None,
    chunk: int | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Return float32 [B, H, D] attention of one query token per sequence over its KV cache.

    `chunk` is the keys per split (threads per phase-1 block), `threads` the phase-2 block.
    """
    q, k_cache, v_cache, lengths = _check_inputs(q, k_cache, v_cache, lengths)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[2])
    if not math.isfinite(scale):
        raise InputError(f"scale={scale!r}: must be finite")
    chunk = check_block_size("chunk", default_row_threads() if chunk is None else chunk)
    threads = check_block_size("threads", default_row_threads() if threads is None else threads)
    splits = ceil_div(int(lengths.max()), chunk)
    out = cuda.device_array(q.shape, dtype=np.float32)
    device = [cuda.to_device(a) for a in (q, k_cache, v_cache, lengths)]
    launch_decode_attention(*device, splits, scale, out, chunk, threads)
    return out.copy_to_host()
