"""Run the kernels at their hardware defaults (16x16 tiles, 128-thread rows) on a real GPU."""

import numpy as np
import pytest

from sparseflow.backends.gpu import gemm, int8_gemm, using_simulator
from sparseflow.backends.gpu.attention import decode_attention
from sparseflow.backends.gpu.bench import run_gpu_bench
from sparseflow.backends.gpu.bench_cases import BenchShape

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(using_simulator(), reason="needs a real GPU")]


def test_gemm_default_tiles_on_device() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((130, 300)).astype(np.float32)
    w = rng.standard_normal((257, 300)).astype(np.float32)
    np.testing.assert_allclose(gemm(x, w), x.astype(np.float64) @ w.T, rtol=1e-4, atol=1e-3)


def test_int8_gemm_bit_exact_on_device() -> None:
    rng = np.random.default_rng(1)
    qx = rng.integers(-128, 128, (67, 515), dtype=np.int8)
    qw = rng.integers(-128, 128, (129, 515), dtype=np.int8)
    sx = rng.uniform(0.01, 0.1, 67).astype(np.float32)
    sw = rng.uniform(0.01, 0.1, 129).astype(np.float32)
    acc = qx.astype(np.int32) @ qw.astype(np.int32).T
    y = int8_gemm(qx, sx, qw, sw)
    np.testing.assert_array_equal(y, acc.astype(np.float32) * sx[:, None] * sw[None, :])


def test_decode_attention_long_cache_on_device() -> None:
    rng = np.random.default_rng(2)
    q = rng.standard_normal((2, 8, 64)).astype(np.float32)
    k, v = (rng.standard_normal((2, 2, 1000, 64)).astype(np.float32) for _ in range(2))
    lengths = np.array([1000, 333])
    y = decode_attention(q, k, v, lengths)
    for b, length in enumerate(lengths):
        for h in range(8):
            s = k[b, h // 4, :length] @ q[b, h] / 8.0
            p = np.exp(s - s.max())
            np.testing.assert_allclose(y[b, h], p @ v[b, h // 4, :length] / p.sum(), atol=1e-4)


def test_run_gpu_bench_on_device() -> None:
    shape = BenchShape(tokens=64, hidden=256, group=64, heads=4, kv_heads=2, head_dim=64)
    # Peaks above any current GPU (even from L2), so no kernel may beat the roofline.
    record = run_gpu_bench(1e15, 1e13, shape=shape, repeats=3, warmup=1)
    assert record["simulator"] is False
    assert len(record["rows"]) == 11
    assert all(row["fraction_of_roofline"] <= 1.0 for row in record["rows"])
