"""Provide `choose_kernel`: pick the sparse/quantized kernel or dense BLAS for one linear layer.

Model: a sparse kernel doing a `density` fraction of the dense work at a relative efficiency
e (its useful FLOP/s, or bytes/s for decode, as a fraction of dense BLAS) takes
t_sparse = t_dense * density / e, so it wins when density < e. The efficiencies below are
measured: e = speedup_vs_dense * density, the median over the rows of `sparseflow bench spmm`
recorded in docs/bench_spmm.md (2-core AVX-512 machine, same thread count for numba and BLAS),
and live in the host's hardware model (hw_models/host-cpu.yaml, `sparse_kernels`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from sparseflow.backends.cpu.bsr_fp32 import bsr_path
from sparseflow.hw_models.loader import load_hw
from sparseflow.hw_models.schema import SparseKernelEfficiency
from sparseflow.ir.errors import InputError

HOST = "host-cpu"  # the hardware model of the machine the kernels run on


@functools.cache
def host_kernels() -> SparseKernelEfficiency:
    """Return the measured kernel efficiencies of the host (`sparse_kernels` of its model)."""
    kernels = load_hw(HOST).sparse_kernels  # type: ignore[attr-defined]
    assert kernels is not None, f"{HOST}.yaml states the kernels' efficiencies"
    return kernels


_BLOCK = re.compile(r"^block(\d+)x(\d+)$")
_NM = re.compile(r"^(\d+):(\d+)$")


@dataclass(frozen=True)
class KernelChoice:
    """Name the kernel picked for a layer, the modelled speedup over dense and why."""

    kernel: str
    sparse: bool
    predicted_speedup: float
    reason: str


def _sparse_family(pattern: str) -> tuple[str, float | None]:
    """Return (kernel family, density implied by the pattern or None) for a pattern string."""
    if pattern == "unstructured":
        return "csr", None
    if match := _BLOCK.match(pattern):
        block = (int(match[1]), int(match[2]))
        if min(block) < 1:
            raise InputError(f"choose_kernel: pattern {pattern!r} has an empty block")
        return "bsr_" + bsr_path(block), None
    if match := _NM.match(pattern):
        n, m = int(match[1]), int(match[2])
        if not 1 <= n <= m:
            raise InputError(f"choose_kernel: pattern {pattern!r} needs 1 <= N <= M")
        return "nm", n / m
    raise InputError(
        f"choose_kernel: pattern {pattern!r} is not dense, unstructured, blockBMxBK or N:M"
    )


def choose_kernel(
    n_out: int,
    k_in: int,
    tokens: int,
    pattern: str,
    density: float,
    dtype: str = "fp32",
    kernels: SparseKernelEfficiency | None = None,
) -> KernelChoice:
    """Pick the kernel for Y[tokens, n_out] = X W^T with W[n_out, k_in] stored as `pattern`.

    dtype "fp32" picks between a sparse kernel and dense BLAS by the efficiency model above;
    "int8" picks the int8 BSR kernel for sparse column blocks that win, else the dense int8
    kernel (the int8 contract needs an exact int32 product); "int4" picks the group-wise
    GEMV (tokens = 1) or the tiled dequant + BLAS GEMM. `kernels` defaults to the host's.
    """
    if n_out < 1 or k_in < 1 or tokens < 0:
        raise InputError(f"choose_kernel: bad layer shape ({n_out}, {k_in}), tokens {tokens}")
    if not 0.0 <= density <= 1.0:
        raise InputError(f"choose_kernel: density {density} outside 0..1")
    if dtype == "int4":
        kernel = "int4_gemv" if tokens <= 1 else "int4_gemm"
        return KernelChoice(kernel, False, 1.0, "int4 weights: group-wise dequant kernel")
    if dtype not in ("fp32", "int8"):
        raise InputError(f"choose_kernel: dtype {dtype!r} is not fp32, int8 or int4")
    dense_kernel = "int8_gemm" if dtype == "int8" else "dense_blas"
    if pattern == "dense":
        return KernelChoice(dense_kernel, False, 1.0, "dense weights")
    family, implied = _sparse_family(pattern)
    density = implied if implied is not None else density
    if dtype == "int8" and family != "bsr_col":
        return KernelChoice(dense_kernel, False, 1.0, f"no int8 kernel for {pattern}")
    phase = "decode" if tokens <= 1 else "prefill"
    efficiency = (kernels or host_kernels()).of(family, phase)
    speedup = efficiency / max(density, 1e-9)
    if speedup <= 1.0:
        reason = f"density {density:.3g} >= efficiency {efficiency} of {family} ({phase})"
        return KernelChoice(dense_kernel, False, 1.0, reason)
    kernel = "int8_bsr" if dtype == "int8" else family
    reason = f"density {density:.3g} < efficiency {efficiency} of {family} ({phase})"
    return KernelChoice(kernel, True, speedup, reason)
