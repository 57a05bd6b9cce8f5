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
