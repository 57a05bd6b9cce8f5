"""Immutable IR nodes and their attributes.

A node names the value it defines, the registered op that computes it, the values it reads and
its inferred type. Attributes are a sorted tuple of (key, value) pairs, so nodes are hashable
and print deterministically. Values are int, float, str, bool, None or tuples of those.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparseflow.ir.errors import GraphError
from sparseflow.ir.types import TensorType

if TYPE_CHECKING:
    from sparseflow.ir.ops import Op

AttrValue = int | float | str | bool | None | tuple
Attrs = tuple[tuple[str, AttrValue], ...]

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def make_attrs(values: dict[str, AttrValue]) -> Attrs:
    """Return attributes as a sorted tuple of pairs, lists turned into tuples."""
    return tuple(sorted((k, _freeze(v)) for k, v in values.items()))


def _freeze(value: object) -> AttrValue:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if value is None or isinstance(value, int | float | str | bool):
        return value
    raise GraphError(f"attribute value {value!r} is not an int, float, str, bool or tuple")


@dataclass(frozen=True)
class Node:
    """One value of the graph: `name = op(inputs) {attrs}` with its type."""

    name: str
    op: Op
    inputs: tuple[str, ...]
    type: TensorType
    attrs: Attrs = ()

    def attr(self, key: str, default: AttrValue = None) -> AttrValue:
        """Return attribute `key`, or `default` when the node has none."""
        return dict(self.attrs).get(key, default)

    @property
    def attr_dict(self) -> dict[str, AttrValue]:
        """Return the attributes as a dict."""
        return dict(self.attrs)

    def format(self, users: int | None = None) -> str:
        """Return the one-line printed form `%name : type = op(%a, %b) {attrs}  # users=N`."""
        args = ", ".join(f"%{i}" for i in self.inputs)
        text = f"%{self.name} : {self.type} = {self.op.value}({args})"
        if self.attrs:
            text += " " + json.dumps(self.attr_dict)
        if users is not None:
            text += f"  # users={users}"
        return text
