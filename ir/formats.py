"""Compressed weight storage: the arrays a pass writes and a backend reads.

Requires a weight W[N, K] (out, in) given as float values or as `QuantCodes` (integer codes plus
their scales), and for sparse storage a boolean keep-mask that follows the pattern. Ensures a
`PackedWeight` whose `to_dense()` returns exactly the float32 values the storage represents and
whose `nbytes` counts every stored array (values, indices, pointers, scales, zero points).

Sparse layouts (padding is with zeros and never changes the logical shape):
- dense: the payload covers W[N, K] row-major.
- unstructured (CSR): `indptr` i32[N+1], `indices` i32[nnz] (column k), payload [nnz].
- block (bm, bk) as BSR over W padded to multiples of the block: `indptr` i32[N_pad/bm + 1],
  `indices` i32[nnzb] (block column), payload [nnzb, bm, bk].
- N:M along K (K padded to a multiple of M): payload [N, K_pad/M*n], `indices` u8 of the same
  shape (offset 0..M-1 inside each group, groups in order, ascending inside a group).
- FlightLLM mixed N:16 (`nmblock`, W padded to multiples of 16): `block_n` u8[N_pad/16,
  K_pad/16] with N in {2, 4, 8, 16} per 16x16 block; entries stream block by block (row-major
  over blocks), inside a block row by row, N entries per row ascending in k, so a block's rows
  are contiguous; block b starts at entry 16 * sum(block_n before b). `indices` holds each
  entry's 4-bit offset inside its 16 columns, two per byte (even entry in the low nibble).

Payloads (value storage; entries in the layout's order):
- float: `values` f32.
- int8 symmetric per channel (`q=int8:channel`): `values` i8, `scale` f32[N]; w = q * scale[n].
- int4 (`q=int4:group:gG[:asym]`, or `:channel` meaning G = K): `packed` u8, two 4-bit codes
  per byte (even entry in the low nibble), `scales` f32[N, K/G], `zeros` u8[N, K/G] in 0..15;
  w = (q - z) * s. Symmetric int4 stores q + 8 with z = 8.
- FP4 E2M1 (`q=fp4:channel`): `packed` 4-bit codes (bit 3 sign, bits 0..2 index into
  FP4_E2M1_GRID), `exponent_bias` f32[N]; w = +-grid[i] * 2^(1 - b[n]) (the LLM-FP4 format
  with a real-valued bias b per output channel; b = 1 is OCP MX E2M1).
- OliVe (`q=olive4:channel`, dense, K even): `packed` u8[N, K/2], byte j holds the pair
  (2j, 2j+1), element 2j in the low nibble; `scale` f32[N]. A nibble is a signed int4 n in
  -7..7 meaning 4n (the normal grid), except in a pair holding an outlier: the victim's nibble
  is OLIVE_VICTIM (1000b, value 0) and the outlier's nibble is sign << 3 | i, i in 1..7, meaning
  +-OLIVE_OUTLIER_GRID[i - 1]. w = grid value * scale[n].
- LLM.int8 (`q=llm.int8:channel`, dense): `values` i8 CB[N, K], `scb` f32[N] (row absmax),
  `outlier_cols` i32[C] (calibrated outlier feature columns), `outlier_values` f16[N, C];
  w = CB * scb / 127 except columns `outlier_cols`, which hold `outlier_values`.
The 4-bit payload `packed` has the payload shape viewed as 2-D [rows, entries] (1-D for CSR
and nmblock, [nnzb, bm*bk] for BSR) with the last axis halved, rounded up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.types import (
    QuantParams,
    QuantScheme,
    SparseFormat,
    SparsePattern,
    TensorType,
)

CodecKey = tuple[SparsePattern | None, QuantScheme | None]
_DECODERS: dict[CodecKey, Callable[[PackedWeight], np.ndarray]] = {}

# Magnitudes of the 3-bit E2M1 index (OCP MX spec, bias 1).
FP4_E2M1_GRID = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=np.float32)
# OliVe abfloat outlier magnitudes 2^i (1 + j/2), i = 5..8, j = 0..1, without 32 (Guo et al. 2023).
OLIVE_OUTLIER_GRID = np.array([48, 64, 96, 128, 192, 256, 384], dtype=np.float32)
OLIVE_NORMAL_STEP = 4.0  # normal values are 4 * (-7..7)
OLIVE_VICTIM = 8  # the int4 code 1000b, unused by the normal grid
FLIGHTLLM_BLOCK = 16
FLIGHTLLM_N_CHOICES = (2, 4, 8, 16)


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


@dataclass(frozen=True, eq=False)
class QuantCodes:
    """Quantized W[N, K] before layout: integer codes per weight plus the arrays scaling them.

    `codes` is int8 for 8-bit payloads and uint8 nibbles (0..15) for 4-bit ones; `side` holds
    the payload's other arrays by their storage names (`scale`, `scales`, `zeros`, ...).
    """

    params: QuantParams
    dtype: DType
    codes: np.ndarray
    side: Mapping[str, np.ndarray]


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


def pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """Pack 4-bit codes two per byte along the last axis (even entry low); pad odd tails."""
    codes = np.asarray(codes, dtype=np.uint8)
    if codes.size and int(codes.max()) > 15:
        raise InputError("4-bit packing got a code above 15")
    if codes.shape[-1] % 2:
        codes = np.concatenate([codes, np.zeros(codes.shape[:-1] + (1,), np.uint8)], axis=-1)
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def unpack_nibbles(packed: np.ndarray, count: int) -> np.ndarray:
    """Return the first `count` 4-bit codes along the last axis of `packed` as uint8."""
    out = np.empty(packed.shape[:-1] + (2 * packed.shape[-1],), dtype=np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out[..., :count]


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _pad(a: np.ndarray, rows: int, cols: int, fill: object = 0) -> np.ndarray:
    out = np.full((rows, cols), fill, dtype=a.dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out


def _fill_groups(mask: np.ndarray, pad: np.ndarray, want: np.ndarray, what: str) -> np.ndarray:
    """Return `mask` ([..., m] groups) with each group's shortfall to `want` taken from `pad`."""
    count = mask.sum(-1)
    short = want - count
    if np.any(short < 0) or np.any(short > pad.sum(-1)):
        raise InputError(f"{what}: the keep-mask does not have the pattern's count per group")
    return mask | (pad & (np.cumsum(pad, -1) <= short[..., None]))


# Each layout maps (keep-mask, options) to its index arrays and the padded (row, col) of every
# payload entry, shaped like the payload.
Slots = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]


def _layout_dense(mask: np.ndarray, sparse: SparseFormat | None, _: object) -> Slots:
    rows, cols = np.indices(mask.shape)
    return {}, rows, cols


def _layout_csr(mask: np.ndarray, sparse: SparseFormat, _: object) -> Slots:
    rows, cols = np.nonzero(mask)
    indptr = np.zeros(mask.shape[0] + 1, np.int32)
    indptr[1:] = np.cumsum(np.bincount(rows, minlength=mask.shape[0]))
    return {"indptr": indptr, "indices": cols.astype(np.int32)}, rows, cols


def _layout_bsr(mask: np.ndarray, sparse: SparseFormat, _: object) -> Slots:
    (n, k), (bm, bk) = mask.shape, sparse.block
    real = _pad(np.ones_like(mask), _ceil_to(n, bm), _ceil_to(k, bk), False)
    padded = _pad(mask, *real.shape, False)
    blocks = padded.reshape(real.shape[0] // bm, bm, -1, bk)
    kept = blocks.any(axis=(1, 3))
    partial = (blocks != real.reshape(blocks.shape)) & kept[:, None, :, None]
    if partial.any():
        raise InputError(f"block {bm}x{bk}: the keep-mask keeps part of a block")
    block_rows, block_cols = np.nonzero(kept)
    indptr = np.zeros(kept.shape[0] + 1, np.int32)
    indptr[1:] = np.cumsum(kept.sum(1))
    rows = block_rows[:, None, None] * bm + np.arange(bm)[None, :, None]
    cols = block_cols[:, None, None] * bk + np.arange(bk)[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    return {"indptr": indptr, "indices": block_cols.astype(np.int32)}, rows, cols


def _layout_nm(mask: np.ndarray, sparse: SparseFormat, _: object) -> Slots:
    (rows_n, k), n, m = mask.shape, sparse.n, sparse.m
    k_pad = _ceil_to(k, m)
    groups = _pad(mask, rows_n, k_pad, False).reshape(rows_n, -1, m)
    pad = _pad(np.zeros_like(mask), rows_n, k_pad, True).reshape(groups.shape)
    groups = _fill_groups(groups, pad, np.full(groups.shape[:2], n), f"N:M {n}:{m}")
    offsets = np.sort(np.argsort(~groups, axis=-1, kind="stable")[..., :n], axis=-1)
    cols = (np.arange(groups.shape[1])[None, :, None] * m + offsets).reshape(rows_n, -1)
    rows = np.broadcast_to(np.arange(rows_n)[:, None], cols.shape)
    return {"indices": offsets.reshape(rows_n, -1).astype(np.uint8)}, rows, cols


def _nmblock_slots(block_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (row, base column of its 16) for every nmblock entry in stream order."""
    b = FLIGHTLLM_BLOCK
    grid = np.indices((block_n.shape[0], block_n.shape[1], b, b))
    select = grid[3] < block_n[:, :, None, None]
    return (grid[0] * b + grid[2])[select], (grid[1] * b)[select]


def _as_blocks16(a: np.ndarray, fill: bool) -> np.ndarray:
    """Return a 2-D mask padded to multiples of 16 as [block row, block col, row, col]."""
    b = FLIGHTLLM_BLOCK
    padded = _pad(a, _ceil_to(a.shape[0], b), _ceil_to(a.shape[1], b), fill)
    return padded.reshape(padded.shape[0] // b, b, -1, b).transpose(0, 2, 1, 3)


def _layout_nmblock(mask: np.ndarray, sparse: SparseFormat, block_n: object) -> Slots:
    padded = _as_blocks16(mask, False)
    pad = _as_blocks16(np.zeros_like(mask), True)
    if block_n is None:
        most = padded.sum(-1).max(-1)
        block_n = np.array(FLIGHTLLM_N_CHOICES)[np.searchsorted(FLIGHTLLM_N_CHOICES, most)]
    block_n = np.asarray(block_n, dtype=np.uint8)
    if block_n.shape != padded.shape[:2] or not np.isin(block_n, FLIGHTLLM_N_CHOICES).all():
        raise InputError(f"nmblock: block_n must be {padded.shape[:2]} of N in 2, 4, 8, 16")
    want = np.broadcast_to(block_n[:, :, None], padded.shape[:3])
    padded = _fill_groups(padded, pad, want, "nmblock N:16")
    order = np.argsort(~padded, axis=-1, kind="stable")
    take = np.arange(FLIGHTLLM_BLOCK) < block_n[:, :, None, None]
    offsets = order[np.broadcast_to(take, order.shape)].astype(np.uint8)
    rows, base = _nmblock_slots(block_n)
    arrays = {"block_n": block_n, "indices": pack_nibbles(offsets)}
    return arrays, rows, base + offsets


_LAYOUTS: dict[SparsePattern | None, Callable[..., Slots]] = {
    None: _layout_dense,
    SparsePattern.UNSTRUCTURED: _layout_csr,
    SparsePattern.BLOCK: _layout_bsr,
    SparsePattern.NM: _layout_nm,
    SparsePattern.NM_BLOCK: _layout_nmblock,
}


def pack_weight(
    payload: np.ndarray | QuantCodes,
    sparse: SparseFormat | None = None,
    mask: np.ndarray | None = None,
    block_n: np.ndarray | None = None,
    float_dtype: DType = DType.F32,
) -> PackedWeight:
    """Store W (float [N, K] or its `QuantCodes`) in the layout `sparse` names, keeping `mask`.

    The mask must follow the pattern (n per group of m, whole blocks, ...); without a mask the
    non-zero entries are kept. `block_n` fixes the per-block N of an nmblock layout (default:
    the smallest allowed N covering the mask). Entries that padding adds hold zeros. Float
    values are stored in `float_dtype` (f32, f16, or bf16 as its 16-bit patterns), rounded
    to nearest.
    """
    quant = payload if isinstance(payload, QuantCodes) else None
    dense = quant.codes if quant else np.asarray(payload, dtype=np.float32)
    if dense.ndim != 2:
        raise InputError(f"a packed weight must be 2-D [N, K], got shape {dense.shape}")
    if sparse is None:
        mask = np.ones(dense.shape, bool)
    elif mask is None:
        mask = dense != 0
    elif mask.shape != dense.shape:
        raise InputError(f"keep-mask shape {mask.shape} differs from weight {dense.shape}")
    pattern = sparse.pattern if sparse else None
    arrays, rows, cols = _LAYOUTS[pattern](np.asarray(mask, bool), sparse, block_n)
    reach = (int(rows.max(initial=0)) + 1, int(cols.max(initial=0)) + 1)
    padded = _pad(dense, max(dense.shape[0], reach[0]), max(dense.shape[1], reach[1]))
    dtype = quant.dtype if quant else float_dtype
    arrays.update(_payload_arrays(quant, padded[rows, cols], dtype))
    shape = (int(dense.shape[0]), int(dense.shape[1]))
    return PackedWeight(TensorType(shape, dtype, sparse, quant.params if quant else None), arrays)


def _payload_arrays(
    quant: QuantCodes | None, entries: np.ndarray, dtype: DType
) -> dict[str, np.ndarray]:
    if quant is None:
        return {"values": float_storage(entries, dtype)}
    side = {name: np.asarray(a) for name, a in quant.side.items()}
    if quant.params.bits == 8:
        return {"values": entries.astype(np.int8), **side}
    if quant.params.bits != 4:
        raise InputError(f"no storage for {quant.params.bits}-bit codes (4 or 8 are stored)")
    return {"packed": pack_nibbles(_stream(entries)), **side}


def _stream(entries: np.ndarray) -> np.ndarray:
    """View a payload as the 1-D or [rows, entries] array that 4-bit packing runs along."""
    return entries if entries.ndim == 1 else entries.reshape(entries.shape[0], -1)


def _positions_dense(pw: PackedWeight) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.indices(pw.shape)
    return rows, cols


def _positions_csr(pw: PackedWeight) -> tuple[np.ndarray, np.ndarray]:
    indptr = pw.arrays["indptr"]
    rows = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    return rows, pw.arrays["indices"].astype(np.int64)


def _positions_bsr(pw: PackedWeight) -> tuple[np.ndarray, np.ndarray]:
    bm, bk = pw.type.sparse.block
    indptr = pw.arrays["indptr"]
    block_rows = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    rows = block_rows[:, None, None] * bm + np.arange(bm)[None, :, None]
    cols = pw.arrays["indices"].astype(np.int64)[:, None, None] * bk + np.arange(bk)
    rows, cols = np.broadcast_arrays(rows, cols)
    return rows, cols


def _positions_nm(pw: PackedWeight) -> tuple[np.ndarray, np.ndarray]:
    n, m = pw.type.sparse.n, pw.type.sparse.m
    offsets = pw.arrays["indices"].astype(np.int64)
    cols = (np.arange(offsets.shape[1]) // n) * m + offsets
    rows = np.broadcast_to(np.arange(offsets.shape[0])[:, None], cols.shape)
    return rows, cols


def _positions_nmblock(pw: PackedWeight) -> tuple[np.ndarray, np.ndarray]:
    rows, base = _nmblock_slots(pw.arrays["block_n"])
    return rows, base + unpack_nibbles(pw.arrays["indices"], rows.size)


_POSITIONS = {
    None: _positions_dense,
    SparsePattern.UNSTRUCTURED: _positions_csr,
    SparsePattern.BLOCK: _positions_bsr,
    SparsePattern.NM: _positions_nm,
    SparsePattern.NM_BLOCK: _positions_nmblock,
}


def stored_mask(pw: PackedWeight) -> np.ndarray:
    """Return the bool [N, K] mask of the positions the layout stores (padding excluded)."""
    rows, cols = _POSITIONS[pw.type.sparse.pattern if pw.type.sparse else None](pw)
    n, k = pw.shape
    inside = (rows < n) & (cols < k)
    mask = np.zeros((n, k), bool)
    mask[rows[inside], cols[inside]] = True
    return mask


def _payload_entries(pw: PackedWeight, shape: tuple[int, ...]) -> np.ndarray:
    """Return the stored payload entries (floats or integer codes) shaped like the layout."""
    if "packed" not in pw.arrays:
        return pw.arrays["values"].reshape(shape)
    stream_shape = _stream(np.empty(shape, np.uint8)).shape
    return unpack_nibbles(pw.arrays["packed"], stream_shape[-1]).reshape(shape)


def fp4_channel_scale(exponent_bias: np.ndarray) -> np.ndarray:
    """Return the float32 multiplier 2^(1 - b) of the E2M1 grid for exponent biases b."""
    return np.exp2(1.0 - np.asarray(exponent_bias, np.float64)).astype(np.float32)


def fp4_values(codes: np.ndarray) -> np.ndarray:
    """Return the float32 grid values (before the channel scale) of 4-bit E2M1 codes."""
    magnitude = FP4_E2M1_GRID[codes & 7]
    return np.where(codes & 8, -magnitude, magnitude).astype(np.float32)


def _dequant_none(
    pw: PackedWeight, entries: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    return float_values(entries, pw.type.dtype)


def float_storage(values: np.ndarray, dtype: DType) -> np.ndarray:
    """Return float32 values as stored in `dtype`: float32, float16, or bfloat16 bit patterns
    (uint16, rounded to nearest even)."""
    values = np.asarray(values, np.float32)
    if dtype is DType.F16:
        return values.astype(np.float16)
    if dtype is DType.BF16:
        bits = values.view(np.uint32).astype(np.uint64)
        rounded = bits + 0x7FFF + ((bits >> 16) & 1)
        return (rounded >> 16).astype(np.uint16)
    if dtype is not DType.F32:
        raise InputError(f"float weights are stored as f32, f16 or bf16, not {dtype}")
    return values


def float_values(stored: np.ndarray, dtype: DType) -> np.ndarray:
    """Return the float32 values of `float_storage`'s arrays."""
    if dtype is DType.BF16:
        return (stored.astype(np.uint32) << 16).view(np.float32)
    return stored.astype(np.float32)


def _dequant_int(
    pw: PackedWeight, entries: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    params = pw.type.quant
    if params.bits == 8:
        return entries.astype(np.float32) * pw.arrays["scale"][rows]
    group = params.group_size or pw.shape[1]
    scales = pw.arrays["scales"][rows, cols // group]
    zeros = pw.arrays["zeros"][rows, cols // group].astype(np.float32)
    return (entries.astype(np.float32) - zeros) * scales


def _dequant_fp4(
    pw: PackedWeight, entries: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    return fp4_values(entries) * fp4_channel_scale(pw.arrays["exponent_bias"])[rows]


_DEQUANT = {None: _dequant_none, QuantScheme.INT: _dequant_int, QuantScheme.FP4: _dequant_fp4}


def _decode_layout(pw: PackedWeight) -> np.ndarray:
    """Scatter the dequantized payload entries of any sparse layout into a dense matrix."""
    pattern, scheme = codec_key(pw.type)
    rows, cols = _POSITIONS[pattern](pw)
    entries = _payload_entries(pw, rows.shape)
    inside = (rows < pw.shape[0]) & (cols < pw.shape[1])
    rows, cols = rows[inside], cols[inside]
    out = np.zeros(pw.shape, np.float32)
    out[rows, cols] = _DEQUANT[scheme](pw, entries[inside], rows, cols)
    return out


for _pattern in _POSITIONS:
    for _scheme in _DEQUANT:
        register_decoder((_pattern, _scheme))(_decode_layout)


def olive_pair_values(codes: np.ndarray) -> np.ndarray:
    """Return the grid values of OliVe nibble codes [N, K] (K even), victims restored to 0."""
    signed = np.where(codes >= 8, codes.astype(np.int16) - 16, codes).astype(np.float32)
    values = signed * OLIVE_NORMAL_STEP
    outlier_mag = OLIVE_OUTLIER_GRID[np.clip((codes & 7).astype(np.int64) - 1, 0, 6)]
    outlier = np.where(codes & 8, -outlier_mag, outlier_mag)
    for slot, partner in ((0, 1), (1, 0)):
        victim = codes[:, partner::2] == OLIVE_VICTIM
        values[:, slot::2] = np.where(victim, outlier[:, slot::2], values[:, slot::2])
        values[:, partner::2] = np.where(victim, 0.0, values[:, partner::2])
    return values


@register_decoder((None, QuantScheme.OLIVE))
def _decode_olive(pw: PackedWeight) -> np.ndarray:
    codes = unpack_nibbles(pw.arrays["packed"], pw.shape[1])
    return (olive_pair_values(codes) * pw.arrays["scale"][:, None]).astype(np.float32)


@register_decoder((None, QuantScheme.LLM_INT8))
def _decode_llm_int8(pw: PackedWeight) -> np.ndarray:
    scb = pw.arrays["scb"].astype(np.float32)
    out = pw.arrays["values"].astype(np.float32) * (scb[:, None] / np.float32(127.0))
    out[:, pw.arrays["outlier_cols"]] = pw.arrays["outlier_values"].astype(np.float32)
    return out
