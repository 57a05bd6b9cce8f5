"""Read and write the text form of a graph (the printed form round-trips).

File format: the output of `str(graph)`, one graph after another (a compiled model's
`graph` file holds its prefill and decode graphs):
    graph NAME {meta as JSON} {
      %value : TYPE = op(%a, %b) {attrs as JSON}  # users=N
      ...
      return %out1, %out2
    }
Comments after `#` are ignored. Weights are not part of the text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sparseflow.ir.errors import InputError, SparseflowError
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node, make_attrs
from sparseflow.ir.ops import get_op
from sparseflow.ir.types import parse_type

_HEADER = re.compile(r"graph (\S+) (\{.*\}) \{$")
_NODE = re.compile(r"%(\S+) : (.+?) = (\w+)\(([^)]*)\)(?: (\{.*\}))?$")


def write_graph(graph: Graph, path: str | Path) -> None:
    """Write the graph's text form to `path`."""
    Path(path).write_text(str(graph) + "\n")


def read_graphs(path: str | Path) -> list[Graph]:
    """Read every graph of a graph file; raise InputError naming the file on any problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read graph file ({err})") from None
    return parse_graphs(text, source=str(path))


def read_graph(path: str | Path) -> Graph:
    """Read a file holding one graph."""
    graphs = read_graphs(path)
    if len(graphs) != 1:
        raise InputError(f"{path}: holds {len(graphs)} graphs, one was expected")
    return graphs[0]


def parse_graphs(text: str, source: str = "<text>") -> list[Graph]:
    """Parse a text holding one or more graphs, each verified."""
    blocks: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("graph ") or not blocks:
            blocks.append([])
        blocks[-1].append(raw)
    graphs = [parse_graph("\n".join(block), source) for block in blocks if "".join(block).strip()]
    if not graphs:
        raise InputError(f"{source}: not a sparseflow graph (empty)")
    return graphs


def parse_graph(text: str, source: str = "<text>") -> Graph:
    """Parse the text form of a graph and verify it."""
    lines = [(i + 1, line.split("#", 1)[0].strip()) for i, line in enumerate(text.splitlines())]
    lines = [(no, line) for no, line in lines if line]
    if len(lines) < 2:
        raise InputError(f"{source}: not a sparseflow graph (too short)")
    try:
        name, meta = _parse_header(lines[0][1])
        if lines[-1][1] != "}" or not lines[-2][1].startswith("return"):
            raise InputError("the graph must end with 'return ...' and '}'")
        nodes = [_parse_node(line) for _, line in lines[1:-2]]
        outputs = _parse_values(lines[-2][1][len("return") :])
    except (InputError, SparseflowError) as err:
        raise InputError(f"{source}: {err}") from None
    graph = Graph(name, tuple(nodes), outputs, make_attrs(meta))
    try:
        graph.verify()
    except InputError as err:
        raise InputError(f"{source}: {err}") from None
    return graph


def _parse_header(line: str) -> tuple[str, dict]:
    match = _HEADER.fullmatch(line)
    if not match:
        raise InputError("first line must be 'graph NAME {meta} {'")
    meta = _json_object(match.group(2), "graph metadata")
    return match.group(1), meta


def _json_object(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"bad {what} JSON ({err.msg})") from None
    except RecursionError:
        raise InputError(f"bad {what} JSON (nested too deeply)") from None
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object")
    return value


def _parse_values(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in names if not v.startswith("%")]
    if bad:
        raise InputError(f"value {bad[0]!r} does not start with '%'")
    return tuple(v[1:] for v in names)


def _parse_node(line: str) -> Node:
    match = _NODE.fullmatch(line)
    if not match:
        raise InputError(f"cannot parse node line {line!r}")
    name, type_text, op_name, args, attrs_text = match.groups()
    attrs = _json_object(attrs_text, f"attributes of %{name}") if attrs_text else {}
    try:
        frozen = make_attrs(attrs)
    except InputError as err:
        raise InputError(f"node %{name}: {err}") from None
    return Node(name, get_op(op_name), _parse_values(args), parse_type(type_text), frozen)
