"""Build the frozen dataclasses of `schema.py` from plain mappings, checking every field.

Walks a dataclass's type hints and converts a parsed YAML mapping into it: nested mappings
become nested dataclasses, unknown and missing fields are errors, numbers are checked against
the field's declared `check`. Each section may carry `source:` and `assumption:` mappings from
field name to a note, and a `range:` mapping from a numeric field to its [low, high] band (a
figure known only within bounds); they are collected into flat dicts keyed by dotted field
path. Every failure raises `InputError` naming the file and the dotted field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any

from sparseflow.hw_models.schema import META_FIELDS, field_check
from sparseflow.ir.errors import InputError
from sparseflow.ir.fileio import brief

NOTE_KEYS = ("source", "assumption")
RANGE_KEY = "range"


class BuildContext:
    """Carry the file label and collect provenance notes while one model is built."""

    def __init__(self, file_label: str) -> None:
        self.file_label = file_label
        self.notes: dict[str, dict[str, str]] = {key: {} for key in NOTE_KEYS}
        self.ranges: dict[str, tuple[float, float]] = {}

    def error(self, path: str, problem: str) -> InputError:
        """Return an InputError naming the file and the dotted field at fault."""
        # Field names come from the file: escape control characters to keep one line.
        shown = path.encode("unicode_escape").decode("ascii")
        where = f"field '{shown}'" if path else "top level"
        return InputError(f"{self.file_label}: {where}: {problem}")


def join(prefix: str, name: str) -> str:
    """Return the dotted path of `name` inside section `prefix`."""
    return f"{prefix}.{name}" if prefix else name


def data_fields(cls: type) -> list[dataclasses.Field]:
    """Return the fields of a schema dataclass that come from YAML (not bookkeeping)."""
    return [f for f in dataclasses.fields(cls) if f.name not in META_FIELDS]


def build_section(cls: type, data: Any, prefix: str, ctx: BuildContext) -> dict[str, Any]:
    """Convert mapping `data` into keyword arguments for dataclass `cls`; check every field."""
    if not isinstance(data, Mapping):
        raise ctx.error(prefix, f"expected a mapping, got {type(data).__name__}")
    fields = data_fields(cls)
    names = {f.name for f in fields}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key in NOTE_KEYS:
            collect_notes(data[key], names, join(prefix, str(key)), prefix, ctx)
        elif key not in names and key != RANGE_KEY:
            known = ", ".join(sorted(names))
            raise ctx.error(join(prefix, str(key)), f"unknown field (known: {known})")
    kwargs: dict[str, Any] = {}
    for f in fields:
        path = join(prefix, f.name)
        if f.name not in data and _has_default(f):
            continue  # an optional section or field: its default applies
        if f.name not in data:
            raise ctx.error(path, "missing field")
        kwargs[f.name] = convert(data[f.name], hints[f.name], f.metadata, path, ctx)
    if RANGE_KEY in data:
        collect_ranges(data[RANGE_KEY], kwargs, prefix, ctx)
    return kwargs


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def collect_ranges(ranges: Any, values: dict[str, Any], prefix: str, ctx: BuildContext) -> None:
    """Record a section's `range:` bands; each must be [low, high] around its field's value."""
    path = join(prefix, RANGE_KEY)
    if not isinstance(ranges, Mapping):
        raise ctx.error(path, "expected a mapping from field name to [low, high]")
    for name, band in ranges.items():
        where = join(path, str(name))
        value = values.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ctx.error(where, "range for a field that is not a number of this section")
        if not (isinstance(band, list) and len(band) == 2):
            raise ctx.error(where, f"expected [low, high], got {band!r:.40}")
        low, high = (to_finite_float(reject_bool(v, where, ctx), where, ctx) for v in band)
        if not low <= value <= high:
            raise ctx.error(where, f"[{low}, {high}] must contain the value {value}")
        ctx.ranges[join(prefix, name)] = (low, high)


def reject_bool(value: Any, path: str, ctx: BuildContext) -> int | float:
    """Return `value` if it is a number (not a bool); raise naming `path` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.error(path, f"expected a number, got {value!r:.40}")
    return value


def collect_notes(notes: Any, names: set[str], path: str, prefix: str, ctx: BuildContext) -> None:
    """Record a section's `source:`/`assumption:` notes; each must name a field of it."""
    if not isinstance(notes, Mapping):
        raise ctx.error(path, "expected a mapping from field name to note")
    kind = path.rsplit(".", 1)[-1]
    for name, note in notes.items():
        if name not in names:
            raise ctx.error(join(path, str(name)), "note for an unknown field")
        if not isinstance(note, str) or not note.strip():
            raise ctx.error(join(path, str(name)), "note must be a non-empty string")
        ctx.notes[kind][join(prefix, name)] = note.strip()


def convert(value: Any, hint: Any, metadata: Any, path: str, ctx: BuildContext) -> Any:
    """Convert one YAML value to the type `hint` names, applying the field's check."""
    if dataclasses.is_dataclass(hint):
        return hint(**build_section(hint, value, path, ctx))
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else convert(value, options[0], metadata, path, ctx)
    if origin is tuple:
        return convert_tuple(value, typing.get_args(hint)[0], metadata, path, ctx)
    if isinstance(hint, type) and issubclass(hint, Enum):
        allowed = [m.value for m in hint]
        if value not in allowed:
            raise ctx.error(path, f"expected one of {allowed}, got {brief(value)}")
        return hint(value)
    scalar = convert_scalar(value, hint, path, ctx)
    check_value(scalar, field_check(metadata), path, ctx)
    return scalar


def convert_tuple(value: Any, item: type, metadata: Any, path: str, ctx: BuildContext) -> tuple:
    """Convert a non-empty YAML list into a tuple of `item` values."""
    if not isinstance(value, list) or not value:
        raise ctx.error(path, f"expected a non-empty list, got {brief(value)}")
    return tuple(convert(v, item, metadata, f"{path}[{i}]", ctx) for i, v in enumerate(value))


# Integers beyond 2**53 lose exactness as floats, and no device count comes near it.
MAX_EXACT_INT = 2**53


def convert_scalar(value: Any, hint: type, path: str, ctx: BuildContext) -> Any:
    """Convert a YAML scalar to bool, int, float or str, rejecting anything else."""
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_EXACT_INT:
                digits = len(str(abs(value)))
                raise ctx.error(path, f"must be at most 2**53, got a {digits}-digit number")
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return to_finite_float(value, path, ctx)
    elif hint is str:
        if isinstance(value, str) and value.strip():
            return value
    else:
        raise ctx.error(path, f"schema type {hint!r} is not supported")
    return reject_type(value, hint, path, ctx)


def reject_type(value: Any, hint: type, path: str, ctx: BuildContext) -> typing.NoReturn:
    """Raise the wrong-type error for `value`."""
    wanted = {bool: "true/false", int: "an integer", float: "a number", str: "a text"}[hint]
    raise ctx.error(path, f"expected {wanted}, got {type(value).__name__} {brief(value)}")


def to_finite_float(value: int | float, path: str, ctx: BuildContext) -> float:
    """Return `value` as a finite float or raise."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ctx.error(path, f"expected a finite number, got {brief(value)}")
    return number


def check_value(value: Any, check: str | None, path: str, ctx: BuildContext) -> None:
    """Apply a field's declared check (positive, non_negative, fraction, unit_interval)."""
    if check is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    if check == "positive" and not value > 0:
        raise ctx.error(path, f"must be > 0, got {value}")
    if check == "non_negative" and not value >= 0:
        raise ctx.error(path, f"must be >= 0, got {value}")
    if check == "fraction" and not 0 < value <= 1:
        raise ctx.error(path, f"must lie in (0, 1], got {value}")
    if check == "clock" and not 1e6 <= value <= 1e10:
        raise ctx.error(path, f"must lie in 1e6..1e10 Hz (1 MHz to 10 GHz), got {value:g}")
    if check == "unit_interval" and not 0 <= value <= 1:
        raise ctx.error(path, f"must lie in [0, 1], got {value}")


def to_plain(obj: Any, prefix: str, notes: Mapping[str, Mapping[str, Any]]) -> Any:
    """Return a dataclass section as plain YAML-ready data, re-nesting its provenance notes.

    `notes` maps each of NOTE_KEYS and RANGE_KEY to {dotted path: note or (low, high)}.
    """
    if not dataclasses.is_dataclass(obj):
        if isinstance(obj, Enum):
            return obj.value
        return list(obj) if isinstance(obj, tuple) else obj
    out: dict[str, Any] = {}
    for f in data_fields(type(obj)):
        out[f.name] = to_plain(getattr(obj, f.name), join(prefix, f.name), notes)
    for key in (*NOTE_KEYS, RANGE_KEY):
        mine = {
            path.rsplit(".", 1)[-1]: list(note) if key == RANGE_KEY else note
            for path, note in notes.get(key, {}).items()
            if path.rpartition(".")[0] == prefix
        }
        if mine:
            out[key] = mine
    return out
