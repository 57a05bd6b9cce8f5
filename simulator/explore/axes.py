"""Axes of a design space: what a key names, and the discrete values it takes.

An axis key is one of
    target                      base hardware models (names or YAML paths)
    recipe                      recipes (built-in names, YAML paths, or {sparsity:, quant:}
                                shorthands as the CLI's --sparsity/--quant take them)
    recipe.<pass>.<option>      one option of every step of that pass in the recipe(s)
    workload.prompt|gen|batch   request sizes
    parallel.devices|tp|pp|micro_batches  the mapping onto devices, resolved as the CLI's
                                --devices/--tp/--pp/--micro-batches (the target's own
                                values stand for those no axis sets)
    <dotted hardware field>     e.g. core.dsp_chains, hbm.channels, clock_hz
and its values are a list, `{range: [lo, hi], step: s}` (lo, lo + s, ... up to hi) or
`{range: [lo, hi], num: n}` (n evenly spaced values; `log: true` spaces them geometrically;
integer fields round them and drop repeats). Every value is checked here, before any
evaluation, with the loader's and the pass's own checks; an error names the space file and
the axis. Only rules that span several values (more DSPs than the device has, an N above
M) are left to each design point, which then is infeasible.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from sparseflow.hw_models.build import BuildContext, convert, data_fields
from sparseflow.hw_models.loader import hw_to_dict
from sparseflow.hw_models.schema import HardwareModel, field_role
from sparseflow.ir.errors import InputError
from sparseflow.ir.fileio import brief
from sparseflow.passes.manager import get_pass, make_options
from sparseflow.passes.recipe import Recipe

WORKLOAD_KEYS = ("prompt", "gen", "batch")
PARALLEL_KEYS = ("devices", "tp", "pp", "micro_batches")
MAX_AXIS_VALUES = 100_000  # a range longer than this is a typo, not a sweep
SIGNIFICANT_DIGITS = 12  # range values are rounded so 0.1 + 0.2 steps print as 0.3


class AxisKind(Enum):
    """What an axis varies."""

    TARGET = "target"
    RECIPE = "recipe"
    RECIPE_OPTION = "recipe option"
    WORKLOAD = "workload"
    PARALLEL = "parallel mapping"
    HARDWARE = "hardware field"


@dataclass(frozen=True)
class Axis:
    """One axis: its key as written, what it varies, and its values (plain, JSON-ready)."""

    key: str
    kind: AxisKind
    values: tuple[Any, ...]

    @property
    def pass_option(self) -> tuple[str, str]:
        """Return (pass name, option name) of a `recipe.<pass>.<option>` axis."""
        _, pass_name, option = self.key.split(".", 2)
        return pass_name, option


def axis_kind(key: str) -> AxisKind:
    """Return what an axis key names (hardware fields are every key not reserved)."""
    if key in ("target", "recipe"):
        return AxisKind(key)
    if key.startswith("recipe."):
        return AxisKind.RECIPE_OPTION
    if key.startswith("workload."):
        return AxisKind.WORKLOAD
    if key.startswith("parallel."):
        return AxisKind.PARALLEL
    return AxisKind.HARDWARE


def raw_values(spec: Any, where: str) -> tuple[list[Any], bool]:
    """Return an axis's values as written (a list, or a range expanded, see module doc) and
    whether they were spaced by `num` (integer axes round those)."""
    if isinstance(spec, list):
        if not spec:
            raise InputError(f"{where}: empty axis: give at least one value")
        return spec, False
    if isinstance(spec, Mapping) and "range" in spec:
        return _range_values(spec, where), "num" in spec
    raise InputError(
        f"{where}: expected a list of values or {{range: [lo, hi], step: s | num: n}}, "
        f"got {brief(spec)}"
    )


def _range_values(spec: Mapping, where: str) -> list[Any]:
    unknown = sorted(set(spec) - {"range", "step", "num", "log"})
    if unknown:
        raise InputError(f"{where}: unknown range field {unknown[0]!r} (range, step, num, log)")
    bounds = spec["range"]
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(map(is_number, bounds))):
        raise InputError(f"{where}: range must be [lo, hi] numbers, got {brief(bounds)}")
    lo, hi = bounds
    if lo > hi:
        raise InputError(f"{where}: range [{lo}, {hi}] runs backwards")
    if ("step" in spec) == ("num" in spec):
        raise InputError(f"{where}: a range takes exactly one of 'step' or 'num'")
    if "step" in spec:
        return _stepped(lo, hi, spec["step"], spec.get("log", False), where)
    return _spaced(lo, hi, spec["num"], spec.get("log", False), where)


def _stepped(lo: float, hi: float, step: Any, log: Any, where: str) -> list[Any]:
    if log:
        raise InputError(f"{where}: 'log' spacing takes 'num', not 'step'")
    if not is_number(step) or step <= 0:
        raise InputError(f"{where}: step must be a number > 0, got {brief(step)}")
    count = math.floor((hi - lo) / step + 1e-9) + 1
    _check_count(count, where)
    if all(isinstance(v, int) for v in (lo, hi, step)):
        return [lo + i * step for i in range(count)]
    return [_round(lo + i * step) for i in range(count)]


def _spaced(lo: float, hi: float, num: Any, log: Any, where: str) -> list[Any]:
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise InputError(f"{where}: num must be an integer >= 1, got {brief(num)}")
    if not isinstance(log, bool):
        raise InputError(f"{where}: log must be true or false, got {brief(log)}")
    if log and lo <= 0:
        raise InputError(f"{where}: log spacing needs lo > 0, got {lo}")
    _check_count(num, where)
    spaced = np.geomspace(lo, hi, num) if log else np.linspace(lo, hi, num)
    return [_round(float(v)) for v in spaced]


def _check_count(count: int, where: str) -> None:
    if count > MAX_AXIS_VALUES:
        raise InputError(f"{where}: the range has {count} values (at most {MAX_AXIS_VALUES})")


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def is_number(value: Any) -> bool:
    """Return whether `value` is a finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def unique(values: Sequence[Any], where: str) -> tuple[Any, ...]:
    """Return the values as a tuple; a value given twice is an error."""
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise InputError(f"{where}: value {brief(value)} appears twice")
        seen.append(value)
    return tuple(seen)


def rounded(values: list[Any]) -> list[Any]:
    """Return `num`-spaced values of an integer axis rounded, repeats dropped."""
    return list(dict.fromkeys(round(v) for v in values))


def hardware_values(
    key: str, values: list[Any], spaced: bool, targets: Sequence[HardwareModel], where: str
) -> tuple[Any, ...]:
    """Check a hardware-field axis against every base target; return its converted values.

    The field must exist in each target and be a number, a true/false or a list of numbers;
    each value passes the loader's type and range checks for that field.
    """
    converted: list[Any] = []
    for hw in targets:
        hint, metadata = _field_schema(type(hw), key, hw, where)
        given = rounded(values) if spaced and _unwrap(hint) is int else values
        ctx = BuildContext(where)
        converted = [_plain(convert(v, hint, metadata, key, ctx)) for v in given]
    return unique(converted, where)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _field_schema(cls: type, key: str, hw: HardwareModel, where: str) -> tuple[Any, Any]:
    """Return (type hint, metadata) of a dotted field of a hardware-model class."""
    if not _exists(hw_to_dict(hw), key):
        raise InputError(f"{where}: {hw.name} has no field '{key}' ({_known_fields(hw)})")
    if field_role(hw.kind, key) == "descriptive":
        raise InputError(
            f"{where}: '{key}' is descriptive (hw_models/schema.py DESCRIPTIVE_FIELDS): no "
            "model reads it, so sweeping it would change nothing"
        )
    hint, metadata = None, None
    for part in key.split("."):
        section = _unwrap(hint) if hint is not None else cls
        field = next(f for f in data_fields(section) if f.name == part)
        hint, metadata = typing.get_type_hints(section)[part], field.metadata
    leaf = _unwrap(hint)
    if dataclasses.is_dataclass(leaf):
        raise InputError(f"{where}: '{key}' is a section; name one of its fields")
    if leaf is str or (isinstance(leaf, type) and issubclass(leaf, Enum)):
        raise InputError(
            f"{where}: '{key}' is a descriptive text field; axes vary numbers, true/false or "
            "lists of numbers"
        )
    return hint, metadata


def _unwrap(hint: Any) -> Any:
    """Return the type inside `X | None`."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _exists(data: Any, key: str) -> bool:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data or part in ("source", "assumption"):
            return False
        data = data[part]
    return True


def _known_fields(hw: HardwareModel) -> str:
    leaves = _leaf_paths(hw_to_dict(hw), "")
    return f"fields: {', '.join(leaves[:12])}{', ...' if len(leaves) > 12 else ''}"


def _leaf_paths(data: dict, prefix: str) -> list[str]:
    paths = []
    for name, value in data.items():
        if name in ("source", "assumption"):
            continue
        path = f"{prefix}.{name}" if prefix else name
        paths += _leaf_paths(value, path) if isinstance(value, dict) else [path]
    return paths


def option_values(
    axis_key: str, values: list[Any], recipes: Sequence[Recipe], where: str
) -> tuple[Any, ...]:
    """Check a `recipe.<pass>.<option>` axis: every recipe in the space has a step of that
    pass, and every value passes the pass's option checks in each of those steps."""
    parts = axis_key.split(".")
    if len(parts) != 3:
        raise InputError(f"{where}: expected recipe.<pass>.<option>, got '{axis_key}'")
    try:
        pass_def = get_pass(parts[1])
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    for recipe in recipes:
        steps = [s for s in recipe.steps if s.pass_name == pass_def.name]
        if not steps:
            raise InputError(f"{where}: recipe {recipe.name!r} has no {pass_def.name} step")
        for step, value in ((s, v) for s in steps for v in values):
            set_option(step.options, pass_def.name, parts[2], value, where)
    return unique(values, where)


def set_option(options: object, pass_name: str, option: str, value: Any, where: str) -> object:
    """Return a pass's options with one option replaced, checked as a recipe file's are."""
    current = {k: _plain(v) for k, v in dataclasses.asdict(options).items()}
    return make_options(get_pass(pass_name), {**current, option: value}, where)


def workload_values(key: str, values: list[Any], spaced: bool, where: str) -> tuple[Any, ...]:
    """Check a `workload.<prompt|gen|batch>` or `parallel.<devices|tp|pp|micro_batches>`
    axis: integers >= 1."""
    section, name = key.split(".", 1)
    known = WORKLOAD_KEYS if section == "workload" else PARALLEL_KEYS
    if name not in known:
        raise InputError(f"{where}: unknown {section} field '{name}' (known: {', '.join(known)})")
    values = rounded(values) if spaced else values
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{where}: values must be integers >= 1, got {brief(value)}")
    return unique(values, where)
