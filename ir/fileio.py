"""Read YAML input files strictly (hardware models, recipes, spaces); write JSON strictly.

Safe loading only (no Python tags), duplicate keys refused, `1e9` read as a float (YAML 1.2),
files that are not UTF-8 or not YAML reported as `InputError` naming the file and line. Error
messages show values through `brief`, so a value built from anchors (a "billion laughs"
document) is never expanded into a message.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

from sparseflow.ir.errors import InputError

_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxdict, _BRIEF.maxtuple = 2, 4, 4, 4
_BRIEF.maxstring = _BRIEF.maxother = _BRIEF.maxlong = 40


def brief(value: object) -> str:
    """Return a short repr of `value` (bounded however large or deeply nested it is)."""
    return _BRIEF.repr(value)


class StrictLoader(yaml.SafeLoader):
    """Parse YAML safely, refusing duplicate keys and reading `1e9` as a float (YAML 1.2)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        """Build a mapping, raising on a key that appears twice."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {brief(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, file_label: str) -> Any:
    """Parse YAML text strictly; raise InputError naming the file and line on bad syntax."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "parse error"
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"{file_label}: malformed YAML{where}: {first_line}") from None
    except RecursionError:
        raise InputError(f"{file_label}: malformed YAML: nested too deeply") from None


def read_text(path: Path, file_label: str, what: str) -> str:
    """Return a UTF-8 text file's contents; InputError naming the file when it cannot be."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{file_label}: not UTF-8 text (byte {exc.start}): a {what} must be a YAML text file"
        ) from None
    except OSError as exc:
        raise InputError(f"{file_label}: cannot read {what}: {exc.strerror}") from None


def read_yaml(path: Path, file_label: str, what: str) -> Any:
    """Read and parse a YAML file strictly (see `parse_yaml`)."""
    return parse_yaml(read_text(path, file_label, what), file_label)


def non_finite_path(value: object, path: str = "") -> str | None:
    """Return the dotted path of the first NaN or infinite number in a JSON-like record."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(value)"
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list | tuple)
        else ()
    )
    for key, item in items:
        found = non_finite_path(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def dumps_strict(value: object, what: str) -> str:
    """Return `value` as strict JSON (indented); InputError naming the first non-finite field.

    JSON has no NaN or infinity: a non-finite result is an error, never `NaN` in the output.
    """
    bad = non_finite_path(value)
    if bad is not None:
        raise InputError(f"{what}: field '{bad}' is not a finite number; check the inputs")
    return json.dumps(value, indent=2, allow_nan=False)
