"""Graphs: an ordered tuple of immutable nodes, named outputs, metadata and a weight table.

Nodes are kept in topological order (a node only reads values defined above it). `GraphBuilder`
runs each op's type inference as nodes are added; `Graph.verify` re-checks every invariant and
names the node that breaks one. `str(graph)` prints one line per node, exact enough to diff.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sparseflow.ir.errors import GraphError
from sparseflow.ir.formats import PackedWeight
from sparseflow.ir.node import NAME_PATTERN, AttrValue, Node, make_attrs
from sparseflow.ir.ops import Op, storage_bytes
from sparseflow.ir.types import TensorType
from sparseflow.ir.weights import Weights

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class Graph:
    """A model graph: nodes in topological order, its outputs, metadata and weights."""

    name: str
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    meta: tuple[tuple[str, AttrValue], ...] = ()
    weights: Weights = field(default_factory=Weights, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {n.name: n for n in self.nodes})

    def node(self, name: str) -> Node:
        """Return the node defining value `name`."""
        try:
            return self._index[name]  # type: ignore[attr-defined]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no value %{name}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._index  # type: ignore[attr-defined]

    @property
    def meta_dict(self) -> dict[str, AttrValue]:
        """Return the metadata (model family, phase, config numbers) as a dict."""
        return dict(self.meta)

    def nodes_of(self, op: Op) -> list[Node]:
        """Return the nodes computed by `op`, in order."""
        return [n for n in self.nodes if n.op is op]

    def stored_bytes(self, name: str) -> int:
        """Return the bytes weight `name` occupies: its arrays' when it holds a value, else
        its type's packed layout (`storage_bytes`)."""
        if name in self.weights:
            value = self.weights[name]
            return value.nbytes if isinstance(value, PackedWeight) else int(value.nbytes)
        return storage_bytes(self.node(name).type)

    def users(self) -> Counter[str]:
        """Return how many times each value is read (graph outputs count as a use)."""
        counts: Counter[str] = Counter()
        for node in self.nodes:
            counts.update(node.inputs)
        counts.update(self.outputs)
        return counts

    def with_nodes(self, nodes: Iterable[Node], weights: Weights | None = None) -> Graph:
        """Return a copy with new nodes (and optionally a new weight table)."""
        return replace(self, nodes=tuple(nodes), weights=weights or self.weights)

    def verify(self) -> None:
        """Check names, order, arity and types; raise GraphError naming the first bad node."""
        seen: dict[str, TensorType] = {}
        for node in self.nodes:
            _check_name(node.name)
            if node.name in seen:
                raise GraphError(f"node %{node.name} is defined twice")
            missing = [i for i in node.inputs if i not in seen]
            if missing:
                raise GraphError(f"node %{node.name} reads %{missing[0]}, not defined before it")
            if not node.op.is_source:
                inferred = node.op.infer_type([seen[i] for i in node.inputs], node.attrs, node.name)
                if inferred != node.type:
                    raise GraphError(
                        f"node %{node.name}: type {node.type} differs from inferred {inferred}"
                    )
            seen[node.name] = node.type
        for out in self.outputs:
            if out not in seen:
                raise GraphError(f"graph output %{out} is not defined")

    def __str__(self) -> str:
        users = self.users()
        lines = [f"graph {self.name} {json.dumps(self.meta_dict)} {{"]
        lines += [f"  {n.format(users[n.name])}" for n in self.nodes]
        lines.append("  return " + ", ".join(f"%{o}" for o in self.outputs))
        lines.append("}")
        return "\n".join(lines)

    def to_networkx(self) -> nx.DiGraph:
        """Return a DiGraph with one vertex per node (attrs: op, type) and data-flow edges."""
        import networkx as nx  # here only: few commands need it, and it is slow to import

        dag = nx.DiGraph()
        for node in self.nodes:
            dag.add_node(node.name, op=node.op.value, type=str(node.type), attrs=node.attr_dict)
            for src in node.inputs:
                dag.add_edge(src, node.name)
        return dag


def shape_only(graph: Graph) -> Graph:
    """Return `graph` without weight values (types are all an estimate needs)."""
    return replace(graph, weights=Weights())


def infer_types(nodes: Iterable[Node]) -> list[Node]:
    """Re-run type inference in order, so that retyped nodes' types flow to their users."""
    types: dict[str, TensorType] = {}
    out = []
    for node in nodes:
        if not node.op.is_source:
            inferred = node.op.infer_type([types[i] for i in node.inputs], node.attrs, node.name)
            node = replace(node, type=inferred)
        types[node.name] = node.type
        out.append(node)
    return out


def _check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise GraphError(f"bad value name %{name}: use letters, digits, '_' and '.'")


class GraphBuilder:
    """Build a graph node by node, inferring each node's type as it is added."""

    def __init__(self, name: str, meta: Mapping[str, AttrValue] | None = None) -> None:
        self.name = name
        self.meta = dict(meta or {})
        self._nodes: list[Node] = []
        self._types: dict[str, TensorType] = {}
        self._weights: dict[str, object] = {}
        self._counter = Counter[str]()

    def _fresh(self, base: str) -> str:
        self._counter[base] += 1
        count = self._counter[base]
        name = base if count == 1 and base not in self._types else f"{base}.{count - 1}"
        while name in self._types:
            self._counter[base] += 1
            name = f"{base}.{self._counter[base] - 1}"
        return name

    def _append(self, node: Node) -> str:
        _check_name(node.name)
        if node.name in self._types:
            raise GraphError(f"node %{node.name} is defined twice")
        self._nodes.append(node)
        self._types[node.name] = node.type
        return node.name

    def type_of(self, value: str) -> TensorType:
        """Return the type of an already defined value."""
        return self._types[value]

    def input(self, name: str, tensor_type: TensorType) -> str:
        """Add a graph input and return its value name."""
        return self._append(Node(name, Op.INPUT, (), tensor_type))

    def weight(self, name: str, tensor_type: TensorType, role: str, value: object = None) -> str:
        """Add a weight (role: linear, embedding, norm, bias) and optionally its value."""
        if name in self._types:
            return name
        node = Node(name, Op.WEIGHT, (), tensor_type, make_attrs({"role": role}))
        if value is not None:
            self._weights[name] = value
        return self._append(node)

    def add(self, op: Op, inputs: Iterable[str], name: str | None = None, **attrs) -> str:
        """Add `op(inputs)` with attributes; return the new value's name."""
        inputs = tuple(inputs)
        frozen = make_attrs(attrs)
        unknown = [i for i in inputs if i not in self._types]
        if unknown:
            raise GraphError(f"{op} reads %{unknown[0]}, which is not defined")
        value_name = name or self._fresh(op.value)
        out_type = op.infer_type([self._types[i] for i in inputs], frozen, value_name)
        return self._append(Node(value_name, op, inputs, out_type, frozen))

    def build(self, outputs: Iterable[str]) -> Graph:
        """Return the verified graph with the given outputs."""
        graph = Graph(
            self.name,
            tuple(self._nodes),
            tuple(outputs),
            make_attrs(self.meta),
            Weights(self._weights),  # type: ignore[arg-type]
        )
        graph.verify()
        return graph
