"""The reference interpreter: runs any graph with every op's numpy reference.

This is the definition of what a graph computes; backends and passes are tested against it.
Symbolic dimensions are bound from the shapes of the inputs given at run time.

Backends reuse the walk: `kernels` maps a node name to a callable that replaces the node's
numpy reference. It receives the node's non-weight inputs in order (a kernel owns its weights
in its own storage), so a weight is decoded to dense float32 only when some node left to the
reference reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from sparseflow.ir.dims import dim_symbols, eval_dim
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op
from sparseflow.ir.weights import Weights

Kernel = Callable[[list[np.ndarray]], np.ndarray]


class Interpreter:
    """Run a graph repeatedly on numpy inputs; dense weight values are decoded once."""

    def __init__(
        self,
        graph: Graph,
        weights: Weights | None = None,
        kernels: Mapping[str, Kernel] | None = None,
    ) -> None:
        self.graph = graph
        self.weights = graph.weights if weights is None else weights
        self.kernels = dict(kernels or {})
        unknown = sorted(set(self.kernels) - {n.name for n in graph.nodes})
        if unknown:
            raise InputError(f"kernel given for %{unknown[0]}, which is not a node of the graph")
        self._weight_names = {n.name for n in graph.nodes_of(Op.WEIGHT)}
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
            if node.op is not Op.WEIGHT:
                values[node.name] = self._evaluate(node, values, inputs)
            for used in node.inputs:
                remaining[used] -= 1
                if remaining[used] == 0:
                    values.pop(used, None)
        return {name: self._value(name, values) for name in self.graph.outputs}

    def _value(self, name: str, values: dict[str, np.ndarray]) -> np.ndarray:
        return self.weight(name) if name in self._weight_names else values[name]

    def _evaluate(
        self, node: Node, values: dict[str, np.ndarray], inputs: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        if node.op is Op.INPUT:
            return np.asarray(inputs[node.name])
        kernel = self.kernels.get(node.name)
        try:
            if kernel is not None:
                return kernel([values[i] for i in node.inputs if i not in self._weight_names])
            return node.op.reference([self._value(i, values) for i in node.inputs], node.attr_dict)
        except InputError as err:
            raise InputError(f"node %{node.name} ({node.op}): {err}") from None


def bind_inputs(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Check input names and shapes against the graph; return the symbol bindings."""
    bindings: dict[str, int] = {}
    for node in graph.nodes_of(Op.INPUT):
        if node.name not in inputs:
            raise InputError(f"graph {graph.name!r} needs input %{node.name} : {node.type}")
        actual = np.shape(inputs[node.name])
        if len(actual) != node.type.rank:
            raise InputError(f"input %{node.name} has shape {list(actual)}, expected {node.type}")
        for dim, size in zip(node.type.shape, actual, strict=True):
            if isinstance(dim, str) and dim_symbols(dim) == {dim} and dim not in bindings:
                bindings[dim] = int(size)
    for node in graph.nodes_of(Op.INPUT):
        actual = np.shape(inputs[node.name])
        for dim, size in zip(node.type.shape, actual, strict=True):
            if eval_dim(dim, bindings) != size:
                raise InputError(
                    f"input %{node.name} has shape {list(actual)}, expected {node.type} "
                    f"with {bindings}"
                )
    return bindings


def prefill_inputs(graph: Graph, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Return the inputs of a prefill graph for token ids [B, T]: ids, positions 0..T-1, and
    segment ids 0 for encoders that take `token_types`."""
    inputs = {"ids": ids, "pos": np.arange(ids.shape[1])}
    names = {n.name for n in graph.nodes_of(Op.INPUT)}
    if "token_types" in names:
        inputs["token_types"] = np.zeros_like(ids)
    missing = sorted(names - set(inputs))
    if missing:
        raise InputError(f"graph {graph.name!r}: cannot feed input %{missing[0]} from token ids")
    return inputs


def run_reference(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run `graph` once with its own weight table and return its outputs."""
    return Interpreter(graph).run(inputs)
