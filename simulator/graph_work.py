"""Turn a graph's nodes into analytical kernel works (GPU and CPU targets).

Every node with work becomes one kernel (views such as reshape and repeat_kv cost nothing and
are skipped). Numbers come from the op registry's cost functions at the given symbol bindings:
FLOPs, bytes per input and bytes written. Inputs are split into weight bytes (from `weight`
nodes: dense at their stored bit width, and as deployed by `weight_storage_bytes`, the count
the report's weight bytes sum too; an embedding reads only its ids' rows of the table),
KV-cache bytes (cache values, read through kv_append and repeat_kv) and activation bytes.
Float tensors run at `float_dtype` (fp16 on GPUs, fp32 on CPUs); a linear whose input is
int8-quantized runs on the int8 path.
"""

from __future__ import annotations

from sparseflow.ir.dims import eval_dim
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Cost
from sparseflow.ir.types import SparsePattern as IrPattern
from sparseflow.ir.types import TensorType
from sparseflow.simulator.analytical import (
    Dtype,
    KernelWork,
    OpClass,
    SparsePattern,
    weight_storage_bytes,
)

_OP_CLASS = {
    "linear": OpClass.LINEAR,
    "attention": OpClass.ATTENTION,
    "norm": OpClass.NORM,
    "elementwise": OpClass.ELEMENTWISE,
    "embedding": OpClass.EMBEDDING,
    "data": OpClass.ELEMENTWISE,
}


def kv_values(graph: Graph) -> set[str]:
    """Return the values that hold the KV cache (kv_append results and their GQA views)."""
    kv: set[str] = set()
    for node in graph.nodes:
        if node.op.name == "kv_append" or (node.op.name == "repeat_kv" and node.inputs[0] in kv):
            kv.add(node.name)
    return kv


def graph_works(
    graph: Graph,
    bindings: dict[str, int],
    float_dtype: Dtype,
    only: set[str] | None = None,
) -> list[KernelWork]:
    """Return one KernelWork per node of `graph` that does work (of `only`, if given)."""
    kv = kv_values(graph)
    types = {n.name: n.type for n in graph.nodes}
    nodes = graph.nodes if only is None else [n for n in graph.nodes if n.name in only]
    works = []
    for node in nodes:
        if node.op.is_source:
            continue
        ins = [types[i] for i in node.inputs]
        cost = node.op.cost(ins, node.type, node.attr_dict, bindings)
        if cost.flops == 0 and cost.bytes_total == 0:
            continue
        works.append(_work(graph, node, ins, cost, kv, bindings, float_dtype))
    return works


def _work(
    graph: Graph,
    node: Node,
    ins: list[TensorType],
    cost: Cost,
    kv: set[str],
    bindings: dict[str, int],
    float_dtype: Dtype,
) -> KernelWork:
    weight_bytes = kv_bytes = activation_bytes = 0.0
    packed_bytes = 0
    weight_type = None
    # A lookup reads only the rows of its ids, a linear its whole weight.
    rows_read = _rows_read(node, ins, bindings)
    for name, tensor_type, read in zip(node.inputs, ins, cost.bytes_read, strict=True):
        if graph.node(name).op.name == "weight":
            weight_type = tensor_type
            weight_bytes += _dense_weight_bytes(tensor_type, bindings) * rows_read
            packed_bytes += round(weight_storage_bytes(tensor_type) * rows_read)
        elif name in kv:
            kv_bytes += read
        else:
            activation_bytes += read
    pattern, density, block = _sparsity(weight_type) if node.op.name == "linear" else (None, 1, 4)
    quantized_input = bool(ins) and ins[0].quant is not None and ins[0].quant.bits == 8
    bits = _weight_bits(weight_type) if weight_type is not None else None
    return KernelWork(
        name=node.name,
        op_class=_OP_CLASS[node.op.op_class],
        flops=cost.flops / density,
        weight_bytes=weight_bytes,
        activation_bytes_read=activation_bytes,
        bytes_written=cost.bytes_written,
        kv_bytes_read=kv_bytes,
        dtype=Dtype.INT8 if quantized_input else float_dtype,
        weight_bits=bits,
        sparse_pattern=pattern,
        density=density,
        block_size=block,
        packed_weight_bytes=packed_bytes if weight_type is not None else None,
    )


def _rows_read(node: Node, ins: list[TensorType], bindings: dict[str, int]) -> float:
    """Return the fraction of its weight a node reads: an embedding's looked-up rows."""
    if node.op.name != "embedding":
        return 1.0
    ids, table = ins
    return min(1.0, ids.numel(bindings) / eval_dim(table.shape[0], bindings))


def _weight_bits(tensor_type: TensorType) -> int:
    """Return stored bits per weight value: the quantization's, else 16 (deployed fp16)."""
    if tensor_type.quant is not None:
        return tensor_type.quant.bits
    return 16 if tensor_type.dtype.is_float else tensor_type.dtype.bits


def _dense_weight_bytes(tensor_type: TensorType, bindings: dict[str, int]) -> float:
    elements = 1
    for d in tensor_type.shape:
        elements *= eval_dim(d, bindings)
    return elements * _weight_bits(tensor_type) / 8


def _sparsity(weight_type: TensorType | None) -> tuple[SparsePattern | None, float, int]:
    """Map the IR's sparse format to the analytical model's storage patterns."""
    sparse = weight_type.sparse if weight_type is not None else None
    if sparse is None:
        return None, 1.0, 4
    if sparse.pattern is IrPattern.NM and (sparse.n, sparse.m) == (2, 4):
        return SparsePattern.NM_2_4, 0.5, 4
    if sparse.pattern is IrPattern.BLOCK:
        return SparsePattern.BLOCK, sparse.density, sparse.block[0] * sparse.block[1]
    # Other N:M and FlightLLM's mixed N:16 have no GPU/CPU hardware path: stored compressed,
    # computed as unstructured sparsity.
    return SparsePattern.UNSTRUCTURED, sparse.density, 4
