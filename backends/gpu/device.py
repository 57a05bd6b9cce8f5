"""Select the CUDA target (a real GPU or numba's CUDA simulator) and expose numba.cuda.

numba reads `NUMBA_ENABLE_CUDASIM` once, when `numba.cuda` is first imported, so the choice
must be made before that import. `configure_cuda` makes it without importing numba.cuda:
an explicit `NUMBA_ENABLE_CUDASIM` in the environment wins; otherwise a GPU counts as present
only when the CUDA driver library exists and, probed in a child process (so that this process
never initialises the driver before a fork), reports at least one device.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

from sparseflow.ir.errors import SparseflowError

SIMULATOR_ENV = "NUMBA_ENABLE_CUDASIM"

# The simulator runs each CUDA thread as a Python thread and its block manager polls them in a
# busy loop, so with CPython's default 5 ms switch interval a launch mostly waits for GIL
# hand-offs. 0.1 ms made small GEMMs 5-7x faster here (2 CPU cores); 1 us to 1 ms all helped.
SIMULATOR_SWITCH_INTERVAL_S = 1e-4

# Seconds the child-process driver probe may take; driver start-up is well under this.
_PROBE_TIMEOUT_S = 60.0

# The probe asks the driver API directly: cuInit(0) and cuDeviceGetCount both return
# CUDA_SUCCESS (0) on a working driver (CUDA Driver API reference, "Initialization").
_PROBE_SOURCE = """
import ctypes, sys
for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        continue
    count = ctypes.c_int(0)
    ok = lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0
    sys.exit(0 if ok and count.value > 0 else 1)
sys.exit(1)
"""


class CudaSetupError(SparseflowError):
    """Report that numba.cuda was set up in a way this backend cannot run on."""


def driver_library_present() -> bool:
    """Return whether a CUDA driver library or nvidia-smi is installed (no driver calls)."""
    return ctypes.util.find_library("cuda") is not None or shutil.which("nvidia-smi") is not None


def probe_gpu() -> bool:
    """Return whether the CUDA driver reports a device, asking it from a child process."""
    if not driver_library_present():
        return False
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE_SOURCE],
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def configure_cuda() -> None:
    """Set `NUMBA_ENABLE_CUDASIM=1` when no GPU is present, before numba.cuda is imported.

    Leaves an explicit setting of the variable alone. Raises CudaSetupError when numba.cuda
    was already imported for real hardware on a machine without a GPU, since numba cannot
    switch to the simulator after that import.
    """
    if SIMULATOR_ENV in os.environ:
        return
    if "numba.cuda" in sys.modules:
        if not _imported_config_is_simulator() and not probe_gpu():
            raise CudaSetupError(
                "numba.cuda was imported before sparseflow.backends.gpu on a machine without a"
                f" GPU; set {SIMULATOR_ENV}=1 or import sparseflow.backends.gpu first"
            )
        return
    if not probe_gpu():
        os.environ[SIMULATOR_ENV] = "1"
        _reload_numba_config()


def _reload_numba_config() -> None:
    # numba's own config module reads the environment once, on `import numba`; when numba was
    # imported before this point, make it read the variable just set.
    config = sys.modules.get("numba.core.config")
    if config is not None:
        config.reload_config()


def _imported_config_is_simulator() -> bool:
    from numba.cuda.core import config

    return bool(config.ENABLE_CUDASIM)


configure_cuda()

from numba import cuda  # noqa: E402  (must follow configure_cuda, see the module docstring)


def using_simulator() -> bool:
    """Return whether GPU kernels run on numba's CUDA simulator rather than a real GPU."""
    return _imported_config_is_simulator()


@contextlib.contextmanager
def simulator_switching() -> Iterator[None]:
    """Shorten CPython's thread switch interval while simulated kernels run (no-op on a GPU)."""
    if not using_simulator():
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SIMULATOR_SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


__all__ = [
    "CudaSetupError",
    "configure_cuda",
    "cuda",
    "probe_gpu",
    "simulator_switching",
    "using_simulator",
]
