"""Provide `run_spmm_bench`: time the CPU sparse kernels against numpy BLAS and scipy CSR.

A case is a weight W[m, k] (m outputs, k inputs) times n tokens: Y[n, m] = X[n, k] W^T.
Per case and dtype:
- fp32: `sparse_s` is our kernel for the pattern (unstructured -> CSR, blockBMxBK -> BSR,
  N:M -> N:M); `dense_s` is numpy's matmul on the same (pruned) W as a dense array.
- int8: `sparse_s` is the int8 BSR kernel (or the dense int8 kernel for pattern "dense") on
  per-channel int8 W and per-token int8 X; `dense_s` is fp32 BLAS on the dequantized W.
- int4 (pattern "dense" only): `sparse_s` is the group-wise int4 kernel (g = 128);
  `dense_s` is fp32 BLAS on the dequantized W.
`scipy_s` is scipy's CSR matrix times dense (single-threaded, as scipy is) on the same fp32
pruned W, or None for dense patterns. Times are medians of `repeats` timed calls after one
warm-up call; numba and BLAS run at the same, explicitly set, thread count.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

from sparseflow.backends.cpu.bsr_fp32 import bsr_spmm
from sparseflow.backends.cpu.csr_nm_fp32 import csr_spmm, nm_spmm
from sparseflow.backends.cpu.formats import bsr_from_dense, csr_from_dense, nm_from_dense
from sparseflow.backends.cpu.int4 import int4_gemm
from sparseflow.backends.cpu.int8 import bsr_int8_spmm, int8_gemm
from sparseflow.backends.cpu.quant import (
    dequantize_int4,
    int4_weight_from_dense,
    int8_weight_from_dense,
    quantize_int8_rows,
)
from sparseflow.backends.cpu.threads import set_threads
from sparseflow.ir.errors import InputError

# (m, k) layer shapes: BERT-base attention/FFN and LLaMA2-7B attention/FFN projections.
SHAPES = [(768, 768), (3072, 768), (768, 3072), (4096, 4096), (11008, 4096)]
TOKENS = [1, 128]
SPARSITIES = [0.5, 0.7, 0.8, 0.9, 0.95]
QUICK_SHAPES = [(768, 768)]
QUICK_SPARSITIES = [0.9]
# Idle time between timing phases: OpenBLAS and numba's OpenMP pool both busy-wait after a
# call; on 2 cores a spinning pool steals cycles from the other, so each phase starts after
# the other pool has gone to sleep (OpenBLAS spins ~2^28 cycles, about 0.1 s at 3 GHz).
PHASE_GAP_S = 0.15
INT4_GROUP = 128
ROW_KEYS = ("m", "k", "n", "pattern", "sparsity", "dtype", "dense_s", "sparse_s", "scipy_s",
            "speedup_vs_dense", "speedup_vs_scipy")  # fmt: skip


def default_cases(quick: bool = False) -> list[dict]:
    """Return the benchmark cases: the full sweep, or a small subset for CI with quick=True."""
    shapes, sparsities = (QUICK_SHAPES, QUICK_SPARSITIES) if quick else (SHAPES, SPARSITIES)
    cases = []
    for m, k in shapes:
        for n in TOKENS:
            base = {"m": m, "k": k, "n": n}
            for s in sparsities:
                cases.append({**base, "pattern": "unstructured", "sparsity": s, "dtype": "fp32"})
                cases.append({**base, "pattern": "block4x1", "sparsity": s, "dtype": "fp32"})
                cases.append({**base, "pattern": "block4x1", "sparsity": s, "dtype": "int8"})
            cases.append({**base, "pattern": "2:4", "sparsity": 0.5, "dtype": "fp32"})
            cases.append({**base, "pattern": "dense", "sparsity": 0.0, "dtype": "int8"})
            cases.append({**base, "pattern": "dense", "sparsity": 0.0, "dtype": "int4"})
    return cases


def prune(rng: np.random.Generator, w: np.ndarray, pattern: str, sparsity: float) -> np.ndarray:
    """Return w with a random `pattern` mask applied (dense, unstructured, blockBMxBK, N:M)."""
    m, k = w.shape
    if pattern == "dense":
        return w
    if pattern == "unstructured":
        return np.where(rng.random(w.shape) >= sparsity, w, 0).astype(w.dtype)
    if pattern.startswith("block"):
        bm, bk = (int(v) for v in pattern[5:].split("x"))
        keep = rng.random((-(-m // bm), -(-k // bk))) >= sparsity
        return np.where(np.kron(keep, np.ones((bm, bk), bool))[:m, :k], w, 0).astype(w.dtype)
    if ":" in pattern:
        n_keep, group = (int(v) for v in pattern.split(":"))
        k_pad = -(-k // group) * group
        scores = np.zeros((m, k_pad))
        scores[:, :k] = rng.random((m, k)) + 1.0
        ranks = np.argsort(np.argsort(-scores.reshape(m, -1, group), axis=2), axis=2)
        keep = (ranks < n_keep).reshape(m, k_pad)[:, :k]
        return np.where(keep, w, 0).astype(w.dtype)
    raise InputError(f"bench spmm: pattern {pattern!r} is not dense/unstructured/blockBMxBK/N:M")


def median_time_s(fn: Callable[[], object], repeats: int) -> float:
    """Return the median wall time of `repeats` calls of fn after one warm-up call."""
    time.sleep(PHASE_GAP_S)
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _sparse_call(case: dict, w: np.ndarray, x: np.ndarray) -> tuple[Callable, np.ndarray]:
    """Return (timed call of our kernel, the f32 matrix the dense baseline multiplies)."""
    pattern, dtype = case["pattern"], case["dtype"]
    if dtype == "int4":
        w4 = int4_weight_from_dense(w, INT4_GROUP)
        return (lambda: int4_gemm(x, w4)), dequantize_int4(w4)
    if dtype == "int8":
        w8 = int8_weight_from_dense(w)
        qx, sx = quantize_int8_rows(x)
        deq = w8.q.astype(np.float32) * w8.scale[:, None]
        if pattern == "dense":
            return (lambda: int8_gemm(qx, sx, w8)), deq
        block = tuple(int(v) for v in pattern[5:].split("x"))
        b8 = bsr_from_dense(w8.q, block)
        return (lambda: bsr_int8_spmm(qx, sx, b8, w8.scale)), deq
    if pattern == "unstructured":
        csr = csr_from_dense(w)
        return (lambda: csr_spmm(x, csr)), w
    if pattern.startswith("block"):
        bsr = bsr_from_dense(w, tuple(int(v) for v in pattern[5:].split("x")))
        return (lambda: bsr_spmm(x, bsr)), w
    nm = nm_from_dense(w, *(int(v) for v in pattern.split(":")))
    return (lambda: nm_spmm(x, nm)), w


def _scipy_call(w: np.ndarray, x: np.ndarray) -> Callable:
    """Return a timed call of scipy CSR W times X^T (a vector product for one token)."""
    import scipy.sparse

    csr = scipy.sparse.csr_matrix(w)
    xt = np.ascontiguousarray(x.T)
    if x.shape[0] == 1:
        xv = xt[:, 0].copy()
        return lambda: csr @ xv
    return lambda: csr @ xt


def run_case(case: dict, repeats: int, rng: np.random.Generator) -> dict:
    """Time one case and return its row (keys `ROW_KEYS`)."""
    m, k, n = case["m"], case["k"], case["n"]
    w = prune(rng, rng.standard_normal((m, k)).astype(np.float32), case["pattern"],
              case["sparsity"])  # fmt: skip
    x = rng.standard_normal((n, k)).astype(np.float32)
    sparse_fn, w_dense = _sparse_call(case, w, x)
    dense_s = median_time_s(lambda: x @ w_dense.T, repeats)
    sparse_s = median_time_s(sparse_fn, repeats)
    scipy_s = None
    if case["pattern"] != "dense":
        scipy_s = median_time_s(_scipy_call(w_dense, x), repeats)
    return {
        **{key: case[key] for key in ("m", "k", "n", "pattern", "sparsity", "dtype")},
        "dense_s": dense_s,
        "sparse_s": sparse_s,
        "scipy_s": scipy_s,
        "speedup_vs_dense": dense_s / sparse_s,
        "speedup_vs_scipy": None if scipy_s is None else scipy_s / sparse_s,
    }


def run_spmm_bench(
    cases: list[dict] | None = None,
    repeats: int = 7,
    progress: bool = True,
    quick: bool = False,
    threads: int = 2,
    seed: int = 0,
) -> dict:
    """Run the SpMM benchmark; return {"rows": [...], "threads": {...}}, one row per case.

    `cases` defaults to `default_cases(quick)`; the progress bar shows only on a terminal.
    """
    if repeats < 1:
        raise InputError(f"bench spmm: repeats must be >= 1, got {repeats}")
    from tqdm import tqdm

    in_force = set_threads(threads)
    rng = np.random.default_rng(seed)
    todo = default_cases(quick) if cases is None else cases
    bar = tqdm(todo, desc="bench spmm", disable=not (progress and sys.stderr.isatty()))
    rows = [run_case(case, repeats, rng) for case in bar]
    return {"rows": rows, "threads": in_force, "repeats": repeats}
