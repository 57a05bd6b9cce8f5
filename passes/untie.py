"""Untie the LM head: give an output linear that reads the embedding table its own weight.

Requires: nothing. Ensures: every linear whose weight is an embedding table (a weight of role
"embedding", as in GPT-2 and OPT, whose LM head is the token embedding) reads a new weight
`lm_head` of role "linear" holding the same values, so the linear passes after this one
compress the head while the lookup keeps the full-precision table. This is how an
accelerator that multiplies only compressed weights (FlightLLM's engine) deploys a tied
model: the host looks rows up in its own table, the device stores the compressed head. A
graph without a tied head is returned unchanged.

IR before -> after:
    %embed_tokens : f32[50257,768] = weight() {"role": "embedding"}
    %logits : f32[1,T,50257] = linear(%final_hidden, %embed_tokens)
    %lm_head : f32[50257,768] = weight() {"role": "linear"}
    %logits : f32[1,T,50257] = linear(%final_hidden, %lm_head)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node, make_attrs
from sparseflow.ir.ops import Op
from sparseflow.passes.manager import PassContext, register_pass

HEAD = "lm_head"


@dataclass(frozen=True)
class UntieOptions:
    """No options."""


@register_pass("untie_lm_head", UntieOptions, roles=())
def untie_lm_head(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: UntieOptions
) -> Graph:
    """Give a linear reading the embedding table its own `lm_head` weight."""
    roles = {n.name: n.attr("role") for n in graph.nodes_of(Op.WEIGHT)}
    tied = {n.inputs[1] for n in graph.nodes_of(Op.LINEAR) if roles.get(n.inputs[1]) == "embedding"}
    if not tied:
        return graph
    if len(tied) > 1 or HEAD in graph:
        raise InputError(
            f"graph {graph.name!r}: cannot untie {sorted(tied)} into one weight {HEAD!r}"
        )
    (table,) = tied
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.op is Op.LINEAR and node.inputs[1] == table:
            node = replace(node, inputs=(node.inputs[0], HEAD, *node.inputs[2:]))
        nodes.append(node)
        if node.name == table:
            nodes.append(replace(node, name=HEAD, attrs=make_attrs({"role": "linear"})))
    weights = graph.weights
    if table in weights:
        weights = weights.replace({HEAD: lambda: graph.weights[table]})
    return graph.with_nodes(nodes, weights)
