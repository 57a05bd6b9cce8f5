"""GPU backend: numba.cuda kernels with numpy-in, numpy-out host wrappers.

Importing this package first selects the CUDA target (see `device`): a real GPU when the
driver reports one, otherwise numba's CUDA simulator, which runs the same kernels on the CPU.
`using_simulator()` says which one is active.
"""

from sparseflow.backends.gpu.device import configure_cuda, using_simulator

configure_cuda()

from sparseflow.backends.gpu.gemm import gemm  # noqa: E402  (after configure_cuda)

__all__ = ["gemm", "using_simulator"]
