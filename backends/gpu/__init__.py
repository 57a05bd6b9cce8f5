"""GPU backend: numba.cuda kernels with numpy-in, numpy-out host wrappers.

Importing this package first selects the CUDA target (see `device`): a real GPU when the
driver reports one, otherwise numba's CUDA simulator, which runs the same kernels on the CPU.
`using_simulator()` says which one is active. Each kernel module also offers `launch_*`
functions on device arrays (used by `bench.run_gpu_bench`). `fusion` fuses decode attention,
`plan` picks a kernel per node, `executor` runs a plan.

Imports: sparseflow.ir, sparseflow.hw_models and sparseflow.backends.
"""

from sparseflow.backends.gpu.device import configure_cuda, using_simulator

configure_cuda()

# The imports below must follow configure_cuda: they import numba.cuda.
from sparseflow.backends.gpu.attention import decode_attention  # noqa: E402
from sparseflow.backends.gpu.bench import run_gpu_bench  # noqa: E402
from sparseflow.backends.gpu.dense_gemm import gemm  # noqa: E402
from sparseflow.backends.gpu.int4 import int4_gemm, int4_gemv  # noqa: E402
from sparseflow.backends.gpu.int8 import int8_gemm  # noqa: E402
from sparseflow.backends.gpu.norms import layernorm, rmsnorm, softmax  # noqa: E402
from sparseflow.backends.gpu.rotary import rope  # noqa: E402
from sparseflow.backends.gpu.sparse24 import (  # noqa: E402
    pack_24_metadata,
    prune_24,
    spmm_24,
    unpack_24_metadata,
)

__all__ = [
    "decode_attention",
    "gemm",
    "int4_gemm",
    "int4_gemv",
    "int8_gemm",
    "layernorm",
    "pack_24_metadata",
    "prune_24",
    "rmsnorm",
    "rope",
    "run_gpu_bench",
    "softmax",
    "spmm_24",
    "unpack_24_metadata",
    "using_simulator",
]
