"""Element types of the IR.

Each `DType` knows its short name (as printed in the graph), its bit width and the numpy dtype
that holds its values in the reference interpreter. Sub-byte and float formats without a numpy
type (bf16, int4, fp4) are held in a wider numpy type by the reference; their packed storage is
the business of `sparseflow.ir.formats`.
"""

from __future__ import annotations

import enum

import numpy as np

from sparseflow.ir.errors import InputError


class DType(enum.Enum):
    """An element type: (short name, bits, numpy type that holds it, is_float)."""

    F32 = ("f32", 32, np.float32, True)
    F16 = ("f16", 16, np.float16, True)
    BF16 = ("bf16", 16, np.float32, True)
    I64 = ("i64", 64, np.int64, False)
    I32 = ("i32", 32, np.int32, False)
    I8 = ("i8", 8, np.int8, False)
    U8 = ("u8", 8, np.uint8, False)
    I4 = ("i4", 4, np.int8, False)
    U4 = ("u4", 4, np.uint8, False)
    FP4 = ("fp4e2m1", 4, np.float32, True)
    BOOL = ("bool", 8, np.bool_, False)

    @property
    def short(self) -> str:
        """Return the name printed in graphs, e.g. `i8`."""
        return self.value[0]

    @property
    def bits(self) -> int:
        """Return the storage width of one element in bits."""
        return self.value[1]

    @property
    def numpy(self) -> type[np.generic]:
        """Return the numpy type the reference interpreter holds values in."""
        return self.value[2]

    @property
    def is_float(self) -> bool:
        """Return True for floating-point formats."""
        return self.value[3]

    def __str__(self) -> str:
        return self.short


_BY_SHORT = {d.short: d for d in DType}


def parse_dtype(text: str) -> DType:
    """Return the dtype named `text` (`f32`, `i4`, `fp4e2m1`, ...) or raise InputError."""
    try:
        return _BY_SHORT[text]
    except KeyError:
        known = ", ".join(_BY_SHORT)
        raise InputError(f"unknown dtype {text!r} (known: {known})") from None


ABSMAX_FLOOR = 1e-5  # smallest absmax a symmetric scale is computed from
SCALE_SIGNIFICAND_BITS = 11  # FP16's precision, in f32's exponent range


def symmetric_scale(absmax: np.ndarray | float, qmax: int) -> np.ndarray:
    """Return the symmetric quantization scale max(absmax, 1e-5) / qmax as f32, rounded (to
    nearest, ties to even) to an 11-bit significand.

    With 11-bit scales and codes of at most 8 bits, code x scale and the product of two scales
    are exact in f32, and an integer dot product dequantized by one multiply with (scale x
    scale) equals the exact dot product of the dequantized operands rounded once: the
    accelerator and the reference then compute the same number, not two roundings apart.
    """
    scale = np.asarray(np.maximum(absmax, np.float32(ABSMAX_FLOOR)) / qmax, np.float32)
    return round_significand(scale, SCALE_SIGNIFICAND_BITS)


def round_significand(x: np.ndarray, bits: int) -> np.ndarray:
    """Return float32 `x` rounded (to nearest, ties to even) to a `bits`-bit significand,
    keeping f32's exponent range (bits 8: bfloat16's values)."""
    drop = 24 - bits  # significand bits of f32 (23 stored + the implicit one) dropped
    raw = np.asarray(x, np.float32).view(np.uint32)
    half = np.uint32((1 << (drop - 1)) - 1)
    rounded = raw + half + ((raw >> np.uint32(drop)) & np.uint32(1))
    return (rounded & np.uint32(0xFFFFFFFF << drop & 0xFFFFFFFF)).view(np.float32)
