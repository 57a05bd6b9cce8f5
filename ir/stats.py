"""Model statistics from a graph: parameters, weight bytes, FLOPs and bytes per token, layers.

Every number is summed over the graph's nodes with the op registry's own cost functions, so
it describes exactly the graph that is compiled and simulated (compression passes included:
a sparse or quantized weight type changes `weight_bytes` and the linear FLOPs).

For a decoder, `flops_per_token` is one decode step (batch 1) at KV-cache length L (the new
token attends to S = L + 1 keys). For a dense LLaMA, with H hidden, I intermediate, V vocab,
n heads and kv key/value heads of size D, N layers, it is exactly
    N * [2*H*(n*D) + 2*2*H*(kv*D) + 2*(n*D)*H + 3*2*H*I        linears q, k, v, o, gate/up/down
         + 4*n*D*S                                              q.k^T and p.v
         + 7*n*S + 3*(n+kv)*D + 2*4*H + 2*H + 4*I + I]          scale, mask, softmax (1+1+5
                                                                per score), rope, 2 rmsnorm,
                                                                2 residual adds, silu, mul
    + 4*H + 2*V*H                                               final rmsnorm, lm head
i.e. about 2 * (linear parameters) + 4 * N * n * D * S; embedding lookups cost no FLOPs.
For BERT (an encoder) it is one prefill of L tokens divided by L. A model with routed experts
counts the experts one token reaches (`sparseflow.ir.routing`): k of E.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sparseflow.ir.dims import dim_symbols
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.models.config import ModelConfig
from sparseflow.ir.models.zoo import build_graph, load_config
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Cost, Op, storage_bytes
from sparseflow.ir.routing import routing_bindings
from sparseflow.ir.serialize import read_graph
from sparseflow.ir.types import TensorType

DEFAULT_CONTEXT = 512  # fits every built-in (BERT has 512 positions)
_LENGTH_SYMBOLS = ("L", "T")


def model_stats(source: Graph | ModelConfig, context: int = DEFAULT_CONTEXT) -> dict:
    """Return {model, phase, context, params, weight_bytes, flops_per_token, bytes_per_token,
    flops_per_token_by_class, layers} for a graph or a config (see the module docstring).

    A config is built as its batch-1 decode graph (prefill of `context` tokens for BERT).
    A graph's symbolic lengths L (cache) and T (sequence) are bound to `context`. Tied weights
    are one weight node and count once. `layers` has one entry per node reading weights:
    name (its first weight), op, shape, params and weight_bytes not counted by an earlier
    entry, flops_per_token, and `shares` naming the weight when it was counted before.
    """
    graph = _graph_of(source, context)
    bindings = _bindings(graph, context)
    tokens = graph.node("ids").type.numel(bindings)
    weights = graph.nodes_of(Op.WEIGHT)
    costs = {n.name: node_cost(graph, n, bindings) for n in graph.nodes if not n.op.is_source}
    by_class: Counter[str] = Counter()
    for name, cost in costs.items():
        by_class[graph.node(name).op.op_class.value] += cost.flops
    return {
        "model": graph.meta_dict.get("name", graph.name),
        "phase": graph.meta_dict.get("phase"),
        "context": context,
        "params": sum(w.type.numel() for w in weights),
        "weight_bytes": sum(storage_bytes(w.type) for w in weights),
        "flops_per_token": sum(c.flops for c in costs.values()) / tokens,
        "bytes_per_token": sum(c.bytes_total for c in costs.values()) / tokens,
        "flops_per_token_by_class": {k: v / tokens for k, v in sorted(by_class.items())},
        "layers": _layers(graph, costs, tokens),
    }


def source_stats(source: str, context: int = DEFAULT_CONTEXT) -> dict:
    """Return `model_stats` of a model source as `load_model` accepts it: a graph file is
    measured as written; a built-in name, config.json or checkpoint folder by its config
    (no weights are read)."""
    path = Path(source)
    if path.is_file() and path.suffix != ".json":
        return model_stats(read_graph(path), context)
    return model_stats(load_config(source), context)


def node_cost(graph: Graph, node: Node, bindings: dict[str, int]) -> Cost:
    """Return the registry cost of one node with symbolic dimensions bound."""
    ins = [graph.node(i).type for i in node.inputs]
    return node.op.cost(ins, node.type, node.attr_dict, bindings)


def _graph_of(source: Graph | ModelConfig, context: int) -> Graph:
    if isinstance(source, Graph):
        return source
    if source.is_decoder:
        return build_graph(source, "decode", 1)
    return build_graph(source, "prefill", 1, min(context, source.max_positions))


def _bindings(graph: Graph, context: int) -> dict[str, int]:
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise InputError(f"context length must be a positive integer, not {context!r}")
    if "ids" not in graph:
        raise InputError(f"graph {graph.name!r} has no input %ids to count tokens by")
    symbols = set().union(*(dim_symbols(d) for n in graph.nodes for d in n.type.shape))
    bindings = routing_bindings(graph, {symbol: context for symbol in _LENGTH_SYMBOLS})
    unknown = sorted(symbols - set(bindings))
    if unknown:
        raise InputError(f"graph {graph.name!r} has symbolic dim {unknown[0]!r}: only L, T")
    return bindings


def _layers(graph: Graph, costs: dict[str, Cost], tokens: int) -> list[dict]:
    counted: set[str] = set()
    layers = []
    for node in graph.nodes:
        read = [graph.node(i) for i in node.inputs if graph.node(i).op is Op.WEIGHT]
        if not read:
            continue
        new = [w for w in read if w.name not in counted]
        first_use = read[0].name not in counted
        counted.update(w.name for w in new)
        entry = {
            "name": read[0].name if first_use else node.name,
            "op": node.op.value,
            "shape": _shape(read[0].type),
            "params": sum(w.type.numel() for w in new),
            "weight_bytes": sum(storage_bytes(w.type) for w in new),
            "flops_per_token": costs[node.name].flops / tokens,
        }
        if not first_use:
            entry["shares"] = read[0].name
        layers.append(entry)
    return layers


def _shape(tensor_type: TensorType) -> list[int | str]:
    return list(tensor_type.shape)
