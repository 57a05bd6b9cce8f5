"""Turn a graph's nodes into analytical kernel works (GPU and CPU targets).

Every node with work becomes one kernel (views such as reshape and repeat_kv cost nothing and
are skipped). Numbers come from the op registry's cost functions at the given symbol bindings:
FLOPs, bytes per input and bytes written. Inputs are split into weights (their types, which
the kernel reads as deployed: `weight_storage_bytes`, the count the report's weight bytes sum
too; an embedding reads only its ids' rows of the table), KV-cache bytes (cache values, read
through kv_append and repeat_kv) and activation bytes.
Float tensors run at `float_dtype` (fp16 on GPUs, fp32 on CPUs); a linear whose input is
quantized runs on the int8 path, or on the int4 path when input and weights are both 4-bit.
"""

from __future__ import annotations

from dataclasses import replace

from sparseflow.ir.dims import eval_dim
from sparseflow.ir.dtypes import DType
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Cost, Op, OpClass
from sparseflow.ir.types import TensorType
from sparseflow.simulator.analytical import KernelWork


def kv_values(graph: Graph) -> set[str]:
    """Return the values that hold the KV cache (kv_append results and their GQA views)."""
    kv: set[str] = set()
    for node in graph.nodes:
        if node.op is Op.KV_APPEND or (node.op is Op.REPEAT_KV and node.inputs[0] in kv):
            kv.add(node.name)
    return kv


def graph_works(
    graph: Graph,
    bindings: dict[str, int],
    float_dtype: DType,
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
    float_dtype: DType,
) -> KernelWork:
    kv_bytes = activation_bytes = 0.0
    weights = []
    for name, tensor_type, read in zip(node.inputs, ins, cost.bytes_read, strict=True):
        if graph.node(name).op is Op.WEIGHT:
            weights.append(tensor_type)
        elif name in kv:
            kv_bytes += read
        else:
            activation_bytes += read
    input_bits = ins[0].quant.bits if ins and ins[0].quant is not None else None
    int4 = input_bits == 4 and weights and all(w.quant and w.quant.bits == 4 for w in weights)
    work = KernelWork(
        name=node.name,
        # Data movement runs as an element-wise kernel on GPUs and CPUs.
        op_class=OpClass.ELEMENTWISE if node.op.op_class is OpClass.DATA else node.op.op_class,
        flops=cost.flops,
        activation_bytes_read=activation_bytes,
        bytes_written=cost.bytes_written,
        kv_bytes_read=kv_bytes,
        dtype=DType.I4 if int4 else DType.I8 if input_bits in (4, 8) else float_dtype,
        weights=tuple(weights),
        # A lookup reads only the rows of its ids, a linear its whole weight.
        weight_fraction=_rows_read(node, ins, bindings),
    )
    return replace(work, flops=cost.flops / work.density)


def _rows_read(node: Node, ins: list[TensorType], bindings: dict[str, int]) -> float:
    """Return the fraction of its weight a node reads: an embedding's looked-up rows."""
    if node.op is not Op.EMBEDDING:
        return 1.0
    ids, table = ins
    return min(1.0, ids.numel(bindings) / eval_dim(table.shape[0], bindings))
