"""The op registry: every op's type inference, cost and numpy reference, in one place.

An op is a member of the `Op` enum, never a bare string scattered through the code; its
definition (`OpDef`) is registered once. The reference
implementation of an op is its specification: the interpreter, the passes, the kernels and the
RTL are all tested against it. Quantized values are held by the reference as the float32 real
values they represent (an int8 tensor with scale s holds q * s).

Op definitions live in `ops_tensor`, `ops_math`, `ops_linear`, `ops_moe` (mixture of experts)
and `ops_parallel` (collectives); importing this module registers all of them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from sparseflow.ir.dims import eval_dim
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import GraphError, InputError
from sparseflow.ir.formats import FLIGHTLLM_BLOCK
from sparseflow.ir.node import Attrs
from sparseflow.ir.types import SparsePattern, TensorType

AttrDict = dict[str, object]


class OpClass(StrEnum):
    """What an op does, as reports, plots and cost models group work (one vocabulary).

    GPU/CPU kernels of class DATA run as element-wise kernels; the FPGA charges DATA to the
    host I/O and data movement it causes. COMMUNICATION ops (collectives between devices) are
    timed by the link model, not as kernels of one device.
    """

    LINEAR = "linear"
    ATTENTION = "attention"
    NORM = "norm"
    ELEMENTWISE = "elementwise"
    EMBEDDING = "embedding"
    DATA = "data"
    SOURCE = "source"
    COMMUNICATION = "communication"


class Op(enum.Enum):
    """Every op of the IR. Compare handles (`node.op is Op.LINEAR`), never printed names.

    The value is the op's printed name, used only by the printer and the parser. Each member
    is registered once with its type inference, cost and numpy reference (`register`); the
    accessors below hand out that definition.
    """

    INPUT = "input"
    WEIGHT = "weight"
    RESHAPE = "reshape"
    TRANSPOSE = "transpose"
    SLICE = "slice"
    CONCAT = "concat"
    KV_APPEND = "kv_append"
    REPEAT_KV = "repeat_kv"
    ADD = "add"
    MUL = "mul"
    SCALE = "scale"
    RELU = "relu"
    SILU = "silu"
    GELU = "gelu"
    SOFTMAX = "softmax"
    LAYERNORM = "layernorm"
    RMSNORM = "rmsnorm"
    QUANTIZE = "quantize"
    CAST = "cast"
    EMBEDDING = "embedding"
    LINEAR = "linear"
    MATMUL = "matmul"
    ROPE = "rope"
    CAUSAL_MASK = "causal_mask"
    SLIDING_WINDOW_MASK = "sliding_window_mask"
    DECODE_ATTENTION = "decode_attention"
    TOPK_GATE = "topk_gate"
    EXPERT_DISPATCH = "expert_dispatch"
    EXPERT_COMBINE = "expert_combine"
    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"Op.{self.name}"

    @property
    def definition(self) -> OpDef:
        """Return the registered definition of this op."""
        return _REGISTRY[self]

    @property
    def op_class(self) -> OpClass:
        """Return the op's class for reports."""
        return _REGISTRY[self].op_class

    @property
    def arity(self) -> tuple[int, int]:
        """Return the (least, most) number of inputs."""
        return _REGISTRY[self].arity

    @property
    def is_source(self) -> bool:
        """Return True for ops whose values are given, not computed (input, weight)."""
        return _REGISTRY[self].op_class is OpClass.SOURCE

    @property
    def cost(self) -> CostFn:
        """Return the cost function (FLOPs and bytes) of the op."""
        return _REGISTRY[self].cost

    @property
    def reference(self) -> ReferenceFn:
        """Return the numpy reference: the specification of what the op computes."""
        return _REGISTRY[self].reference

    def infer_type(self, inputs: Sequence[TensorType], attrs: Attrs, node: str) -> TensorType:
        """Return the output type for these inputs, or raise GraphError naming the node."""
        return _REGISTRY[self].infer_type(inputs, attrs, node)


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
    """The definition registered for an op: class, arity, inference, cost and reference."""

    op: Op
    op_class: OpClass
    arity: tuple[int, int]
    infer: InferFn
    cost: CostFn
    reference: ReferenceFn

    def infer_type(self, inputs: Sequence[TensorType], attrs: Attrs, node: str) -> TensorType:
        """Return the output type for these inputs, or raise GraphError naming the node."""
        low, high = self.arity
        if not low <= len(inputs) <= high:
            raise GraphError(f"node %{node}: {self.op} takes {low}..{high} inputs")
        try:
            return self.infer(inputs, dict(attrs))
        except TypeMismatch as err:
            raise GraphError(f"node %{node} ({self.op}): {err}") from None
        except (KeyError, TypeError, ValueError, OverflowError) as err:
            raise GraphError(f"node %{node} ({self.op}): bad attributes ({err})") from None


_REGISTRY: dict[Op, OpDef] = {}
_BY_NAME = {op.value: op for op in Op}


def register(op: Op, op_class: OpClass, arity: tuple[int, int]) -> Callable[[type], type]:
    """Register the definition of `op` from a class holding `infer`, `cost` and `reference`."""

    def wrap(cls: type) -> type:
        if op in _REGISTRY:
            raise ValueError(f"{op!r} registered twice")
        _REGISTRY[op] = OpDef(op, op_class, arity, cls.infer, cls.cost, cls.reference)
        return cls

    return wrap


def get_op(name: str) -> Op:
    """Return the op printed as `name` (for the parser); an unknown name lists the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InputError(f"unknown op {name!r} (known: {', '.join(sorted(_BY_NAME))})") from None


def all_ops() -> list[Op]:
    """Return every op, sorted by printed name."""
    return sorted(Op, key=lambda op: op.value)


def storage_bytes(tensor_type: TensorType, bindings: dict[str, int] | None = None) -> int:
    """Return the bytes a tensor of this type occupies, metadata and scales included.

    A weight's bytes are those of the arrays `sparseflow.ir.formats.pack_weight` stores (a test
    checks the two agree), with N rows, K columns, density d and v value bits (the
    quantization's, else the dtype's); 4-bit payloads pack two per byte along each stored row:
    - dense: N rows of K values.
    - CSR: nnz = round(d N K) values, i32 column per value, i32[N + 1] row pointers.
    - BSR (bm x bk): nnzb = round(d * blocks) blocks of bm*bk values, i32 block column per
      block, i32 pointers per block row (+1).
    - N:M: K padded to a multiple of M; n of every M kept: N rows of K_pad n/M values, a u8
      offset per value.
    - FlightLLM N:16: N, K padded to 16; kept = d N_pad K_pad values in one stream, a 4-bit
      index per value, a u8 N per 16x16 block.
    Side arrays: int8 per channel and OliVe: f32 scale per row; int4: f32 scale + u8 zero
    point per (row, group), symmetric too (it stores zero point 8); FP4: f32 exponent bias per
    row; LLM.int8: f32 row absmax (its fp16 outlier columns depend on calibration data and are
    counted only on weights that have them). Tensors quantized per token add an f32 scale
    per vector along the last axis.
    """
    if tensor_type.quant is not None and tensor_type.quant.granularity == "token":
        # Activations and KV cache quantized per token (and head): an f32 scale per vector.
        vectors = tensor_type.numel(bindings) // max(
            1, eval_dim(tensor_type.shape[-1], bindings or {})
        )
        return dense_bytes(tensor_type, bindings or {}) + 4 * vectors
    if tensor_type.rank != 2 or (tensor_type.sparse is None and tensor_type.quant is None):
        return dense_bytes(tensor_type, bindings or {})
    rows, cols = (eval_dim(d, bindings or {}) for d in tensor_type.shape)
    quant = tensor_type.quant
    bits = quant.bits if quant else tensor_type.dtype.bits
    layout_bytes, value_rows = _layout_bytes(tensor_type, rows, cols)
    values = sum(_row_bytes(entries, bits) * count for entries, count in value_rows)
    return layout_bytes + values + _side_bytes(tensor_type, rows, cols)


def _row_bytes(entries: int, bits: int) -> int:
    return -(-entries * bits // 8) if bits == 4 else entries * math.ceil(bits / 8)


def _layout_bytes(
    tensor_type: TensorType, rows: int, cols: int
) -> tuple[int, list[tuple[int, int]]]:
    """Return (index/pointer bytes, [(entries of a stored payload row, how many such rows)])."""
    sparse = tensor_type.sparse
    if sparse is None:
        return 0, [(cols, rows)]
    d = sparse.density
    if sparse.pattern is SparsePattern.UNSTRUCTURED:
        nnz = round(d * rows * cols)
        return 4 * nnz + 4 * (rows + 1), [(nnz, 1)]
    if sparse.pattern is SparsePattern.BLOCK:
        bm, bk = sparse.block
        block_rows = -(-rows // bm)
        nnzb = round(d * block_rows * -(-cols // bk))
        return 4 * nnzb + 4 * (block_rows + 1), [(bm * bk, nnzb)]
    if sparse.pattern is SparsePattern.NM:
        entries = -(-cols // sparse.m) * sparse.n
        return rows * entries, [(entries, rows)]
    block = FLIGHTLLM_BLOCK
    rows_pad, cols_pad = -(-rows // block) * block, -(-cols // block) * block
    kept = round(d * rows_pad * cols_pad / block) * block
    return -(-kept // 2) + (rows_pad // block) * (cols_pad // block), [(kept, 1)]


def _side_bytes(tensor_type: TensorType, rows: int, cols: int) -> int:
    quant = tensor_type.quant
    if quant is None:
        return 0
    if quant.bits == 4 and quant.scheme.value == "int":
        groups = cols // quant.group_size if quant.granularity == "group" else 1
        return rows * groups * (4 + 1)
    return 4 * rows


def dense_bytes(tensor_type: TensorType, bindings: dict[str, int]) -> int:
    """Return numel * dtype bytes (activations: no sparse or quant metadata)."""
    return math.ceil(tensor_type.numel(bindings) * tensor_type.dtype.bits / 8)


def nm_offset_bits(m: int) -> int:
    """Return the bits of a kept value's position within its group of `m` (2 for 2:4).

    Deployed N:M kernels bit-pack the positions (NVIDIA's 2:4 format keeps 2 bits per kept
    value), where the graph's packed layout (`storage_bytes`) keeps one byte per offset.
    """
    return math.ceil(math.log2(m))


def weight_storage_bytes(weight_type: TensorType) -> int:
    """Return a weight's bytes as GPU/CPU kernels and the accelerator store it.

    The graph's packed layout (`storage_bytes`: kept values, indices, quant scales and zero
    points) with two deployment choices: unquantized float weights in fp16, and N:M offsets
    bit-packed at `nm_offset_bits` instead of a byte each.
    """
    if weight_type.dtype.is_float and weight_type.quant is None:
        weight_type = weight_type.with_(dtype=DType.F16)
    total = storage_bytes(weight_type)
    sparse = weight_type.sparse
    if sparse is not None and sparse.pattern is SparsePattern.NM:
        rows, cols = (eval_dim(d) for d in weight_type.shape)
        offsets = rows * -(-cols // sparse.m) * sparse.n
        total -= offsets - math.ceil(offsets * nm_offset_bits(sparse.m) / 8)
    return total


# Registering the op definitions: imported last so they can use the names above.
from sparseflow.ir import ops_linear, ops_math, ops_moe, ops_parallel, ops_tensor  # noqa: E402,F401

_UNREGISTERED = [op for op in Op if op not in _REGISTRY]
if _UNREGISTERED:
    raise ValueError(f"ops without a definition: {_UNREGISTERED}")
