"""Independent numpy references for the GPU kernel tests, written from the storage contracts."""

import numpy as np


def dense_from_24(values: np.ndarray, indices: np.ndarray, depth: int) -> np.ndarray:
    """Return the float64 [N, depth] matrix stored as 2:4 values and u8 offsets."""
    rows, kept = values.shape
    dense = np.zeros((rows, kept * 2), dtype=np.float64)
    for n in range(rows):
        for j in range(kept):
            dense[n, 4 * (j // 2) + int(indices[n, j])] = values[n, j]
    return dense[:, :depth]


def dequant_int4(packed: np.ndarray, scales: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """Return the float32 [N, K] weight w = (q - z) * s from group-wise int4 storage."""
    rows, half = packed.shape
    depth = 2 * half
    group = depth // scales.shape[1]
    w = np.empty((rows, depth), dtype=np.float32)
    for n in range(rows):
        for k in range(depth):
            byte = int(packed[n, k // 2])
            q = byte >> 4 if k % 2 else byte & 0xF
            z = int(zeros[n, k // group])
            w[n, k] = np.float32(q - z) * scales[n, k // group]
    return w


def random_24_indices(rng: np.random.Generator, rows: int, groups: int) -> np.ndarray:
    """Return random ascending 2:4 offset pairs u8 [rows, 2 * groups]."""
    pairs = np.array([(a, b) for a in range(4) for b in range(a + 1, 4)], dtype=np.uint8)
    chosen = pairs[rng.integers(0, len(pairs), size=(rows, groups))]
    return chosen.reshape(rows, 2 * groups)
