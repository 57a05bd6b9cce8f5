"""The reference interpreter: runs any graph with every op's numpy reference.

This is the definition of what a graph computes; backends and passes are tested against it.
Symbolic dimensions are bound from the shapes of the inputs given at run time.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sparseflow.ir.dims import dim_symbols, eval_dim
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node
from sparseflow.ir.weights import Weights


class Interpreter:
    """Run a graph repeatedly on numpy inputs; dense weight values are decoded once."""

    def __init__(self, graph: Graph, weights: Weights | None = None) -> None:
        self.graph = graph
        self.weights = graph.weights if weights is None else weights
        self._dense: dict[str, np.ndarray] = {}

    def weight(self, name: str) -> np.ndarray:
        """Return the dense float32 value of weight `name`."""
        if name not in self._dense:
            self._dense[name] = self.weights.dense(name)
        return self._dense[name]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return the graph outputs for these inputs (one array per graph input name)."""
        bind_inputs(self.graph, inputs)
        values: dict[str, np.ndarray] = {}
        remaining = self.graph.users()
        for node in self.graph.nodes:
            values[node.name] = self._evaluate(node, values, inputs)
            for used in node.inputs:
                remaining[used] -= 1
                if remaining[used] == 0:
                    del values[used]
        return {name: values[name] for name in self.graph.outputs}

    def _evaluate(
        self, node: Node, values: dict[str, np.ndarray], inputs: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        if node.op.name == "input":
            return np.asarray(inputs[node.name])
        if node.op.name == "weight":
            return self.weight(node.name)
        try:
            return node.op.reference([values[i] for i in node.inputs], node.attr_dict)
        except InputError as err:
            raise InputError(f"node %{node.name} ({node.op.name}): {err}") from None


def bind_inputs(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Check input names and shapes against the graph; return the symbol bindings."""
    bindings: dict[str, int] = {}
    for node in graph.nodes_of("input"):
        if node.name not in inputs:
            raise InputError(f"graph {graph.name!r} needs input %{node.name} : {node.type}")
        actual = np.shape(inputs[node.name])
        if len(actual) != node.type.rank:
            raise InputError(f"input %{node.name} has shape {list(actual)}, expected {node.type}")
        for dim, size in zip(node.type.shape, actual, strict=True):
            if isinstance(dim, str) and dim_symbols(dim) == {dim} and dim not in bindings:
                bindings[dim] = int(size)
    for node in graph.nodes_of("input"):
        actual = np.shape(inputs[node.name])
        for dim, size in zip(node.type.shape, actual, strict=True):
            if eval_dim(dim, bindings) != size:
                raise InputError(
                    f"input %{node.name} has shape {list(actual)}, expected {node.type} "
                    f"with {bindings}"
                )
    return bindings


def run_reference(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run `graph` once with its own weight table and return its outputs."""
    return Interpreter(graph).run(inputs)
