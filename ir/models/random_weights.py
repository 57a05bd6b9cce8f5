"""Seeded random weights for shape-only graphs, so functional runs work without checkpoints.

Each weight's values depend only on (seed, weight name, shape), not on the order of the graph
or on which other weights exist, and are generated lazily on first use (a 7B model's table
costs nothing until a weight is read). Distributions by role:
linear [N, K]: normal, std 1/sqrt(K) (activations keep their scale through a layer);
embedding: standard normal; norm weights: 1 + 0.1 * normal; biases: 0.1 * normal.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from sparseflow.ir.dims import eval_dim
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op


def random_weights(graph: Graph, seed: int = 0) -> Graph:
    """Return `graph` with every weight node given a deterministic random value; weights the
    graph already holds are kept."""
    entries = {
        node.name: _generator(node, seed)
        for node in graph.nodes_of(Op.WEIGHT)
        if node.name not in graph.weights
    }
    return graph.with_nodes(graph.nodes, graph.weights.replace(entries))


def random_weight(node: Node, seed: int = 0) -> np.ndarray:
    """Return the random float32 value of one weight node (see the module docstring)."""
    shape = tuple(eval_dim(d) for d in node.type.shape)
    rng = np.random.default_rng([seed, zlib.crc32(node.name.encode())])
    values = rng.standard_normal(shape, dtype=np.float32)
    role = node.attr("role")
    if role == "linear" and len(shape) == 2:
        return values / np.float32(np.sqrt(shape[1]))
    if role == "norm":
        return 1.0 + np.float32(0.1) * values
    if role == "bias":
        return np.float32(0.1) * values
    return values


def _generator(node: Node, seed: int) -> Callable[[], np.ndarray]:
    return lambda: random_weight(node, seed)
