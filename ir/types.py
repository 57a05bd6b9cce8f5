"""Tensor types: shape (symbolic dims allowed), element type, sparse format, quantization.

A `TensorType` prints as one token group, e.g. `i4[4096,4096] nm=8:16 q=int4:group:g128:asym`,
and `parse_type` reads that text back, so printed graphs round-trip.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

from sparseflow.ir.dims import Dim, eval_dim, parse_dim
from sparseflow.ir.dtypes import DType, parse_dtype
from sparseflow.ir.errors import InputError


class SparsePattern(enum.Enum):
    """How the kept weights of a sparse tensor are arranged."""

    UNSTRUCTURED = "unstructured"
    NM = "nm"  # n of every m consecutive weights along the reduction axis
    BLOCK = "block"  # whole (bm x bk) blocks kept or dropped
    NM_BLOCK = "nmblock"  # FlightLLM: an N of N:16 chosen per 16x16 block


@dataclass(frozen=True)
class SparseFormat:
    """The sparsity of a weight: pattern, fraction kept, and the pattern's parameters."""

    pattern: SparsePattern
    density: float
    n: int = 0
    m: int = 0
    block: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.density <= 1.0:
            raise InputError(f"sparse density {self.density} is outside [0, 1]")
        if self.pattern is SparsePattern.NM and not 0 < self.n <= self.m:
            raise InputError(f"impossible N:M pattern {self.n}:{self.m}: need 0 < N <= M")
        if self.pattern in (SparsePattern.BLOCK, SparsePattern.NM_BLOCK) and min(self.block) < 1:
            raise InputError(f"block pattern needs a positive block shape, got {self.block}")

    def __str__(self) -> str:
        if self.pattern is SparsePattern.NM:
            return f"nm={self.n}:{self.m}"
        if self.pattern is SparsePattern.BLOCK:
            return f"block={self.block[0]}x{self.block[1]}@{self.density!r}"
        if self.pattern is SparsePattern.NM_BLOCK:
            return f"nmblock={self.block[0]}x{self.block[1]}:{self.m}@{self.density!r}"
        return f"unstructured@{self.density!r}"


class QuantScheme(enum.Enum):
    """The quantization algorithm family whose storage a tensor uses."""

    INT = "int"  # integer grid with scales (and zero points when asymmetric)
    LLM_INT8 = "llm.int8"  # vector-wise int8 with an fp16 outlier-column path
    FP4 = "fp4"  # FP(E2M1) with a searched exponent bias
    OLIVE = "olive"  # OliVe outlier-victim pairs on a 4-bit grid


@dataclass(frozen=True)
class QuantParams:
    """How a tensor is quantized: scheme, bits, scale granularity and its parameters."""

    scheme: QuantScheme
    bits: int
    granularity: str = "channel"  # tensor | channel | token | group
    group_size: int = 0
    symmetric: bool = True

    def __post_init__(self) -> None:
        if self.granularity not in ("tensor", "channel", "token", "group"):
            raise InputError(f"unknown quantization granularity {self.granularity!r}")
        if (self.granularity == "group") != (self.group_size > 0):
            raise InputError("a group size is given exactly when the granularity is 'group'")
        if not 1 < self.bits <= 16:
            raise InputError(f"quantization bit width {self.bits} is outside 2..16")

    def __str__(self) -> str:
        parts = [_quant_head(self.scheme, self.bits), self.granularity]
        if self.group_size:
            parts.append(f"g{self.group_size}")
        if not self.symmetric:
            parts.append("asym")
        return "q=" + ":".join(parts)


_FIXED_BITS = {QuantScheme.LLM_INT8: 8, QuantScheme.FP4: 4}


def _quant_head(scheme: QuantScheme, bits: int) -> str:
    """Return `int4`, `olive4`, or the bare name of a scheme whose width is fixed."""
    return scheme.value if scheme in _FIXED_BITS else f"{scheme.value}{bits}"


@dataclass(frozen=True)
class TensorType:
    """The type of a value: shape, dtype, and optional sparse format and quantization."""

    shape: tuple[Dim, ...]
    dtype: DType
    sparse: SparseFormat | None = None
    quant: QuantParams | None = None

    @property
    def rank(self) -> int:
        """Return the number of dimensions."""
        return len(self.shape)

    def numel(self, bindings: dict[str, int] | None = None) -> int:
        """Return the element count with symbolic dimensions bound."""
        return math.prod(eval_dim(d, bindings) for d in self.shape)

    def with_(self, **changes: object) -> TensorType:
        """Return a copy with the given fields replaced."""
        fields = {"shape": self.shape, "dtype": self.dtype, "sparse": self.sparse}
        fields["quant"] = self.quant
        fields.update(changes)
        return TensorType(**fields)  # type: ignore[arg-type]

    def __str__(self) -> str:
        text = f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"
        for extra in (self.sparse, self.quant):
            if extra is not None:
                text += f" {extra}"
        return text


def parse_type(text: str) -> TensorType:
    """Read a TensorType printed by `str(TensorType)`; raise InputError on malformed text."""
    head, *extras = text.split()
    if "[" not in head or not head.endswith("]"):
        raise InputError(f"bad tensor type {text!r}: expected dtype[dims]")
    dtype_text, dims_text = head[:-1].split("[", 1)
    shape = tuple(parse_dim(d) for d in dims_text.split(",")) if dims_text else ()
    sparse = quant = None
    for extra in extras:
        if extra.startswith("q="):
            quant = _parse_quant(extra[2:], text)
        else:
            sparse = _parse_sparse(extra, text)
    return TensorType(shape, parse_dtype(dtype_text), sparse, quant)


def _parse_sparse(token: str, text: str) -> SparseFormat:
    try:
        if token.startswith("nm="):
            n, m = (int(v) for v in token[3:].split(":"))
            return SparseFormat(SparsePattern.NM, n / m, n=n, m=m)
        if token.startswith("unstructured@"):
            return SparseFormat(SparsePattern.UNSTRUCTURED, float(token.split("@")[1]))
        kind, rest = token.split("=", 1)
        shape_text, density = rest.split("@")
        m = 0
        if kind == "nmblock":
            shape_text, m_text = shape_text.split(":")
            m = int(m_text)
        bm, bk = (int(v) for v in shape_text.split("x"))
        pattern = SparsePattern.BLOCK if kind == "block" else SparsePattern.NM_BLOCK
        if kind not in ("block", "nmblock"):
            raise ValueError(kind)
        return SparseFormat(pattern, float(density), m=m, block=(bm, bk))
    except (ValueError, TypeError, IndexError, ZeroDivisionError):
        raise InputError(f"bad sparse format {token!r} in type {text!r}") from None


def _parse_quant_head(head: str) -> tuple[QuantScheme, int]:
    for scheme in QuantScheme:
        if scheme in _FIXED_BITS and head == scheme.value:
            return scheme, _FIXED_BITS[scheme]
        if scheme not in _FIXED_BITS and re.fullmatch(re.escape(scheme.value) + r"\d+", head):
            return scheme, int(head[len(scheme.value) :])
    raise ValueError(head)


def _parse_quant(token: str, text: str) -> QuantParams:
    try:
        head, granularity, *rest = token.split(":")
        scheme, bits = _parse_quant_head(head)
        group = next((int(r[1:]) for r in rest if r.startswith("g")), 0)
        unknown = [r for r in rest if r != "asym" and not r.startswith("g")]
        if unknown:
            raise ValueError(unknown)
        return QuantParams(scheme, bits, granularity, group, "asym" not in rest)
    except ValueError:
        raise InputError(f"bad quantization {token!r} in type {text!r}") from None
