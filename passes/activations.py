"""Activation and KV-cache quantization passes: insert `quantize` nodes.

quantize_activations requires: the selected weights feed `linear` nodes. Ensures: each such
linear reads its input through a per-token symmetric `quantize` node (shared by linears that
read the same value), so backends run integer matmuls.
    %q = linear(%h, %w.q)  ->  %h.q8 : i8[..] q=int8:token = quantize(%h) ; %q = linear(%h.q8, %w.q)

quantize_kv_cache requires: decode or prefill graphs with `kv_append`. Ensures: new keys and
values are quantized per token and head before they enter the cache, and cache inputs are typed
as the quantized tensors they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node, make_attrs
from sparseflow.ir.ops import get_op
from sparseflow.passes.manager import PassContext, register_pass


@dataclass(frozen=True)
class ActivationOptions:
    """bits: activation bit width (8, or 4)."""

    bits: int = 8

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise ValueError(f"option 'bits' must be 8 or 4, got {self.bits}")


def _quantize_node(graph_types: dict, value: str, bits: int) -> Node:
    op = get_op("quantize")
    attrs = make_attrs({"bits": bits})
    name = f"{value}.q{bits}"
    return Node(name, op, (value,), op.infer_type([graph_types[value]], attrs, name), attrs)


def _insert_quantize(graph: Graph, wanted, bits: int) -> Graph:  # noqa: ANN001
    """Rebuild the graph; for nodes where wanted(node) gives an input position, quantize it."""
    types = {n.name: n.type for n in graph.nodes}
    made: dict[str, str] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        position = wanted(node)
        if position is not None:
            source = node.inputs[position]
            if not types[source].quant and source not in made:
                q = _quantize_node(types, source, bits)
                nodes.append(q)
                types[q.name] = q.type
                made[source] = q.name
            if source in made:
                inputs = list(node.inputs)
                inputs[position] = made[source]
                node = replace(node, inputs=tuple(inputs))
        nodes.append(node)
    return graph.with_nodes(nodes)


@register_pass("quantize_activations", ActivationOptions)
def quantize_activations(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: ActivationOptions
) -> Graph:
    """Quantize the inputs of the selected linears per token (symmetric, `bits` bits)."""
    chosen = set(layers)

    def wanted(node: Node) -> int | None:
        return 0 if node.op.name == "linear" and node.inputs[1] in chosen else None

    return _insert_quantize(graph, wanted, opts.bits)


@register_pass("quantize_kv_cache", ActivationOptions, roles=())
def quantize_kv_cache(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: ActivationOptions
) -> Graph:
    """Store new keys and values in the KV cache quantized per token and head."""
    appends = graph.nodes_of("kv_append")
    caches = {n.inputs[0] for n in appends}
    if not appends:
        return graph
    quant_type = get_op("quantize").infer_type(
        [graph.node(appends[0].inputs[1]).type], make_attrs({"bits": opts.bits}), "kv"
    )
    nodes = [
        replace(n, type=n.type.with_(dtype=quant_type.dtype, quant=quant_type.quant))
        if n.name in caches
        else n
        for n in graph.nodes
    ]
    retyped = graph.with_nodes(_retype(nodes))
    return _insert_quantize(retyped, lambda n: 1 if n.op.name == "kv_append" else None, opts.bits)


def _retype(nodes: list[Node]) -> list[Node]:
    """Re-run type inference in order, so retyped inputs flow to their users."""
    types: dict[str, object] = {}
    out = []
    for node in nodes:
        if not node.op.is_source:
            node = replace(
                node,
                type=node.op.infer_type([types[i] for i in node.inputs], node.attrs, node.name),
            )
        types[node.name] = node.type
        out.append(node)
    return out
