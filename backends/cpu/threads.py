"""Provide explicit control of the thread counts of numba and of numpy's BLAS.

Benchmarks compare numba kernels with numpy (OpenBLAS) at the same thread count, so both are
set explicitly. numpy wheels bundle `scipy-openblas`, whose symbol for the thread count is
`scipy_openblas_set_num_threads64_` (older wheels: `openblas_set_num_threads64_`); we find
the library beside numpy and call it through ctypes instead of adding a dependency.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numba
import numpy as np

from sparseflow.ir.errors import InputError

# numba's OpenMP (GNU libgomp) workers spin after every parallel region by default, and on a
# few cores they then steal time from OpenBLAS's threads between our kernels and numpy's
# matmuls (BERT-base, block-sparse linears, 2 threads: 337 ms spinning vs 142 ms passive;
# docs/cpu_executor.md). libgomp reads the policy when numba first starts its pool, after
# this module is imported by the package; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# With that policy every parallel region wakes sleeping workers: 50-60 us per call on the
# 2-core VM of docs/bench_spmm.md (an empty prange: 1 us on one thread), while a 3072 x 768
# block-sparse decode GEMV takes 30 us on one thread. Spinning workers would avoid the wake
# but cost BERT-base end to end 74 -> 91 ms (GOMP_SPINCOUNT=1000) or 193 ms (10000), 2 threads.
# So a decode kernel streaming fewer weight bytes than this, about 100 us of one thread's
# work at 40-50 GB/s, runs on the calling thread.
SERIAL_MAX_BYTES = 4 << 20

_SET_SYMBOLS = (
    "scipy_openblas_set_num_threads64_",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_GET_SYMBOLS = (
    "scipy_openblas_get_num_threads64_",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)


def _openblas_function(symbols: tuple[str, ...]) -> Callable | None:
    """Return the first of `symbols` found in numpy's bundled OpenBLAS, or None."""
    numpy_dir = os.path.dirname(np.__file__)
    pattern_dirs = [os.path.join(numpy_dir, "..", "numpy.libs"), os.path.join(numpy_dir, ".dylibs")]
    for folder in pattern_dirs:
        for path in sorted(glob.glob(os.path.join(folder, "*openblas*"))):
            lib = ctypes.CDLL(path)
            for symbol in symbols:
                if hasattr(lib, symbol):
                    return getattr(lib, symbol)
    return None


def blas_threads() -> int | None:
    """Return numpy's BLAS thread count, or None when it cannot be queried."""
    getter = _openblas_function(_GET_SYMBOLS)
    return None if getter is None else int(getter())


def set_threads(n_threads: int) -> dict[str, int | None]:
    """Set numba's and numpy BLAS's thread counts to n_threads; return what is now in force."""
    if not 1 <= n_threads <= numba.config.NUMBA_NUM_THREADS:
        top = numba.config.NUMBA_NUM_THREADS
        raise InputError(f"threads: {n_threads} outside 1..{top} (numba's pool size)")
    numba.set_num_threads(n_threads)
    setter = _openblas_function(_SET_SYMBOLS)
    if setter is not None:
        setter(ctypes.c_int(n_threads))
    return {"numba": numba.get_num_threads(), "blas": blas_threads()}


@contextmanager
def serial_below(weight_bytes: int) -> Iterator[None]:
    """Run the enclosed numba calls on one thread when they stream < `SERIAL_MAX_BYTES`."""
    threads = numba.get_num_threads()
    if threads == 1 or weight_bytes >= SERIAL_MAX_BYTES:
        yield
        return
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)
