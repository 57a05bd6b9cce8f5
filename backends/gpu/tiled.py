"""Provide the shared-memory tiled GEMM shell that the dense, int8 and int4 GPU kernels share.

Layout (project contract): X [T, K] activations, W [N, K] weights (out, in), Y [T, N].
Each block of tile x tile threads computes a tile x tile patch of Y; thread (x, y) owns
Y[row0 + y, col0 + x]. The K axis is walked in steps of `tile`: the block stages a tile of X
and a tile of W in shared memory (converted to the accumulator type on load), synchronises,
and accumulates. Ragged edges load zeros.

The kernels differ only in how one W element is loaded, the accumulator type, and what they
write; each builds its kernel around `tiled_dot` and writes its own epilogue. A kernel whose W
is one array converted on load (dense, int8) needs no loader; one with a packed W (int4) gives
`load_w(w, n, k)`, a device function returning W[n, k] in the accumulator type from whatever
`w` the kernel passes (here a tuple of arrays and scalars). Loader and dot are compile-time
values of the closures that call them.
"""

from __future__ import annotations

from numba.core.types import Number

from sparseflow.backends.gpu.device import cuda
from sparseflow.backends.gpu.launch import DeviceFunction


@cuda.jit(device=True)
def tile_position(tile):
    """Return (tx, ty, row, col, w_row) of this thread in a tile x tile output block.

    row indexes X and Y, col indexes W and Y, and w_row is the W row the thread stages (the
    block's W rows are its Y columns, staged one per thread row).
    """
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    col0 = cuda.blockIdx.x * tile
    return tx, ty, cuda.blockIdx.y * tile + ty, col0 + tx, col0 + ty


def cast_loader(acc_type: Number) -> DeviceFunction:
    """Return a device function load(w, n, k) that reads w[n, k] from one array as acc_type."""

    @cuda.jit(device=True)
    def load(w, n, k):
        return acc_type(w[n, k])

    return load


def tiled_dot(tile: int, acc_type: Number, load_w: DeviceFunction | None = None) -> DeviceFunction:
    """Return a device function dot(x, w, cols) -> (row, col, acc) for tile x tile blocks.

    acc = X[row, :] . W[col, :] in acc_type (float32 or int32 tiles), W[n, k] read as
    load_w(w, n, k) for n < cols (by default w is one array, cast to acc_type). Every thread
    of the block must call it (it has barriers); the caller writes acc only where row < T and
    col < cols.
    """
    load_w = cast_loader(acc_type) if load_w is None else load_w
    padded = tile + 1  # one spare column keeps the transposed W reads off one shared bank

    @cuda.jit(device=True)
    def dot(x, w, cols):
        x_tile = cuda.shared.array((tile, tile), acc_type)
        w_tile = cuda.shared.array((tile, padded), acc_type)
        tx, ty, row, col, w_row = tile_position(tile)
        rows, depth = x.shape
        zero = acc_type(0)
        acc = zero
        for k0 in range(0, depth, tile):
            k = k0 + tx
            x_tile[ty, tx] = acc_type(x[row, k]) if row < rows and k < depth else zero
            w_tile[ty, tx] = load_w(w, w_row, k) if w_row < cols and k < depth else zero
            cuda.syncthreads()
            for kk in range(tile):
                acc += x_tile[ty, kk] * w_tile[tx, kk]
            cuda.syncthreads()
        return row, col, acc

    return dot
