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

    `new_type(name, type)` gives the new type and raises InputError when the weight cannot
    take the pass; it runs with and without values, so a recipe is checked the same way on
    shape-only and on real models. With values, `new_value(name, value)` then gives the
    packed weight (unless `ctx.reuse` already holds it), whose storage must be the type's.
    """
    chosen = set(layers)
    updates: dict[str, PackedWeight] = {}
    nodes = []
    for node in graph.nodes:
        if node.name in chosen:
            expected = new_type(node.name, node.type)
            if node.name in graph.weights:
                packed = reused(ctx, node.name) or new_value(node.name, graph.weights[node.name])
                check_storage(node.name, expected, packed.type)
                updates[node.name] = packed
                expected = packed.type
            node = replace(node, type=expected)
        nodes.append(node)
    return graph.with_nodes(nodes, graph.weights.replace(updates))


def check_storage(name: str, expected: TensorType, made: TensorType) -> None:
    """Check a packed weight has the storage its type predicts (the density may differ: a
    pass measures what it kept); a mismatch is a bug in the pass."""
    pattern = None if expected.sparse is None else replace(expected.sparse, density=0.0)
    made_pattern = None if made.sparse is None else replace(made.sparse, density=0.0)
    same = (expected.shape, expected.dtype, expected.quant, pattern)
    if same != (made.shape, made.dtype, made.quant, made_pattern):
        raise RuntimeError(f"weight {name}: packed as {made}, its type says {expected}")


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
