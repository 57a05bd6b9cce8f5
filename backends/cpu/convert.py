"""Convert compressed weights (`ir.formats.PackedWeight`) into the CPU kernels' containers.

Requires a `PackedWeight` whose layout and payload the target container can hold. Ensures a
container that multiplies exactly like `pw.to_dense()`: the index arrays are taken over as they
are (never re-derived from a dense matrix, so nothing is re-pruned), and payload values are
either kept in their integer form (int8, int4) or dequantized entry by entry.

- `float_container`: dense / CSR / BSR / N:M with a float payload, or an int8 per-channel
  payload dequantized per row (w = q * scale[n]), as an f32 `np.ndarray` / `CsrMatrix` /
  `BsrMatrix` / `NmMatrix`.
- `int8_bsr_from_packed`: BSR with an int8 per-channel payload, kept int8, plus its scales.
- `int8_from_packed`: dense int8 per-channel -> `Int8Weight`.
- `int4_from_packed`: dense int4 (group-wise or per channel, K and the group even) ->
  `Int4Weight`.
Anything else raises `InputError` naming the storage; `float_kernel_storage` and friends say
beforehand whether a conversion exists.
"""

from __future__ import annotations

import numpy as np

from sparseflow.backends.cpu.formats import BsrMatrix, CsrMatrix, NmMatrix
from sparseflow.backends.cpu.quant import Int4Weight, Int8Weight
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight
from sparseflow.ir.types import QuantParams, QuantScheme, SparsePattern, TensorType

FloatContainer = np.ndarray | CsrMatrix | BsrMatrix | NmMatrix

INT8_CHANNEL = QuantParams(QuantScheme.INT, 8, "channel")
_FLOAT_LAYOUTS = (None, SparsePattern.UNSTRUCTURED, SparsePattern.BLOCK, SparsePattern.NM)


def _pattern(tensor_type: TensorType) -> SparsePattern | None:
    return tensor_type.sparse.pattern if tensor_type.sparse else None


def is_int8_channel(tensor_type: TensorType) -> bool:
    """Return whether the storage holds symmetric int8 codes with one scale per row."""
    return tensor_type.quant == INT8_CHANNEL


def has_float_container(tensor_type: TensorType) -> bool:
    """Return whether `float_container` converts this storage (no dense detour)."""
    payload_ok = tensor_type.quant is None or is_int8_channel(tensor_type)
    return payload_ok and _pattern(tensor_type) in _FLOAT_LAYOUTS


def has_int4_container(tensor_type: TensorType) -> bool:
    """Return whether `int4_from_packed` converts this storage."""
    quant, k = tensor_type.quant, tensor_type.shape[1]
    if tensor_type.sparse is not None or quant is None or quant.scheme is not QuantScheme.INT:
        return False
    group = quant.group_size or k
    return quant.bits == 4 and isinstance(k, int) and k % 2 == 0 and group % 2 == 0


def _rows_of_entries(pw: PackedWeight) -> np.ndarray:
    """Return the output row of every payload entry, shaped like the payload's first axis."""
    pattern = _pattern(pw.type)
    if pattern is SparsePattern.UNSTRUCTURED:
        indptr = pw.arrays["indptr"]
        return np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    if pattern is SparsePattern.BLOCK:
        bm = pw.type.sparse.block[0]
        indptr = pw.arrays["indptr"]
        block_rows = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
        return block_rows[:, None] * bm + np.arange(bm)[None, :]
    return np.arange(pw.shape[0])


def _float_values(pw: PackedWeight) -> np.ndarray:
    """Return the payload as f32, dequantizing an int8 per-channel payload row by row."""
    values = pw.arrays["values"]
    if pw.type.quant is None:
        return np.ascontiguousarray(values, dtype=np.float32)
    # Padding rows of a BSR payload (beyond N) hold zeros; their scale is irrelevant.
    scale = np.append(pw.arrays["scale"], np.float32(0.0))
    scales = scale[np.minimum(_rows_of_entries(pw), pw.shape[0])]
    scales = scales.reshape(scales.shape + (1,) * (values.ndim - scales.ndim))
    return (values.astype(np.float32) * scales).astype(np.float32)


def float_container(pw: PackedWeight) -> FloatContainer:
    """Return the f32 container of the weight's own layout (dense: an [N, K] array)."""
    if not has_float_container(pw.type):
        raise InputError(f"no f32 CPU container for weight storage {pw.type}")
    values, arrays = _float_values(pw), pw.arrays
    pattern = _pattern(pw.type)
    if pattern is None:
        return values.reshape(pw.shape)
    if pattern is SparsePattern.UNSTRUCTURED:
        return CsrMatrix(pw.shape, arrays["indptr"], arrays["indices"], values)
    if pattern is SparsePattern.BLOCK:
        return BsrMatrix(
            pw.shape, pw.type.sparse.block, arrays["indptr"], arrays["indices"], values
        )
    sparse = pw.type.sparse
    return NmMatrix(pw.shape, sparse.n, sparse.m, values, np.ascontiguousarray(arrays["indices"]))


def int8_bsr_from_packed(pw: PackedWeight) -> tuple[BsrMatrix, np.ndarray]:
    """Return the int8 BSR matrix of codes and its per-row f32 scales."""
    if _pattern(pw.type) is not SparsePattern.BLOCK or not is_int8_channel(pw.type):
        raise InputError(f"int8 BSR needs block storage with int8 per-channel codes: {pw.type}")
    a = pw.arrays
    bsr = BsrMatrix(pw.shape, pw.type.sparse.block, a["indptr"], a["indices"], a["values"])
    return bsr, np.ascontiguousarray(a["scale"], dtype=np.float32)


def int8_from_packed(pw: PackedWeight) -> Int8Weight:
    """Return the dense per-channel int8 weight (codes and scales taken over as stored)."""
    if pw.type.sparse is not None or not is_int8_channel(pw.type):
        raise InputError(f"int8_gemm needs dense int8 per-channel storage: {pw.type}")
    values = np.ascontiguousarray(pw.arrays["values"]).reshape(pw.shape)
    return Int8Weight(values, np.ascontiguousarray(pw.arrays["scale"], dtype=np.float32))


def int4_from_packed(pw: PackedWeight) -> Int4Weight:
    """Return the group-wise int4 weight; packed nibbles, scales and zeros are kept as stored."""
    if not has_int4_container(pw.type):
        raise InputError(f"int4 kernels need dense int4 storage with even K and group: {pw.type}")
    group = pw.type.quant.group_size or pw.shape[1]
    a = pw.arrays
    return Int4Weight(
        np.ascontiguousarray(a["packed"]),
        np.ascontiguousarray(a["scales"], dtype=np.float32),
        np.ascontiguousarray(a["zeros"]),
        group,
    )
