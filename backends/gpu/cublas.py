"""Find a cuBLAS GEMM baseline for the GPU benchmark through torch or cupy, if either has a GPU.

`find_cublas()` returns (label, make, synchronize) or None. `make(t, n, k, precision)` returns
a zero-argument callable computing X @ W^T for X [t, k], W [n, k] on device-resident random
data, or None when that precision has no cuBLAS path in the library (int8 needs torch's
`_int_mm`, which cuBLASLt serves for t > 16 with k and n multiples of 8).
"""

from __future__ import annotations

from collections.abc import Callable

Baseline = tuple[str, Callable[..., Callable[[], object] | None], Callable[[], object]]


def _torch_baseline() -> Baseline | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    floats = {"fp32": torch.float32, "fp16": torch.float16}

    def make(t: int, n: int, k: int, precision: str) -> Callable[[], object] | None:
        if precision == "int8":
            if t <= 16 or k % 8 or n % 8:
                return None
            x = torch.randint(-128, 128, (t, k), dtype=torch.int8, device="cuda")
            w_t = torch.randint(-128, 128, (k, n), dtype=torch.int8, device="cuda")
            return lambda: torch._int_mm(x, w_t)
        x = torch.randn(t, k, dtype=floats[precision], device="cuda")
        w = torch.randn(n, k, dtype=floats[precision], device="cuda")
        return lambda: torch.matmul(x, w.T)

    return "cublas (torch)", make, torch.cuda.synchronize


def _cupy_baseline() -> Baseline | None:
    try:
        import cupy
    except ImportError:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except cupy.cuda.runtime.CUDARuntimeError:
        return None
    floats = {"fp32": cupy.float32, "fp16": cupy.float16}

    def make(t: int, n: int, k: int, precision: str) -> Callable[[], object] | None:
        if precision not in floats:
            return None
        x = cupy.random.standard_normal((t, k)).astype(floats[precision])
        w = cupy.random.standard_normal((n, k)).astype(floats[precision])
        return lambda: cupy.matmul(x, w.T)

    return "cublas (cupy)", make, cupy.cuda.runtime.deviceSynchronize


def find_cublas() -> Baseline | None:
    """Return the first available cuBLAS baseline (torch, then cupy), or None."""
    return _torch_baseline() or _cupy_baseline()
