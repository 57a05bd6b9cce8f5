"""Compute launch configurations (grid and block shapes) for the GPU kernels.

Block sizes are powers of two so that shared-memory tree reductions halve cleanly. Defaults
differ between a real GPU and the simulator: the simulator runs every thread as a Python
thread, so it is given small blocks to keep functional runs fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparseflow.backends.gpu.device import using_simulator
from sparseflow.ir.errors import InputError

# 16x16 = 256 threads per output tile: a common starting point for shared-memory tiled
# GEMM (CUDA C++ Programming Guide, "Shared Memory" matrix multiplication example).
GPU_TILE = 16
# 128 threads per row: four warps of 32 (CUDA warp size) per row-reduction block.
GPU_ROW_THREADS = 128
# Simulator sizes: small enough that a block is a few dozen Python threads.
SIM_TILE = 8
SIM_ROW_THREADS = 16


@dataclass(frozen=True)
class LaunchConfig:
    """Hold a kernel's grid and block shapes, in CUDA (x, y, z) order."""

    grid: tuple[int, ...]
    block: tuple[int, ...]

    @property
    def threads(self) -> int:
        """Return the total number of threads launched."""
        total = 1
        for extent in (*self.grid, *self.block):
            total *= extent
        return total


def ceil_div(numerator: int, denominator: int) -> int:
    """Return numerator / denominator rounded up, for non-negative ints."""
    return -(-numerator // denominator)


def is_power_of_two(value: int) -> bool:
    """Return whether value is a positive power of two."""
    return value > 0 and value & (value - 1) == 0


def check_block_size(name: str, value: int, upper: int = 1024) -> int:
    """Return value if it is a power of two no larger than upper, else raise InputError."""
    if not isinstance(value, int) or not is_power_of_two(value) or value > upper:
        raise InputError(f"{name}={value!r}: must be a power of two between 1 and {upper}")
    return value


def default_tile() -> int:
    """Return the square output-tile edge used by the tiled GEMM kernels."""
    return SIM_TILE if using_simulator() else GPU_TILE


def default_row_threads() -> int:
    """Return the threads per block used by the one-block-per-row kernels."""
    return SIM_ROW_THREADS if using_simulator() else GPU_ROW_THREADS


def tiled_2d(rows: int, cols: int, tile: int) -> LaunchConfig:
    """Return a launch covering a rows x cols output with tile x tile blocks (x = cols)."""
    return LaunchConfig(grid=(ceil_div(cols, tile), ceil_div(rows, tile)), block=(tile, tile))


def per_row(rows: int, threads: int) -> LaunchConfig:
    """Return a launch with one block of `threads` threads per row."""
    return LaunchConfig(grid=(rows,), block=(threads,))


def flat_1d(items: int, threads: int) -> LaunchConfig:
    """Return a 1-D launch with at least one thread per item."""
    return LaunchConfig(grid=(max(1, ceil_div(items, threads)),), block=(threads,))


# numba device arrays (or any CUDA-array-interface object) passed to `launch_*` functions.
DeviceArray = Any
# A compiled numba CUDA kernel, launched as `kernel[grid, block](*args)`.
Kernel = Any
# A numba CUDA device function (`@cuda.jit(device=True)`), callable from kernels only.
DeviceFunction = Any
