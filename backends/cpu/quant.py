"""Provide the quantized weight containers of the CPU kernels and reference quantizers.

Storage contract (shared with the compression passes; W is [N, K] = (out, in)):
- INT8: `q` int8[N, K] with per-output-channel `scale` f32[N]; activations per token int8
  [T, K] with `scale` f32[T]; Y = (qX @ qW^T as int32) * sx[:, None] * sw[None, :].
- INT4 group-wise (g divides K): `packed` uint8[N, K/2] with even k in the low nibble and odd
  k in the high nibble, `scales` f32[N, K/g], `zeros` uint8[N, K/g] in 0..15;
  w = (q - z) * s.
The quantizers follow refs/quantization.md (symmetric absmax int8, asymmetric min-max uint4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparseflow.ir.dtypes import symmetric_scale
from sparseflow.ir.errors import InputError

# Symmetric int8: qmax = 2^(8-1) - 1; scales are `symmetric_scale`'s (refs/quantization.md).
INT8_QMAX = 127
# Asymmetric uint4: maxq = 2^4 - 1 (refs/quantization.md, GPTQ/AWQ convention).
UINT4_MAXQ = 15


def _check(cond: bool, message: str) -> None:
    """Raise `InputError(message)` unless `cond` holds."""
    if not cond:
        raise InputError(message)


@dataclass(frozen=True)
class Int8Weight:
    """Hold W[N, K] as int8 with one f32 scale per output channel."""

    q: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        _check(self.q.dtype == np.int8 and self.q.ndim == 2, "int8 weight q: need int8[N, K]")
        want = (self.q.shape[0],)
        ok = self.scale.dtype == np.float32 and self.scale.shape == want
        _check(ok, f"int8 weight scale: need f32{list(want)}, got {self.scale.dtype}")


@dataclass(frozen=True)
class Int4Weight:
    """Hold W[N, K] as group-wise asymmetric uint4 (two per byte) with f32 scales."""

    packed: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    group: int

    def __post_init__(self) -> None:
        rows, half = self.packed.shape if self.packed.ndim == 2 else (0, -1)
        _check(self.packed.dtype == np.uint8 and half >= 0, "int4 packed: need uint8[N, K/2]")
        g = self.group
        _check(g >= 2 and g % 2 == 0, f"int4 group: {g} must be even and >= 2")
        _check((2 * half) % g == 0, f"int4 group: {g} does not divide K = {2 * half}")
        want = (rows, 2 * half // g)
        ok = self.scales.dtype == np.float32 and self.scales.shape == want
        _check(ok, f"int4 scales: need f32{list(want)}, got {self.scales.dtype}{self.scales.shape}")
        ok = self.zeros.dtype == np.uint8 and self.zeros.shape == want
        _check(ok, f"int4 zeros: need uint8{list(want)}, got {self.zeros.dtype}{self.zeros.shape}")
        _check(self.zeros.size == 0 or int(self.zeros.max()) <= UINT4_MAXQ, "int4 zeros: > 15")

    @property
    def shape(self) -> tuple[int, int]:
        """Return the logical (N, K)."""
        return self.packed.shape[0], 2 * self.packed.shape[1]


def quantize_int8_rows(a: np.ndarray, qmax: int = INT8_QMAX) -> tuple[np.ndarray, np.ndarray]:
    """Quantize each row of a 2-D f32 array to symmetric int codes in -qmax..qmax (held as
    int8; qmax = 7 gives int4 activation codes); return (q, scale per row)."""
    _check(a.ndim == 2, "quantize_int8_rows: need a 2-D array")
    _check(1 <= qmax <= INT8_QMAX, f"quantize_int8_rows: qmax {qmax} outside 1..{INT8_QMAX}")
    scale = symmetric_scale(np.abs(a).max(axis=1, initial=0.0), qmax)
    q = np.clip(np.rint(a / scale[:, None]), -qmax, qmax).astype(np.int8)
    return q, scale


def int8_weight_from_dense(w: np.ndarray) -> Int8Weight:
    """Quantize W[N, K] per output channel to an `Int8Weight`."""
    q, scale = quantize_int8_rows(w)
    return Int8Weight(q, scale)


def pack_int4(q: np.ndarray) -> np.ndarray:
    """Pack uint4 codes q[N, K] (K even, values 0..15) into uint8[N, K/2], even k low nibble."""
    q = q.astype(np.uint8)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """Unpack uint8[N, K/2] into uint4 codes uint8[N, K] (inverse of `pack_int4`)."""
    out = np.empty((packed.shape[0], 2 * packed.shape[1]), np.uint8)
    out[:, 0::2] = packed & 0x0F
    out[:, 1::2] = packed >> 4
    return out


def int4_weight_from_dense(w: np.ndarray, group: int = 128) -> Int4Weight:
    """Quantize W[N, K] to group-wise asymmetric uint4 (min-max, refs/quantization.md)."""
    _check(w.ndim == 2, "int4_weight_from_dense: need a 2-D weight")
    rows, cols = w.shape
    _check(group >= 2 and group % 2 == 0, f"int4 group: {group} must be even and >= 2")
    _check(cols % group == 0, f"int4 group: {group} does not divide K = {cols}")
    grouped = w.reshape(rows, cols // group, group).astype(np.float32)
    lo = np.minimum(grouped.min(axis=2), 0.0)
    hi = np.maximum(grouped.max(axis=2), 0.0)
    both_zero = (lo == 0) & (hi == 0)
    lo, hi = np.where(both_zero, -1.0, lo), np.where(both_zero, 1.0, hi)
    scales = ((hi - lo) / UINT4_MAXQ).astype(np.float32)
    zeros = np.clip(np.rint(-lo / scales), 0, UINT4_MAXQ)
    q = np.clip(np.rint(grouped / scales[:, :, None]) + zeros[:, :, None], 0, UINT4_MAXQ)
    packed = pack_int4(q.reshape(rows, cols))
    return Int4Weight(packed, scales, zeros.astype(np.uint8), group)


def dequantize_int4(w: Int4Weight) -> np.ndarray:
    """Return the f32 matrix (q - z) * s that an `Int4Weight` encodes."""
    rows, cols = w.shape
    q = unpack_int4(w.packed).reshape(rows, cols // w.group, w.group).astype(np.float32)
    deq = (q - w.zeros[:, :, None].astype(np.float32)) * w.scales[:, :, None]
    return deq.reshape(rows, cols)
