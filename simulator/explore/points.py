"""Design points of a space: their ids, how grids and samples pick them, what they build.

A point assigns one value to every axis; the base design assigns none (id `base`). Its id
is a hash of its values, so a point keeps its id across runs, searches and machines, which
is what resume relies on. `design` turns a point into the hardware model, recipe and
request it stands for; a loader rejection or a bad option combination raises InputError,
which the sweep records as the point's infeasibility.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, replace
from typing import Any

from sparseflow.hw_models.loader import with_overrides
from sparseflow.hw_models.schema import HardwareModel
from sparseflow.passes.recipe import Recipe
from sparseflow.simulator.design import Request, parallel_overrides
from sparseflow.simulator.explore.axes import AxisKind, set_option
from sparseflow.simulator.explore.space import Space, recipe_label

BASE_ID = "base"
ID_HEX_DIGITS = 12  # 48 bits: a clash needs ~16 million points (birthday bound)


@dataclass(frozen=True)
class Point:
    """One design point: {axis key: value} (empty for the base design) and its id."""

    id: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Design:
    """What a point builds: the hardware, the recipe and the request to estimate."""

    point: Point
    model: str
    hw: HardwareModel
    recipe: Recipe
    request: Request

    @property
    def compress_key(self) -> tuple[str, Recipe, int, int]:
        """Return what its compressed graphs depend on (shared by many hardware points)."""
        return (self.model, self.recipe, self.request.batch, self.request.prompt_len)


def make_point(values: dict[str, Any]) -> Point:
    """Return the point with these axis values and its stable id."""
    if not values:
        return Point(BASE_ID, {})
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return Point(hashlib.sha1(text.encode()).hexdigest()[:ID_HEX_DIGITS], dict(values))


def point_at(space: Space, index: int) -> Point:
    """Return grid point number `index` (axes vary last-fastest, in file order)."""
    values: dict[str, Any] = {}
    for axis in reversed(space.axes):
        index, digit = divmod(index, len(axis.values))
        values[axis.key] = axis.values[digit]
    return make_point({a.key: values[a.key] for a in space.axes})


def point_of_indices(space: Space, indices: dict[str, int]) -> Point:
    """Return the point choosing value number `indices[key]` of each axis."""
    return make_point({a.key: a.values[indices[a.key]] for a in space.axes})


def value_indices(space: Space, point: Point) -> dict[str, int]:
    """Return the index of each of the point's values in its axis."""
    return {a.key: a.values.index(point.values[a.key]) for a in space.axes}


def planned_points(space: Space, budget: int | None, seed: int) -> list[Point]:
    """Return the points a grid or random search evaluates, the base design first.

    Without a budget (grid) every point in grid order; with one, a seeded sample without
    replacement of `budget` grid points, in sample order.
    """
    total = space.size
    if budget is None or (budget >= total and space.search.method == "grid"):
        chosen = range(total)
    else:
        chosen = random.Random(seed).sample(range(total), min(budget, total))
    return [make_point({}), *(point_at(space, i) for i in chosen)]


def design(space: Space, point: Point) -> Design:
    """Return the design a point stands for; InputError when its values do not combine."""
    values = point.values
    target = space.targets[values.get("target", space.base_target)]
    recipe = space.recipes[recipe_label(values.get("recipe", space.base_recipe))]
    overrides: dict[str, Any] = {}
    workload = dict(space.workload)
    mapping: dict[str, int] = {}
    for axis in space.axes:
        if axis.key not in values:
            continue
        value = values[axis.key]
        if axis.kind is AxisKind.HARDWARE:
            overrides[axis.key] = value
        elif axis.kind is AxisKind.WORKLOAD:
            workload[axis.key.split(".", 1)[1]] = value
        elif axis.kind is AxisKind.PARALLEL:
            mapping[axis.key.split(".", 1)[1]] = value
        elif axis.kind is AxisKind.RECIPE_OPTION:
            recipe = _with_option(recipe, axis.key, value)
    if mapping:
        overrides.update(parallel_overrides(**mapping))
    hw = with_overrides(target, overrides) if overrides else target
    request = Request(workload["batch"], workload["prompt"], workload["gen"])
    return Design(point, space.model, hw, recipe, request)


def _with_option(recipe: Recipe, key: str, value: Any) -> Recipe:
    _, pass_name, option = key.split(".", 2)
    where = f"recipe {recipe.name}, axis {key}"
    steps = tuple(
        replace(s, options=set_option(s.options, pass_name, option, value, where))
        if s.pass_name == pass_name
        else s
        for s in recipe.steps
    )
    return replace(recipe, name=f"{recipe.name}+{option}={value}", steps=steps)
