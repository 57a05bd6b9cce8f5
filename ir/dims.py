"""Symbolic tensor dimensions.

A dimension is an `int` or a `str` holding an integer expression over named symbols, such as
`"L"` (the KV-cache length of a decode graph) or `"L+1"`. Expressions use `+`, `-`, `*` and `//`
and are evaluated against bindings (`{"L": 512}`) when a concrete size is needed.
"""

from __future__ import annotations

import ast
import functools
import operator
import re

from sparseflow.ir.errors import InputError

Dim = int | str

_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
}


# No tensor dimension comes near 2**40 elements; a larger one is a typo or an attack.
MAX_DIM = 2**40


def parse_dim(text: str) -> Dim:
    """Return the dimension written as `text`: an int, or a checked symbolic expression."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        if int(text) > MAX_DIM:
            raise InputError(f"bad dimension {text[:20]}: more than 2**40")
        return int(text)
    if re.fullmatch(r"-\d+", text):
        raise InputError(f"bad dimension {text[:20]}: dimensions are not negative")
    _check_expression(text)
    return text


@functools.lru_cache(maxsize=4096)
def _check_expression(text: str) -> ast.expr:
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, RecursionError, MemoryError):
        raise InputError(f"bad dimension {text!r}: not an integer expression") from None
    for node in ast.walk(tree):
        allowed = (ast.BinOp, ast.Name, ast.Load, ast.Constant, *_OPERATORS)
        if not isinstance(node, allowed) or (
            isinstance(node, ast.Constant) and type(node.value) is not int
        ):
            raise InputError(f"bad dimension {text!r}: only names, integers, + - * // allowed")
    return tree


def eval_dim(dim: Dim, bindings: dict[str, int] | None = None) -> int:
    """Return the concrete size of `dim`; every symbol in it must be bound."""
    if isinstance(dim, int):
        return dim
    return _evaluate(_check_expression(dim), bindings or {}, dim)


def _evaluate(node: ast.expr, bindings: dict[str, int], text: str) -> int:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in bindings:
            raise InputError(f"dimension {text!r} needs a value for symbol {node.id!r}")
        return bindings[node.id]
    assert isinstance(node, ast.BinOp)
    left = _evaluate(node.left, bindings, text)
    right = _evaluate(node.right, bindings, text)
    return _OPERATORS[type(node.op)](left, right)


def dim_symbols(dim: Dim) -> set[str]:
    """Return the symbol names `dim` depends on."""
    return set() if isinstance(dim, int) else set(_SYMBOL.findall(dim))


def add_dims(a: Dim, b: Dim) -> Dim:
    """Return the dimension a + b, folded to an int when both are concrete."""
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if a == 0:
        return b
    if b == 0:
        return a
    return f"{a}+{b}"


def mul_dims(a: Dim, b: Dim) -> Dim:
    """Return the dimension a * b, folded to an int when both are concrete."""
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if a == 1:
        return b
    if b == 1:
        return a
    return f"({a})*({b})"


def same_dim(a: Dim, b: Dim) -> bool:
    """Return True when a and b are provably equal (identical after normalising spaces)."""
    return str(a).replace(" ", "") == str(b).replace(" ", "")
