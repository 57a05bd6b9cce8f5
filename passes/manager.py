"""The pass manager: passes registered by name, run in order, the graph verified after each.

Requires: a verified Graph. Ensures: a verified Graph; when a pass leaves a broken graph,
`PassError` names the pass and the node.

A pass is a pure function `(graph, layers, context, options) -> graph`. It declares its options
as a frozen dataclass whose `__post_init__` raises `ValueError` with the option name on a bad
value; the recipe loader turns that into an error naming the recipe file, pass and option.
`layers` is the tuple of weight names the recipe's patterns selected for this pass (empty
for graph-wide passes, which register no weight roles).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sparseflow.ir.errors import GraphError, InputError
from sparseflow.ir.fileio import brief
from sparseflow.ir.graph import Graph
from sparseflow.ir.ops import Op
from sparseflow.ir.weights import Weights

PassFn = Callable[[Graph, tuple[str, ...], "PassContext", object], Graph]


class PassError(InputError):
    """A pass failed or produced a graph that does not verify."""


@dataclass(frozen=True)
class PassContext:
    """What passes may read besides the graph.

    `calibration_ids` [sequences, tokens] feed calibrating passes (None: a seeded random set).
    `reuse` holds the weights the same pass already computed for this model in another phase
    (the prefill graph's, when compressing the decode graph), so both phases share one set of
    compressed weights and calibration runs once, on the prefill graph.
    """

    calibration_ids: np.ndarray | None = None
    seed: int = 0
    reuse: Weights | None = None


@dataclass(frozen=True)
class PassDef:
    """A registered pass: its function, option type, and the layer roles it may touch."""

    name: str
    fn: PassFn
    options: type
    roles: tuple[str, ...]
    doc: str


_PASSES: dict[str, PassDef] = {}


def register_pass(
    name: str, options: type, roles: tuple[str, ...] = ("linear",)
) -> Callable[[PassFn], PassFn]:
    """Register `fn` as pass `name` with its options dataclass and selectable weight roles."""

    def wrap(fn: PassFn) -> PassFn:
        if name in _PASSES:
            raise ValueError(f"pass {name!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _PASSES[name] = PassDef(name, fn, options, roles, doc)
        return fn

    return wrap


def get_pass(name: str) -> PassDef:
    """Return the pass called `name`; an unknown name lists the known ones."""
    _load_builtin_passes()
    if name not in _PASSES:
        raise InputError(f"unknown pass {name!r} (known: {', '.join(sorted(_PASSES))})")
    return _PASSES[name]


def all_passes() -> list[PassDef]:
    """Return every registered pass, sorted by name."""
    _load_builtin_passes()
    return [_PASSES[k] for k in sorted(_PASSES)]


def _load_builtin_passes() -> None:
    from sparseflow.passes import builtin  # noqa: F401  (registers the passes on import)


def make_options(pass_def: PassDef, values: dict, where: str) -> object:
    """Build the pass's options from a dict; errors name `where`, the pass and the option."""
    fields = {f.name for f in dataclasses.fields(pass_def.options)}
    unknown = sorted(set(values) - fields)
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise InputError(
            f"{where}: pass {pass_def.name!r}: unknown option {unknown[0]!r} (known: {known})"
        )
    required = [
        f.name
        for f in dataclasses.fields(pass_def.options)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in values]
    if missing:
        raise InputError(f"{where}: pass {pass_def.name!r}: option {missing[0]!r} is required")
    hints = typing.get_type_hints(pass_def.options)
    for name, value in values.items():
        if not _matches(value, hints[name]):
            raise InputError(
                f"{where}: pass {pass_def.name!r}: option {name!r} must be "
                f"{_describe(hints[name])}, got {brief(value)}"
            )
    try:
        return pass_def.options(**values)
    except (TypeError, ValueError) as err:
        raise InputError(f"{where}: pass {pass_def.name!r}: {err}") from None


def _matches(value: object, hint: object) -> bool:
    """Return whether a YAML value fits an option's annotation (bool is not a number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, a) for a in args)
    if origin is tuple:
        items = args[:1] * len(value) if args[-1:] == (Ellipsis,) else args
        ok = isinstance(value, list | tuple) and len(value) == len(items)
        return ok and all(_matches(v, a) for v, a in zip(value, items, strict=False))
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str, type(None)):
        return isinstance(value, hint)
    return True


def _describe(hint: object) -> str:
    """Return an option annotation in words: `an integer or a text`."""
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a text"}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} {_describe(args[0]).split(' ', 1)[1]}s"
    return words.get(hint, str(hint))


def select_layers(
    graph: Graph, pass_def: PassDef, patterns: Sequence[str], exclude: Sequence[str], where: str
) -> tuple[str, ...]:
    """Return the weights (of the pass's roles) matching any pattern and no exclusion.

    A pattern that matches no layer is an error: it is almost always a typo. A graph-wide
    pass (no roles) selects nothing.
    """
    if not pass_def.roles:
        return ()
    candidates = [n.name for n in graph.nodes_of(Op.WEIGHT) if n.attr("role") in pass_def.roles]
    chosen: list[str] = []
    for pattern in patterns:
        hits = [c for c in candidates if fnmatch.fnmatchcase(c, pattern)]
        if not hits:
            raise InputError(
                f"{where}: pass {pass_def.name!r}: layer pattern {pattern!r} matches no layer "
                f"of {graph.name!r}"
            )
        chosen += [h for h in hits if h not in chosen]
    return tuple(c for c in chosen if not any(fnmatch.fnmatchcase(c, x) for x in exclude))


def run_pass(
    graph: Graph, pass_def: PassDef, layers: tuple[str, ...], ctx: PassContext, options: object
) -> Graph:
    """Run one pass and verify its result, naming the pass when the graph breaks."""
    result = pass_def.fn(graph, layers, ctx, options)
    try:
        result.verify()
    except GraphError as err:
        raise PassError(f"pass {pass_def.name!r} broke the graph: {err}") from None
    return result
