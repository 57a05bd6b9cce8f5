"""The op registry: every op's type inference, cost and numpy reference, in one place.

An op is a registered `OpDef`, never a bare string scattered through the code. The reference
implementation of an op is its specification: the interpreter, the passes, the kernels and the
RTL are all tested against it. Quantized values are held by the reference as the float32 real
values they represent (an int8 tensor with scale s holds q * s).

Op definitions live in `ops_tensor`, `ops_math` and `ops_linear`; importing this module
registers all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sparseflow.ir.dims import eval_dim
from sparseflow.ir.errors import GraphError, InputError
from sparseflow.ir.node import Attrs
from sparseflow.ir.types import SparsePattern, TensorType

AttrDict = dict[str, object]


class TypeMismatch(Exception):
    """Raised by type inference; `OpDef.infer_type` adds the node name."""


@dataclass(frozen=True)
class Cost:
    """The work of one node: FLOPs, bytes read per input, and bytes written."""

    flops: int
    bytes_read: tuple[int, ...]
    bytes_written: int

    @property
    def bytes_total(self) -> int:
        """Return all bytes moved: reads plus writes."""
        return sum(self.bytes_read) + self.bytes_written


InferFn = Callable[[Sequence[TensorType], AttrDict], TensorType]
CostFn = Callable[[Sequence[TensorType], TensorType, AttrDict, dict[str, int]], Cost]
ReferenceFn = Callable[[list[np.ndarray], AttrDict], np.ndarray]


@dataclass(frozen=True)
class OpDef:
    """A registered op: name, class for reports, arity and its three definitions."""

    name: str
    op_class: str  # linear, attention, norm, elementwise, embedding, data, source
    arity: tuple[int, int]
    infer: InferFn
    cost: CostFn
    reference: ReferenceFn
    is_source: bool = False

    def infer_type(self, inputs: Sequence[TensorType], attrs: Attrs, node: str) -> TensorType:
        """Return the output type for these inputs, or raise GraphError naming the node."""
        low, high = self.arity
        if not low <= len(inputs) <= high:
            raise GraphError(f"node %{node}: {self.name} takes {low}..{high} inputs")
        try:
            return self.infer(inputs, dict(attrs))
        except TypeMismatch as err:
            raise GraphError(f"node %{node} ({self.name}): {err}") from None
        except (KeyError, TypeError, ValueError, OverflowError) as err:
            raise GraphError(f"node %{node} ({self.name}): bad attributes ({err})") from None

    def __repr__(self) -> str:
        return f"OpDef({self.name})"


_REGISTRY: dict[str, OpDef] = {}


def register(
    name: str, op_class: str, arity: tuple[int, int], *, source: bool = False
) -> Callable[[type], type]:
    """Register the op defined by a class holding `infer`, `cost` and `reference`."""

    def wrap(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"op {name!r} registered twice")
        _REGISTRY[name] = OpDef(
            name, op_class, arity, cls.infer, cls.cost, cls.reference, is_source=source
        )
        return cls

    return wrap


def get_op(name: str) -> OpDef:
    """Return the op called `name`; an unknown name lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown op {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def all_ops() -> list[OpDef]:
    """Return every registered op, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def storage_bytes(tensor_type: TensorType, bindings: dict[str, int] | None = None) -> int:
    """Return the bytes a tensor of this type occupies, metadata and scales included.

    Formula (matches the layouts of `sparseflow.ir.formats`), with E elements, density d,
    b value bits (the quantization's bits, else the dtype's), N rows (first dim), K = E / N:
    values E*d*b/8; indices: N:M log2(M) bits per kept value, FlightLLM N:16 blocks 4 bits per
    kept value + one byte per 16x16 block, CSR 4 bytes per kept value + 4*(N+1), BSR 4 bytes
    per kept block + 4*(N/bm + 1); scales: 4 bytes per row (per channel), or 4 bytes per
    group plus a 1-byte zero point when asymmetric (group-wise); FP4 adds a 4-byte exponent
    bias per row.
    """
    elements = tensor_type.numel(bindings)
    sparse, quant = tensor_type.sparse, tensor_type.quant
    bits = quant.bits if quant else tensor_type.dtype.bits
    density = sparse.density if sparse else 1.0
    total_bits = elements * density * bits
    rows = eval_dim(tensor_type.shape[0], bindings) if tensor_type.shape else 1
    if sparse is not None:
        total_bits += _index_bits(sparse, elements, density, rows)
    if quant is not None:
        total_bits += _scale_bits(quant, elements, rows)
    return math.ceil(total_bits / 8)


def _index_bits(sparse, elements: int, density: float, rows: int) -> float:  # noqa: ANN001
    kept = elements * density
    if sparse.pattern is SparsePattern.NM:
        return kept * math.ceil(math.log2(sparse.m))
    if sparse.pattern is SparsePattern.NM_BLOCK:
        blocks = elements / (sparse.block[0] * sparse.block[1])
        return kept * math.ceil(math.log2(sparse.m)) + 8 * blocks
    if sparse.pattern is SparsePattern.BLOCK:
        block_rows = math.ceil(rows / sparse.block[0])
        return 32 * kept / (sparse.block[0] * sparse.block[1]) + 32 * (block_rows + 1)
    return 32 * kept + 32 * (rows + 1)


def _scale_bits(quant, elements: int, rows: int) -> float:  # noqa: ANN001
    if quant.granularity == "group":
        groups = elements / quant.group_size
        return groups * (32 + (0 if quant.symmetric else 8))
    per_row = 64 if quant.scheme.value == "fp4" else 32
    return rows * per_row if quant.granularity == "channel" else 32


def dense_bytes(tensor_type: TensorType, bindings: dict[str, int]) -> int:
    """Return numel * dtype bytes (activations: no sparse or quant metadata)."""
    return math.ceil(tensor_type.numel(bindings) * tensor_type.dtype.bits / 8)


# Registering the op definitions: imported last so they can use the names above.
from sparseflow.ir import ops_linear, ops_math, ops_tensor  # noqa: E402,F401
