"""Recipes: YAML files listing passes in order, with options and layer-name patterns.

    name: w4a16
    description: group-wise INT4 weights, 16-bit activations
    passes:
      - pass: quantize_int4
        layers: ["*"]            # fnmatch patterns over weight names (default: all)
        exclude: ["lm_head"]     # optional
        options: {group_size: 128}

Built-in recipes live in passes/recipes/*.yaml. The CLI shorthands `--sparsity` and `--quant`
build a recipe in memory (see `shorthand_recipe`). Every error names the recipe file, the pass
and the option or pattern at fault.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path

from sparseflow.ir.errors import InputError
from sparseflow.ir.fileio import read_yaml
from sparseflow.ir.graph import Graph
from sparseflow.passes.manager import (
    PassContext,
    PassError,
    get_pass,
    make_options,
    run_pass,
    select_layers,
)

RECIPE_DIR = Path(__file__).parent / "recipes"
_STEP_KEYS = {"pass", "layers", "exclude", "options"}


@dataclass(frozen=True)
class RecipeStep:
    """One pass of a recipe with its layer patterns and validated options."""

    pass_name: str
    layers: tuple[str, ...]
    exclude: tuple[str, ...]
    options: object


@dataclass(frozen=True)
class Recipe:
    """An ordered list of passes, read from `source`."""

    name: str
    description: str
    steps: tuple[RecipeStep, ...]
    source: str

    def apply(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        """Run every step in order and return the compressed graph."""
        ctx = ctx or PassContext()
        for index in range(len(self.steps)):
            graph = self._run_step(index, graph, ctx)
        return graph

    def apply_model(
        self, prefill: Graph, decode: Graph | None, ctx: PassContext | None = None
    ) -> tuple[Graph, Graph | None]:
        """Compress both phases of one model step by step; the decode graph reuses the
        weights each step computed on the prefill graph (one calibration, one weight set)."""
        ctx = ctx or PassContext()
        for index in range(len(self.steps)):
            prefill = self._run_step(index, prefill, ctx)
            if decode is not None:
                decode = self._run_step(index, decode, replace(ctx, reuse=prefill.weights))
        return prefill, decode

    def _run_step(self, index: int, graph: Graph, ctx: PassContext) -> Graph:
        step = self.steps[index]
        pass_def = get_pass(step.pass_name)
        where = f"recipe {self.source}, step {index + 1}"
        layers = select_layers(graph, pass_def, step.layers, step.exclude, where)
        try:
            return run_pass(graph, pass_def, layers, ctx, step.options)
        except PassError as err:
            raise PassError(f"{where}: {err}") from None
        except InputError as err:
            raise InputError(f"{where}: pass {pass_def.name!r}: {err}") from None


def _builtin_paths() -> dict[str, Path]:
    """Map each built-in recipe's `name:` (e.g. `2:4`) to its file."""
    paths = {}
    for path in sorted(RECIPE_DIR.glob("*.yaml")):
        data = read_yaml(path, f"recipe {path.name}", "recipe")
        paths[str(data.get("name", path.stem))] = path
    return paths


def list_recipes() -> list[str]:
    """Return the names of the built-in recipes."""
    return list(_builtin_paths())


def load_recipe(name_or_path: str) -> Recipe:
    """Return the built-in recipe of that name, or the recipe in that YAML file."""
    builtin = _builtin_paths()
    if name_or_path in builtin:
        path = builtin[name_or_path]
    elif name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
    else:
        known = ", ".join(builtin)
        raise InputError(f"unknown recipe {name_or_path!r} (known: {known}, or a .yaml path)")
    label = f"{name_or_path} (built-in)" if name_or_path in builtin else str(path)
    return recipe_from_dict(read_yaml(path, f"recipe {label}", "recipe"), label)


def recipe_from_dict(data: object, source: str) -> Recipe:
    """Validate a recipe's parsed YAML; errors name `source`, the step and the field."""
    if not isinstance(data, dict) or not isinstance(data.get("passes"), list):
        raise InputError(f"recipe {source}: expected a mapping with a 'passes' list")
    unknown = sorted(set(data) - {"name", "description", "passes"})
    if unknown:
        raise InputError(f"recipe {source}: unknown field {unknown[0]!r}")
    steps = tuple(
        _step(raw, f"recipe {source}, step {i + 1}") for i, raw in enumerate(data["passes"])
    )
    name = str(data.get("name", Path(source).stem))
    return Recipe(name, str(data.get("description", "")), steps, source)


def _step(raw: object, where: str) -> RecipeStep:
    if not isinstance(raw, dict) or not isinstance(raw.get("pass"), str):
        raise InputError(f"{where}: expected a mapping with a 'pass' name")
    unknown = sorted(set(raw) - _STEP_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r} (known: {sorted(_STEP_KEYS)})")
    try:
        pass_def = get_pass(raw["pass"])
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise InputError(f"{where}: pass {pass_def.name!r}: 'options' must be a mapping")
    return RecipeStep(
        pass_def.name,
        _patterns(raw.get("layers", ["*"]), where, "layers"),
        _patterns(raw.get("exclude", []), where, "exclude"),
        make_options(pass_def, options, where),
    )


def _patterns(value: object, where: str, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: {field!r} must be a list of name patterns")
    return tuple(value)


def shorthand_recipe(sparsity: str | None, quant: str | None, base: Recipe | None = None) -> Recipe:
    """Return `base` (or an empty recipe) followed by the steps of the CLI shorthands.

    sparsity: `N:M` (e.g. 2:4, 8:16), a ratio (`0.9`, unstructured), `blockRxC:ratio`
    (`block4x1:0.9`) or `flightllm:density`. quant: `int8` (W8A8), `int8:smooth` (SmoothQuant
    first), `llm.int8`, `int4` with optional `:gG` / `:channel` and `:gptq` parts (default
    g128, round to nearest; the default group becomes one group per row on a layer whose K
    it does not divide, an explicit `:gG` that does not divide K is an error), `fp4`,
    `olive4`. The LM head is left uncompressed.
    """
    quant_steps = _quant_steps(quant) if quant else []
    smooth = [s for s in quant_steps if s["pass"] == "smoothquant"]
    rest = [s for s in quant_steps if s["pass"] != "smoothquant"]
    sparse_steps = [_sparsity_step(sparsity)] if sparsity else []
    steps = smooth + sparse_steps + rest
    for step in steps:
        step.setdefault("exclude", ["lm_head"])
    name = "+".join(x for x in ((base.name if base else None), sparsity, quant) if x)
    shorthand = recipe_from_dict({"name": name, "passes": steps}, "--sparsity/--quant")
    base_steps = base.steps if base else ()
    description = f"{base.description + '; ' if base else ''}{name}"
    return Recipe(name, description, base_steps + shorthand.steps, shorthand.source)


def _sparsity_step(text: str) -> dict:
    problem = InputError(
        f"--sparsity {text!r}: expected N:M (2:4), a ratio (0.9), blockRxC:ratio "
        "(block4x1:0.9) or flightllm:density"
    )
    try:
        if text.startswith("block"):
            shape, ratio = text[len("block") :].split(":")
            rows, cols = (int(v) for v in shape.split("x"))
            return {
                "pass": "sparsify_block",
                "options": {"block": [rows, cols], "sparsity": float(ratio)},
            }
        if text.startswith("flightllm:"):
            return {"pass": "sparsify_flightllm", "options": {"density": float(text[10:])}}
        if ":" in text:
            n, m = (int(v) for v in text.split(":"))
            return {"pass": "sparsify_nm", "options": {"n": n, "m": m}}
        return {"pass": "sparsify_unstructured", "options": {"sparsity": float(text)}}
    except ValueError:
        raise problem from None


def _quant_steps(text: str) -> list[dict]:
    head, *parts = text.split(":")
    activations = {"pass": "quantize_activations", "options": {"bits": 8}}
    if head == "int8" and parts in ([], ["smooth"]):
        smooth = [{"pass": "smoothquant"}] if parts else []
        return [*smooth, {"pass": "quantize_int8"}, activations]
    if head == "int4":
        return [{"pass": "quantize_int4", "options": _int4_options(text, parts)}]
    simple = {"llm.int8": "quantize_llm_int8", "fp4": "quantize_fp4", "olive4": "quantize_olive"}
    if head in simple and not parts:
        return [{"pass": simple[head]}]
    raise InputError(
        f"--quant {text!r}: expected int8, int8:smooth, llm.int8, int4[:gG|:channel][:gptq], "
        "fp4 or olive4"
    )


def _int4_options(text: str, parts: list[str]) -> dict:
    """Return quantize_int4's options; the default group (128, no `gG` or `channel` part)
    falls back to one group per row on layers whose K it does not divide."""
    options: dict = {"group_size": 128, "method": "rtn", "fit_group": True}
    for part in parts:
        if part == "gptq":
            options["method"] = "gptq"
        elif part == "channel":
            options.update(group_size="channel", fit_group=False)
        elif part.startswith("g") and part[1:].isdigit():
            options.update(group_size=int(part[1:]), fit_group=False)
        else:
            raise InputError(f"--quant {text!r}: unknown int4 part {part!r} (gG, channel, gptq)")
    return options


def recipe_to_dict(recipe: Recipe) -> dict:
    """Return a recipe as the plain data of its YAML file: `recipe_from_dict` of it is equal
    to `recipe` but for `source`."""
    return {
        "name": recipe.name,
        "description": recipe.description,
        "passes": [
            {
                "pass": step.pass_name,
                "layers": list(step.layers),
                "exclude": list(step.exclude),
                "options": {k: _plain(v) for k, v in dataclasses.asdict(step.options).items()},
            }
            for step in recipe.steps
        ],
    }


def _plain(value: object) -> object:
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value
