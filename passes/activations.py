"""Activation and KV-cache quantization passes: insert `quantize` nodes.

quantize_activations requires: the selected weights feed `linear` nodes. Ensures: each such
linear reads its input through a per-token symmetric `quantize` node (shared by linears that
read the same value), so backends run integer matmuls.
    %q = linear(%h, %w.q)  ->  %h.q8 : i8[..] q=int8:token = quantize(%h) ; %q = linear(%h.q8, %w.q)

quantize_attention requires nothing. Ensures: both operands of every `matmul` (scores = q k^T,
context = p v) are read through per-vector `quantize` nodes (unless already quantized), the
precision of an integer attention datapath such as FlightLLM's.

quantize_kv_cache requires: a decode graph (keys and values enter the cache through
`kv_append`) or a prefill graph (its outputs after the first are the caches it fills). Ensures:
keys and values are quantized per token and head before they enter the cache, attention reads
the quantized cache, and cache inputs are typed as the quantized tensors they are.
    prefill: %k.0 = rope(..)  ->  %k.0.f = rope(..) ; %k.0 : i8[..] q=int8:token = quantize(%k.0.f)
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
        return _quantize_outputs(graph, graph.outputs[1:], opts.bits)
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


@register_pass("quantize_attention", ActivationOptions, roles=())
def quantize_attention(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: ActivationOptions
) -> Graph:
    """Quantize both operands of every attention matmul per vector (q per token and head,
    probabilities per row), as an integer matrix engine computes attention."""
    for position in (0, 1):
        graph = _insert_quantize(
            graph, lambda n, p=position: p if n.op.name == "matmul" else None, opts.bits
        )
    return graph


def _quantize_outputs(graph: Graph, outputs: tuple[str, ...], bits: int) -> Graph:
    """Make each named output, and every reader of it, the quantized value: the computed
    node is renamed `<name>.f` and `<name>` becomes its quantize node."""
    chosen = set(outputs)
    types: dict[str, object] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.name not in chosen or node.type.quant is not None:
            nodes.append(node)
            types[node.name] = node.type
            continue
        computed = replace(node, name=f"{node.name}.f")
        types[computed.name] = computed.type
        q = replace(_quantize_node(types, computed.name, bits), name=node.name)
        nodes += [computed, q]
        types[q.name] = q.type
    return graph.with_nodes(_retype(nodes))


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
