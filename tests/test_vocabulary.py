"""One vocabulary per concept: ops are named by `Op` handles, never by their printed names.

Outside the registry (ir/ops*.py) and the graph parser (ir/serialize.py), no source file may
compare an op's name with a string, select nodes by a name string, build a node from a name
string, or hold op names in a string collection. The checker is tested on snippets that break
each rule, so it can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sparseflow.ir.ops import Op

ROOT = Path(__file__).resolve().parents[1]
EXEMPT = {"ir/ops.py", "ir/ops_linear.py", "ir/ops_math.py", "ir/ops_tensor.py", "ir/serialize.py"}
OP_NAMES = {op.value for op in Op}


def _is_op_name(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in OP_NAMES


def _mentions_op(node: ast.AST) -> bool:
    """Return whether an expression is an op or its name: `x.op`, `x.op.name`, `op`, ..."""
    while isinstance(node, ast.Attribute) and node.attr in ("name", "value"):
        node = node.value
    if isinstance(node, ast.Attribute):
        return node.attr in ("op", "op_name")
    return isinstance(node, ast.Name) and node.id in ("op", "op_name")


def _string_collection_of_ops(node: ast.AST) -> bool:
    items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", [])
    return len(items) >= 2 and all(item is not None and _is_op_name(item) for item in items)


def violations(source: str) -> list[str]:
    """Return `line: rule` for every place `source` names an op by a string."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute) and node.attr == "name" and _mentions_op(node.value):
            found.append(f"{line}: reads an op's name")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            strings = [o for o in operands if _is_op_name(o) or _string_collection_of_ops(o)]
            if strings and any(_mentions_op(o) for o in operands):
                found.append(f"{line}: compares an op with a name string")
        elif isinstance(node, ast.Call):
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else None
            callee = callee or (node.func.id if isinstance(node.func, ast.Name) else None)
            if callee == "get_op":
                found.append(f"{line}: looks an op up by name (only the parser may)")
            elif callee in ("nodes_of", "add") and node.args and _is_op_name(node.args[0]):
                found.append(f"{line}: {callee}() of an op name string")
        elif _string_collection_of_ops(node):
            found.append(f"{line}: a collection of op name strings")
    return found


def source_files() -> list[Path]:
    skip = {"tests", ".venv", "build"}
    return [
        p
        for p in sorted(ROOT.rglob("*.py"))
        if not skip & set(p.relative_to(ROOT).parts)
        and p.relative_to(ROOT).as_posix() not in EXEMPT
    ]


def test_no_op_is_named_by_a_string_outside_the_registry_and_parser() -> None:
    files = source_files()
    assert len(files) > 50
    bad = [f"{p.relative_to(ROOT)}:{v}" for p in files for v in violations(p.read_text())]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "snippet",
    [
        'if node.op.name == "linear": pass',
        'x = [n for n in graph.nodes if n.op.name in ("matmul", "softmax")]',
        'if op == "rope": pass',
        'if node.op.value != "gelu": pass',
        'nodes = graph.nodes_of("weight")',
        'builder.add("linear", [x, w])',
        'cast = get_op("cast")',
        'FUSABLE = {"silu", "gelu", "add"}',
        'SFU = {"rmsnorm": 1, "layernorm": 2}',
    ],
)
def test_the_checker_catches_each_rule(snippet: str) -> None:
    assert violations(snippet)


def test_the_checker_accepts_handles_and_other_strings() -> None:
    ok = [
        "if node.op is Op.LINEAR: pass",
        "FUSABLE = {Op.SILU, Op.GELU}",
        'role = node.attr("role") == "linear"',  # a weight's role, not an op
        'ACTS = ("silu", "relu", "gelu_tanh")',  # config activation names
    ]
    assert [violations(s) for s in ok] == [[]] * len(ok)
