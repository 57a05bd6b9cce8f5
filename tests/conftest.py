"""Session-wide test setup: pick the CUDA target (real GPU or numba's simulator) before any
test module imports numba.cuda."""

import sparseflow.backends.gpu  # noqa: F401
