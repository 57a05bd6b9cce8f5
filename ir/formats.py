"""Compressed weight storage: the arrays a pass writes and a backend reads.

A `PackedWeight` holds a weight W[N, K] (out, in) as named numpy arrays plus the TensorType
(logical shape, sparse format, quantization) that says how to read them. `to_dense()` returns
the real values the storage represents (float32), which is what the reference interpreter
computes with; backends read the arrays directly.

Layouts (shared contract with the kernels; padding is with zeros and never changes `shape`):
- dense float: `values` f32[N, K].
- unstructured (CSR): `indptr` i32[N+1], `indices` i32[nnz], `values` [nnz].
- block (bm, bk) as BSR over W padded to multiples of the block: `indptr` i32[N_pad/bm + 1],
  `indices` i32[nnzb] (block column), `values` [nnzb, bm, bk].
- N:M along K (K padded to a multiple of M): `values` [N, K_pad/M*n], `indices` u8 (offset
  0..M-1 in each group, ascending).
- int8 per channel: `values` i8 with `scale` f32[N]; int4 group-wise: `packed` u8[N, K/2] (even k
  in the low nibble), `scales` f32[N, K/g], `zeros` u8[N, K/g]; w = (q - z) * s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sparseflow.ir.errors import InputError
from sparseflow.ir.types import QuantScheme, SparsePattern, TensorType

CodecKey = tuple[SparsePattern | None, QuantScheme | None]
_DECODERS: dict[CodecKey, Callable[[PackedWeight], np.ndarray]] = {}


@dataclass(frozen=True, eq=False)
class PackedWeight:
    """A compressed weight: its logical type and the named arrays that store it."""

    type: TensorType
    arrays: Mapping[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, int]:
        """Return the logical (N, K) shape."""
        n, k = self.type.shape
        return int(n), int(k)

    @property
    def nbytes(self) -> int:
        """Return the stored size in bytes: values, indices, scales and all other metadata."""
        return sum(int(a.nbytes) for a in self.arrays.values())

    def to_dense(self) -> np.ndarray:
        """Return the float32 [N, K] matrix of the real values this storage represents."""
        key = codec_key(self.type)
        if key not in _DECODERS:
            raise InputError(f"no decoder for weight storage {self.type}")
        return _DECODERS[key](self)


def codec_key(tensor_type: TensorType) -> CodecKey:
    """Return the (sparse pattern, quant scheme) pair that selects a storage codec."""
    sparse = tensor_type.sparse.pattern if tensor_type.sparse else None
    quant = tensor_type.quant.scheme if tensor_type.quant else None
    return sparse, quant


def register_decoder(
    key: CodecKey,
) -> Callable[[Callable[[PackedWeight], np.ndarray]], Callable[[PackedWeight], np.ndarray]]:
    """Register the function that turns storage of this codec key back into dense values."""

    def wrap(fn: Callable[[PackedWeight], np.ndarray]) -> Callable[[PackedWeight], np.ndarray]:
        _DECODERS[key] = fn
        return fn

    return wrap
