"""Helpers for passes that rewrite weights: change a weight node's type and its stored value.

A compressed weight lives in the graph's weight table as a `PackedWeight`; the weight node's
type is the PackedWeight's type (shape, stored dtype, sparse format, quantization). On a
shape-only graph (no values) only the type changes, so storage is still accounted exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from sparseflow.ir.formats import PackedWeight
from sparseflow.ir.graph import Graph
from sparseflow.ir.types import TensorType
from sparseflow.ir.weights import WeightValue
from sparseflow.passes.manager import PassContext

ValueFn = Callable[[str, WeightValue], PackedWeight]
TypeFn = Callable[[str, TensorType], TensorType]


def rewrite_weights(
    graph: Graph,
    layers: tuple[str, ...],
    ctx: PassContext,
    new_value: ValueFn,
    new_type: TypeFn,
) -> Graph:
    """Return a graph whose selected weights are rewritten.

    With values, `new_value(name, value)` gives the packed weight (and with it the type),
    unless `ctx.reuse` already holds it; without values, `new_type(name, type)` gives the type.
    """
    chosen = set(layers)
    updates: dict[str, PackedWeight] = {}
    nodes = []
    for node in graph.nodes:
        if node.name in chosen:
            if node.name in graph.weights:
                packed = reused(ctx, node.name) or new_value(node.name, graph.weights[node.name])
                updates[node.name] = packed
                node = replace(node, type=packed.type)
            else:
                node = replace(node, type=new_type(node.name, node.type))
        nodes.append(node)
    return graph.with_nodes(nodes, graph.weights.replace(updates))


def reused(ctx: PassContext, name: str) -> PackedWeight | None:
    """Return the packed weight `name` that this pass made for another phase, if any."""
    if ctx.reuse is None or name not in ctx.reuse:
        return None
    value = ctx.reuse[name]
    return value if isinstance(value, PackedWeight) else None


def dense_values(value: WeightValue) -> np.ndarray:
    """Return the float32 values a stored weight represents."""
    if isinstance(value, PackedWeight):
        return value.to_dense()
    return np.asarray(value, dtype=np.float32)
