"""Sparsity passes: unstructured, N:M, block and FlightLLM mixed N:16 pruning of linear weights.

Requires: the selected weights are linear weights not yet compressed.
Ensures: each selected weight is stored in its sparse layout (`PackedWeight` with float values)
and its node's type carries the SparseFormat; shape-only graphs get the type alone, with the
requested density.

IR before -> after (2:4 on q_proj):
    %layers.0.attn.q_proj : f32[4096,4096] = weight() {"role": "linear"}
    %layers.0.attn.q_proj : f32[4096,4096] nm=2:4 = weight() {"role": "linear"}
"""

from __future__ import annotations

from dataclasses import dataclass

from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.types import SparseFormat, SparsePattern, TensorType
from sparseflow.ir.weights import WeightValue
from sparseflow.passes import sparsity
from sparseflow.passes.manager import PassContext, register_pass
from sparseflow.passes.weights import dense_values, rewrite_weights


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"option {name!r} must be in [0, 1), got {value}")


def _sparsify(
    graph: Graph,
    layers: tuple[str, ...],
    ctx: PassContext,
    select,
    fmt: SparseFormat,
) -> Graph:
    def new_value(name: str, value: WeightValue):
        selection = select(dense_values(value))
        dtype = graph.node(name).type.dtype
        return selection.pack(selection.apply(dense_values(value)), dtype)

    def new_type(name: str, tensor_type: TensorType) -> TensorType:
        if tensor_type.sparse is not None:
            raise InputError(f"layer {name!r} is already sparse ({tensor_type.sparse})")
        if tensor_type.quant is not None:
            raise InputError(
                f"layer {name!r} is already quantized ({tensor_type.quant}): sparsify before "
                "quantizing (quantization keeps a sparse weight's mask)"
            )
        return tensor_type.with_(sparse=fmt)

    return rewrite_weights(graph, layers, ctx, new_value, new_type)


@dataclass(frozen=True)
class UnstructuredOptions:
    """sparsity: fraction of weights removed in each layer."""

    sparsity: float

    def __post_init__(self) -> None:
        _check_fraction("sparsity", self.sparsity)


@register_pass("sparsify_unstructured", UnstructuredOptions)
def sparsify_unstructured(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: UnstructuredOptions
) -> Graph:
    """Prune the smallest-magnitude weights of each layer (CSR storage)."""
    density = 1.0 - opts.sparsity
    fmt = SparseFormat(SparsePattern.UNSTRUCTURED, density)
    return _sparsify(graph, layers, ctx, lambda w: sparsity.select_unstructured(w, density), fmt)


@dataclass(frozen=True)
class NmOptions:
    """n of every m consecutive weights along the reduction axis are kept."""

    n: int
    m: int

    def __post_init__(self) -> None:
        if self.m not in sparsity.NM_GROUP_SIZES:
            raise ValueError(f"option 'm' must be one of {sparsity.NM_GROUP_SIZES}, got {self.m}")
        if not 0 < self.n <= self.m:
            raise ValueError(f"option 'n' must be in 1..m={self.m}, got {self.n} (N > M?)")


@register_pass("sparsify_nm", NmOptions)
def sparsify_nm(graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: NmOptions) -> Graph:
    """Keep the n largest of every m weights along K (values + indices storage)."""
    fmt = SparseFormat(SparsePattern.NM, opts.n / opts.m, n=opts.n, m=opts.m)
    return _sparsify(graph, layers, ctx, lambda w: sparsity.select_nm(w, opts.n, opts.m), fmt)


@dataclass(frozen=True)
class BlockOptions:
    """block: [rows, cols] of a block; sparsity: fraction of blocks removed."""

    block: tuple[int, int]
    sparsity: float

    def __post_init__(self) -> None:
        block = tuple(self.block)
        if len(block) != 2 or min(block) < 1:
            raise ValueError(f"option 'block' must be [rows, cols] >= 1, got {self.block}")
        object.__setattr__(self, "block", block)
        _check_fraction("sparsity", self.sparsity)


@register_pass("sparsify_block", BlockOptions)
def sparsify_block(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: BlockOptions
) -> Graph:
    """Drop whole blocks with the smallest L2 norm (BSR storage)."""
    density = 1.0 - opts.sparsity
    fmt = SparseFormat(SparsePattern.BLOCK, density, block=opts.block)
    return _sparsify(
        graph, layers, ctx, lambda w: sparsity.select_block(w, opts.block, density), fmt
    )


@dataclass(frozen=True)
class FlightLlmOptions:
    """density: overall fraction of weights kept, reached by choosing N per 16x16 block."""

    density: float

    def __post_init__(self) -> None:
        if not 2 / 16 <= self.density <= 1.0:
            raise ValueError(
                f"option 'density' must be in [0.125, 1] (N >= 2 of 16), got {self.density}"
            )


@register_pass("sparsify_flightllm", FlightLlmOptions)
def sparsify_flightllm(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: FlightLlmOptions
) -> Graph:
    """Choose N in {2, 4, 8, 16} per 16x16 block to meet the density (FlightLLM N:16)."""
    fmt = SparseFormat(SparsePattern.NM_BLOCK, opts.density, m=16, block=(16, 16))
    return _sparsify(graph, layers, ctx, lambda w: sparsity.select_flightllm(w, opts.density), fmt)
