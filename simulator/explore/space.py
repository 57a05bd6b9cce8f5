"""Read and check a design-space file (schema: docs/explore.md).

    model: llama2-7b
    target: u280                      # base hardware model: a name or a YAML path
    recipe: flightllm                 # base recipe (default: the target's)
    workload: {prompt: 128, gen: 512, batch: 1}
    axes:
      core.dsp_chains: [32, 48, 64]
      clock_hz: {range: [200.0e+6, 250.0e+6], step: 25.0e+6}
      recipe.sparsify_flightllm.density: [0.25, 0.5]
    objectives: {decode_tokens_per_s: maximize, energy_per_token_j: minimize}
    constraints: {avg_power_w: {max: 75}}
    search: {method: grid, budget: 200, seed: 0, time_limit_s: 3600, population: 20}

`load_space` checks everything a sweep needs before any evaluation and raises InputError
naming the file and the field. Relative paths (model, targets, recipes) are read from the
space file's folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseflow.hw_models.loader import hw_to_dict, load_hw
from sparseflow.hw_models.schema import HardwareModel
from sparseflow.ir.errors import InputError
from sparseflow.ir.fileio import brief, read_yaml
from sparseflow.ir.models.zoo import BUILTINS
from sparseflow.passes.recipe import Recipe, load_recipe, recipe_to_dict
from sparseflow.simulator.design import Request, check_fits_model, make_recipe
from sparseflow.simulator.explore import axes as ax
from sparseflow.simulator.explore.metrics import (
    Constraint,
    MetricSource,
    Objective,
    known_metrics,
)

TOP_FIELDS = ("model", "target", "recipe", "workload", "axes", "objectives", "constraints")
SEARCH_METHODS = ("grid", "random", "nsga2")
MAX_GRID = 1_000_000  # an unbudgeted grid larger than this is refused (use a budget)
DEFAULT_POPULATION = 20


@dataclass(frozen=True)
class Search:
    """How points are chosen: method, trial budget, seed, wall-clock limit, population."""

    method: str = "grid"
    budget: int | None = None
    seed: int = 0
    time_limit_s: float | None = None
    population: int = DEFAULT_POPULATION


@dataclass(frozen=True)
class Space:
    """A checked design space; `targets` and `recipes` hold every model and recipe in play,
    keyed by their labels as written (the base ones first)."""

    file: str
    model: str
    targets: dict[str, HardwareModel]
    recipes: dict[str, Recipe]
    workload: dict[str, int]
    axes: tuple[ax.Axis, ...]
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]
    search: Search

    @property
    def base_target(self) -> str:
        """Return the base target's label."""
        return next(iter(self.targets))

    @property
    def base_recipe(self) -> str:
        """Return the base recipe's label."""
        return next(iter(self.recipes))

    @property
    def size(self) -> int:
        """Return the number of points of the full grid."""
        return math.prod(len(a.values) for a in self.axes)

    def identity(self) -> dict[str, Any]:
        """Return the plain data that decides every point's results (all but `search`)."""
        return {
            "model": self.model,
            "targets": {k: hw_to_dict(v) for k, v in self.targets.items()},
            "recipes": {k: recipe_to_dict(v) for k, v in self.recipes.items()},
            "workload": self.workload,
            "axes": {a.key: list(a.values) for a in self.axes},
            "objectives": {o.key: o.sense for o in self.objectives},
            "constraints": {c.key: {"min": c.lo, "max": c.hi} for c in self.constraints},
        }


def load_space(path: str | Path, metrics: MetricSource | None = None) -> Space:
    """Read, check and normalise a design-space file."""
    path = Path(path)
    label = str(path)
    data = read_yaml(path, label, "design space")
    if not isinstance(data, dict):
        raise InputError(f"{label}: expected a mapping of fields, got {brief(data)}")
    unknown = sorted(set(data) - {*TOP_FIELDS, "search"})
    if unknown:
        raise InputError(f"{label}: field '{unknown[0]}': unknown (known: {', '.join(TOP_FIELDS)})")
    reader = _Reader(label, path.parent, data)
    return reader.space(metrics)


class _Reader:
    """Check one space file's fields in order; errors name the file and the field."""

    def __init__(self, label: str, folder: Path, data: dict[str, Any]) -> None:
        self.label, self.folder, self.data = label, folder, data

    def where(self, field: str) -> str:
        return f"{self.label}: field '{field}'"

    def space(self, metrics: MetricSource | None) -> Space:
        model = self.model()
        raw_axes = self.raw_axes()
        targets = self.targets(raw_axes.get("target"))
        recipes = self.recipes(raw_axes.get("recipe"), next(iter(targets.values())))
        workload = self.workload(model)
        axes = tuple(self.axis(k, v, targets, recipes) for k, v in raw_axes.items())
        kinds = {hw.kind for hw in targets.values()}
        keys = known_metrics(kinds, metrics)
        objectives = self.objectives(keys)
        constraints = self.constraints(keys)
        search = self.search()
        space = Space(
            self.label, model, targets, recipes, workload, axes, objectives, constraints, search
        )
        if search.method == "grid" and search.budget is None and space.size > MAX_GRID:
            raise InputError(
                f"{self.where('search.budget')}: the grid has {space.size:,} points; give a "
                "budget or use method random or nsga2"
            )
        return space

    def resolve(self, value: str) -> str:
        """Return a relative path as read from the space file's folder; names unchanged."""
        candidate = self.folder / value
        return str(candidate) if not Path(value).is_absolute() and candidate.exists() else value

    def text(self, field: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{self.where(field)}: expected a name or path, got {brief(value)}")
        return value

    def model(self) -> str:
        model = self.resolve(self.text("model", self.data.get("model")))
        if model not in BUILTINS and not Path(model).exists():
            raise InputError(
                f"{self.where('model')}: unknown model {model!r} (a built-in name: "
                f"{', '.join(BUILTINS)}; or a config.json, model folder or graph file)"
            )
        return model

    def raw_axes(self) -> dict[str, Any]:
        raw = self.data.get("axes")
        if not isinstance(raw, dict) or not raw:
            raise InputError(f"{self.where('axes')}: expected a non-empty mapping of axes")
        for key in raw:
            if not isinstance(key, str) or not key:
                raise InputError(f"{self.where('axes')}: axis names are texts, got {brief(key)}")
        return raw

    def targets(self, axis: Any) -> dict[str, HardwareModel]:
        base = self.text("target", self.data.get("target"))
        labels = [base]
        if axis is not None:
            values, _ = ax.raw_values(axis, self.where("axes.target"))
            labels += [self.text("axes.target", v) for v in values if v != base]
        return {name: self.load_target(name) for name in labels}

    def load_target(self, name: str) -> HardwareModel:
        try:
            return load_hw(self.resolve(name))
        except InputError as err:
            raise InputError(f"{self.where('target')}: {err}") from None

    def recipes(self, axis: Any, base_target: HardwareModel) -> dict[str, Recipe]:
        base = self.data.get("recipe", base_target.default_recipe)
        chosen = {recipe_label(base): self.load_recipe("recipe", base)}
        if axis is not None:
            for value in ax.raw_values(axis, self.where("axes.recipe"))[0]:
                chosen.setdefault(recipe_label(value), self.load_recipe("axes.recipe", value))
        return chosen

    def load_recipe(self, field: str, value: Any) -> Recipe:
        try:
            if isinstance(value, dict):
                return self.shorthand(field, value)
            return load_recipe(self.resolve(self.text(field, value)))
        except InputError as err:
            raise InputError(f"{self.where(field)}: {err}") from None

    def shorthand(self, field: str, value: dict) -> Recipe:
        unknown = sorted(set(value) - {"recipe", "sparsity", "quant"})
        if unknown or not {"sparsity", "quant"} & set(value):
            raise InputError(
                f"{self.where(field)}: a shorthand recipe is {{sparsity: S, quant: Q}} "
                f"(optionally recipe: BASE), got {brief(value)}"
            )
        base = value.get("recipe")
        base_recipe = load_recipe(self.resolve(self.text(field, base))) if base else None
        return make_recipe(base_recipe, sparsity=value.get("sparsity"), quant=value.get("quant"))

    def workload(self, model: str) -> dict[str, int]:
        raw = self.data.get("workload", {})
        if not isinstance(raw, dict):
            raise InputError(f"{self.where('workload')}: expected {{prompt:, gen:, batch:}}")
        unknown = sorted(set(raw) - set(ax.WORKLOAD_KEYS))
        if unknown:
            raise InputError(f"{self.where('workload.' + str(unknown[0]))}: unknown field")
        workload = {"prompt": 128, "gen": 128, "batch": 1, **raw}
        for key, value in workload.items():
            ax.workload_values(f"workload.{key}", [value], False, self.where(f"workload.{key}"))
        request = Request(workload["batch"], workload["prompt"], workload["gen"])
        try:
            check_fits_model(model, request, 1)
        except InputError as err:
            raise InputError(f"{self.where('workload')}: {err}") from None
        return workload

    def axis(
        self, key: str, spec: Any, targets: dict[str, HardwareModel], recipes: dict[str, Recipe]
    ) -> ax.Axis:
        where = self.where(f"axes.{key}")
        values, spaced = ax.raw_values(spec, where)
        kind = ax.axis_kind(key)
        if kind in (ax.AxisKind.TARGET, ax.AxisKind.RECIPE):  # loaded with the base ones
            checked = ax.unique(values, where)
        elif kind is ax.AxisKind.RECIPE_OPTION:
            checked = ax.option_values(key, values, self.recipes_in_play(recipes), where)
        elif kind in (ax.AxisKind.WORKLOAD, ax.AxisKind.PARALLEL):
            checked = ax.workload_values(key, values, spaced, where)
        else:
            checked = ax.hardware_values(key, values, spaced, list(targets.values()), where)
        return ax.Axis(key, kind, checked)

    def recipes_in_play(self, recipes: dict[str, Recipe]) -> list[Recipe]:
        """Return the recipes sweep points use: the recipe axis's, or else the base one."""
        axis = self.data["axes"].get("recipe")
        if axis is None:
            return [recipes[next(iter(recipes))]]
        return [recipes[recipe_label(v)] for v in ax.raw_values(axis, "")[0]]

    def objectives(self, keys: list[str]) -> tuple[Objective, ...]:
        raw = self.data.get("objectives")
        if not isinstance(raw, dict) or not raw:
            raise InputError(f"{self.where('objectives')}: expected {{report key: minimize}}")
        found = []
        for key, sense in raw.items():
            self.check_key(f"objectives.{key}", key, keys)
            if sense not in ("minimize", "maximize"):
                raise InputError(
                    f"{self.where(f'objectives.{key}')}: expected minimize or maximize, "
                    f"got {brief(sense)}"
                )
            found.append(Objective(key, sense == "maximize"))
        return tuple(found)

    def constraints(self, keys: list[str]) -> tuple[Constraint, ...]:
        raw = self.data.get("constraints", {})
        if not isinstance(raw, dict):
            raise InputError(f"{self.where('constraints')}: expected {{report key: {{max: x}}}}")
        return tuple(self.constraint(key, bounds, keys) for key, bounds in raw.items())

    def constraint(self, key: Any, bounds: Any, keys: list[str]) -> Constraint:
        field = f"constraints.{key}"
        self.check_key(field, key, keys)
        ok = isinstance(bounds, dict) and bounds and set(bounds) <= {"min", "max"}
        if not ok or not all(ax.is_number(v) for v in bounds.values()):
            raise InputError(f"{self.where(field)}: expected {{min: x}}, {{max: y}} or both")
        return Constraint(key, bounds.get("min"), bounds.get("max"))

    def check_key(self, field: str, key: Any, keys: list[str]) -> None:
        if key not in keys:
            raise InputError(f"{self.where(field)}: unknown report key (known: {', '.join(keys)})")

    def search(self) -> Search:
        raw = self.data.get("search", {})
        fields = ("method", "budget", "seed", "time_limit_s", "population")
        if not isinstance(raw, dict) or set(raw) - set(fields):
            extra = sorted(set(raw) - set(fields)) if isinstance(raw, dict) else ["search"]
            raise InputError(f"{self.where('search')}: unknown field {brief(extra[0])}")
        if raw.get("method", "grid") not in SEARCH_METHODS:
            raise InputError(f"{self.where('search.method')}: expected one of {SEARCH_METHODS}")
        for name, low in (("budget", 1), ("seed", 0), ("population", 2)):
            value = raw.get(name, low)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{self.where(f'search.{name}')}: expected an integer >= {low}")
        limit = raw.get("time_limit_s")
        if limit is not None and not (ax.is_number(limit) and limit > 0):
            raise InputError(f"{self.where('search.time_limit_s')}: expected seconds > 0")
        return Search(**raw)


def recipe_label(value: Any) -> str:
    """Return how a recipe value is named in the space: its text, or its shorthand."""
    if isinstance(value, dict):
        return "+".join(f"{k}={value[k]}" for k in ("recipe", "sparsity", "quant") if k in value)
    return str(value)
