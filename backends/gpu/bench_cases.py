"""Build the GPU benchmark cases: device inputs, a launch closure, and FLOP and byte counts.

FLOPs count multiply and add as two; bytes are the minimum off-chip traffic (every input read
once, every output written once), the usual "effective bandwidth" convention, so a kernel that
re-reads its input shows below its true traffic. Elementwise FLOP counts are the arithmetic
operations each kernel performs per element, as written in its module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sparseflow.backends.gpu.attention import launch_decode_attention
from sparseflow.backends.gpu.dense_gemm import launch_gemm
from sparseflow.backends.gpu.device import cuda
from sparseflow.backends.gpu.int4 import launch_int4_gemm, launch_int4_gemv
from sparseflow.backends.gpu.int8 import launch_int8_gemm
from sparseflow.backends.gpu.launch import GPU_ROW_THREADS, GPU_TILE, ceil_div
from sparseflow.backends.gpu.norms import layernorm_kernel, rmsnorm_kernel, softmax_kernel
from sparseflow.backends.gpu.rotary import ELEMENTWISE_THREADS, inverse_frequencies, launch_rope
from sparseflow.backends.gpu.sparse24 import launch_spmm_24, pack_24_metadata, prune_24

# Operations per element in the row kernels (see norms.py): softmax max, subtract, exp, add,
# multiply; layernorm add, subtract, square-add (2), subtract, 2 multiplies, add; rmsnorm
# square-add (2) and 2 multiplies.
SOFTMAX_FLOP_PER_ELEMENT = 5
LAYERNORM_FLOP_PER_ELEMENT = 8
RMSNORM_FLOP_PER_ELEMENT = 4
# RoPE per rotation pair: 4 multiplies, 2 adds, 1 angle multiply (sin/cos not counted).
ROPE_FLOP_PER_PAIR = 7


@dataclass(frozen=True)
class BenchShape:
    """Hold the problem sizes of one benchmark run (defaults: LLaMA-2-7B layer sizes)."""

    tokens: int = 512
    hidden: int = 4096
    group: int = 128
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    kv_len: int = 4096


@dataclass(frozen=True)
class BenchCase:
    """Hold one kernel to time: its name, precision key, sizes, work and launch closure."""

    kernel: str
    precision: str
    shape: dict[str, int]
    flops: float
    bytes: float
    launch: Callable[[], object]
    dense_equivalent: tuple[int, int, int, str] | None  # (T, N, K, dtype) for a cuBLAS run


def _dev(array: np.ndarray) -> object:
    return cuda.to_device(np.ascontiguousarray(array))


def _gemm_cases(rng: np.random.Generator, s: BenchShape) -> list[BenchCase]:
    t, n, k = s.tokens, s.hidden, s.hidden
    cases = []
    for dtype, key in ((np.float32, "fp32"), (np.float16, "fp16")):
        x, w = (_dev(rng.standard_normal(shape).astype(dtype)) for shape in ((t, k), (n, k)))
        y = cuda.device_array((t, n), np.float32)
        size = np.dtype(dtype).itemsize
        cases.append(
            BenchCase(
                f"gemm_{key}",
                key,
                {"t": t, "n": n, "k": k},
                2.0 * t * n * k,
                (t * k + n * k) * size + t * n * 4.0,
                lambda x=x, w=w, y=y: launch_gemm(x, w, y, GPU_TILE),
                (t, n, k, key),
            )
        )
    values, indices = prune_24(rng.standard_normal((n, k)).astype(np.float16))
    meta = pack_24_metadata(indices)
    x16 = _dev(rng.standard_normal((t, k)).astype(np.float16))
    dv, dm, y = _dev(values), _dev(meta), cuda.device_array((t, n), np.float32)
    cases.append(
        BenchCase(
            "spmm_2:4_fp16",
            "fp16",
            {"t": t, "n": n, "k": k},
            2.0 * t * n * k / 2,
            t * k * 2 + values.nbytes + meta.nbytes + t * n * 4.0,
            lambda: launch_spmm_24(x16, dv, dm, y, GPU_TILE),
            (t, n, k, "fp16"),
        )
    )
    return cases


def _quant_cases(rng: np.random.Generator, s: BenchShape) -> list[BenchCase]:
    t, n, k, g = s.tokens, s.hidden, s.hidden, s.group
    qx = _dev(rng.integers(-128, 128, (t, k), dtype=np.int8))
    qw = _dev(rng.integers(-128, 128, (n, k), dtype=np.int8))
    sx, sw = _dev(np.ones(t, np.float32)), _dev(np.ones(n, np.float32))
    acc, y8 = cuda.device_array((t, n), np.int32), cuda.device_array((t, n), np.float32)
    packed = _dev(rng.integers(0, 256, (n, k // 2), dtype=np.uint8))
    scales = _dev(rng.uniform(0.01, 0.1, (n, k // g)).astype(np.float32))
    zeros = _dev(rng.integers(0, 16, (n, k // g), dtype=np.uint8))
    w4_bytes = n * k / 2 + n * (k // g) * 5.0
    xv, yv = _dev(rng.standard_normal(k).astype(np.float32)), cuda.device_array(n, np.float32)
    x16 = _dev(rng.standard_normal((t, k)).astype(np.float16))
    y4 = cuda.device_array((t, n), np.float32)
    shape = {"t": t, "n": n, "k": k}
    return [
        BenchCase(
            "gemm_int8",
            "int8",
            shape,
            2.0 * t * n * k,
            t * k + n * k + (t + n) * 4 + t * n * 8.0,
            lambda: launch_int8_gemm(qx, sx, qw, sw, acc, y8, GPU_TILE),
            (t, n, k, "int8"),
        ),
        BenchCase(
            "gemv_int4",
            "fp32",
            {"n": n, "k": k, "group": g},
            2.0 * n * k,
            w4_bytes + k * 4 + n * 4.0,
            lambda: launch_int4_gemv(xv, packed, scales, zeros, g, yv, GPU_ROW_THREADS),
            (1, n, k, "fp16"),
        ),
        BenchCase(
            "gemm_int4",
            "fp32",
            {**shape, "group": g},
            2.0 * t * n * k,
            w4_bytes + t * k * 2 + t * n * 4.0,
            lambda: launch_int4_gemm(x16, packed, scales, zeros, g, y4, GPU_TILE),
            (t, n, k, "fp16"),
        ),
    ]


def _row_case(
    name: str, factory: Callable[[int], object], rows: int, cols: int, flop: int, extra: list
) -> BenchCase:
    """Return a one-block-per-row kernel case; `extra` holds its gain vectors and eps."""
    x = cuda.to_device(np.random.default_rng(1).standard_normal((rows, cols)).astype(np.float32))
    y = cuda.device_array((rows, cols), np.float32)
    kernel = factory(GPU_ROW_THREADS)
    gains = sum(1 for e in extra if not np.isscalar(e))
    return BenchCase(
        name,
        "fp32",
        {"rows": rows, "cols": cols},
        float(flop * rows * cols),
        rows * cols * 8.0 + gains * cols * 4.0,
        lambda: kernel[rows, GPU_ROW_THREADS](x, *extra, y),
        None,
    )


def _elementwise_cases(rng: np.random.Generator, s: BenchShape) -> list[BenchCase]:
    rows, cols = s.tokens, s.hidden
    gamma, beta = _dev(np.ones(cols, np.float32)), _dev(np.zeros(cols, np.float32))
    eps = np.float32(1e-5)
    heads = s.hidden // s.head_dim
    xr = _dev(rng.standard_normal((rows, heads, s.head_dim)).astype(np.float32))
    pos, freq = _dev(np.arange(rows, dtype=np.int32)), _dev(inverse_frequencies(s.head_dim))
    yr = cuda.device_array((rows, heads, s.head_dim), np.float32)
    pairs = rows * heads * s.head_dim // 2
    return [
        _row_case("softmax", softmax_kernel, rows, cols, SOFTMAX_FLOP_PER_ELEMENT, []),
        _row_case(
            "layernorm",
            layernorm_kernel,
            rows,
            cols,
            LAYERNORM_FLOP_PER_ELEMENT,
            [gamma, beta, eps],
        ),
        _row_case("rmsnorm", rmsnorm_kernel, rows, cols, RMSNORM_FLOP_PER_ELEMENT, [gamma, eps]),
        BenchCase(
            "rope",
            "fp32",
            {"t": rows, "heads": heads, "head_dim": s.head_dim},
            float(ROPE_FLOP_PER_PAIR * pairs),
            pairs * 16.0 + rows * 4,
            lambda: launch_rope(xr, pos, freq, yr, ELEMENTWISE_THREADS),
            None,
        ),
    ]


def _attention_case(rng: np.random.Generator, s: BenchShape) -> BenchCase:
    cache_shape = (1, s.kv_heads, s.kv_len, s.head_dim)
    q = _dev(rng.standard_normal((1, s.heads, s.head_dim)).astype(np.float16))
    k, v = (_dev(rng.standard_normal(cache_shape).astype(np.float16)) for _ in range(2))
    lengths = _dev(np.array([s.kv_len], np.int32))
    out = cuda.device_array((1, s.heads, s.head_dim), np.float32)
    splits = ceil_div(s.kv_len, GPU_ROW_THREADS)
    scale = 1.0 / np.sqrt(s.head_dim)
    cache_bytes = 2.0 * s.kv_heads * s.kv_len * s.head_dim * 2
    return BenchCase(
        "decode_attention_fp16",
        "fp32",
        {"heads": s.heads, "kv_heads": s.kv_heads, "kv_len": s.kv_len, "head_dim": s.head_dim},
        4.0 * s.heads * s.kv_len * s.head_dim,
        cache_bytes + s.heads * s.head_dim * 6.0,
        lambda: launch_decode_attention(
            q, k, v, lengths, splits, scale, out, GPU_ROW_THREADS, GPU_ROW_THREADS
        ),
        None,
    )


def build_cases(shape: BenchShape, seed: int = 0) -> list[BenchCase]:
    """Return every benchmark case for `shape`, its inputs already on the device."""
    rng = np.random.default_rng(seed)
    return [
        *_gemm_cases(rng, shape),
        *_quant_cases(rng, shape),
        *_elementwise_cases(rng, shape),
        _attention_case(rng, shape),
    ]
