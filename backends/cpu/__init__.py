"""CPU backend: numba kernels for sparse and quantized linear layers, and the SpMM benchmark.

Formats (`formats`, `quant`) hold the storage contract shared with the compression passes;
the kernels compute Y[T, N] = X[T, K] W^T for W[N, K]. `dispatch` picks a kernel per layer,
`plan` plans a graph, `executor` runs it, `bench` measures the kernels.

Imports: sparseflow.ir, sparseflow.hw_models and sparseflow.backends.
"""

from sparseflow.backends.cpu.bench import run_spmm_bench
from sparseflow.backends.cpu.bench_report import format_spmm_table, plot_spmm
from sparseflow.backends.cpu.bsr_fp32 import bsr_spmm
from sparseflow.backends.cpu.csr_nm_fp32 import csr_spmm, nm_spmm
from sparseflow.backends.cpu.dispatch import KernelChoice, choose_kernel
from sparseflow.backends.cpu.formats import (
    BsrMatrix,
    CsrMatrix,
    NmMatrix,
    bsr_from_dense,
    csr_from_dense,
    nm_from_dense,
)
from sparseflow.backends.cpu.int4 import int4_gemm, int4_gemv
from sparseflow.backends.cpu.int8 import bsr_int8_spmm, int8_gemm
from sparseflow.backends.cpu.quant import (
    Int4Weight,
    Int8Weight,
    dequantize_int4,
    int4_weight_from_dense,
    int8_weight_from_dense,
    quantize_int8_rows,
)
from sparseflow.backends.cpu.threads import set_threads

__all__ = [
    "KernelChoice",
    "choose_kernel",
    "format_spmm_table",
    "plot_spmm",
    "run_spmm_bench",
    "set_threads",
    "BsrMatrix",
    "CsrMatrix",
    "Int4Weight",
    "Int8Weight",
    "NmMatrix",
    "bsr_from_dense",
    "bsr_int8_spmm",
    "bsr_spmm",
    "csr_from_dense",
    "csr_spmm",
    "dequantize_int4",
    "int4_gemm",
    "int4_gemv",
    "int4_weight_from_dense",
    "int8_gemm",
    "int8_weight_from_dense",
    "nm_from_dense",
    "nm_spmm",
    "quantize_int8_rows",
]
