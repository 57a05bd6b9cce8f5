"""Write the Pareto designs of a sweep as files the other commands take.

Each front point becomes OUT/designs/<id>.yaml, a complete hardware-model YAML (`hw_to_dict`
of the design: overridden fields carry an `assumption:` note saying so) that `estimate`,
`compile` and the RTL generator load like any preset, and OUT/designs/<id>.recipe.yaml, its
recipe (pass options from the recipe axes included). A comment block at the top of the
hardware file records the axis values the design came from and the command that reproduces
its objective values. The folder is replaced whole on every run (`staged_dir`), so it holds
exactly the current front.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from sparseflow.backends.outdir import staged_dir
from sparseflow.hw_models.loader import hw_to_dict
from sparseflow.passes.recipe import recipe_to_dict
from sparseflow.simulator.explore.points import Design, Point, design
from sparseflow.simulator.explore.space import Space

DESIGNS_DIR = "designs"


def reproduce_command(d: Design, target_path: Path, recipe_path: Path) -> str:
    """Return the `sparseflow estimate` command line that gives the design's report."""
    words = [
        "sparseflow", "estimate", d.model, "--target", str(target_path),
        "--recipe", str(recipe_path), "--prompt", str(d.request.prompt_len),
        "--gen", str(d.request.gen_len), "--batch", str(d.request.batch), "--json",
    ]  # fmt: skip
    return shlex.join(words)


def write_designs(space: Space, out: Path, front: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Write every front record's design into OUT/designs; return their paths and commands."""
    folder = out / DESIGNS_DIR
    written = []
    with staged_dir(folder, lambda _: True, force=True) as staging:
        for r in front:
            d = design(space, Point(r["id"], r["values"]))
            target, recipe = folder / f"{r['id']}.yaml", folder / f"{r['id']}.recipe.yaml"
            command = reproduce_command(d, target, recipe)
            _write_hardware(staging / target.name, d, r["values"], command)
            _write_yaml(staging / recipe.name, recipe_to_dict(d.recipe), [])
            written.append({"id": r["id"], "target": str(target), "recipe": str(recipe),
                            "command": command})  # fmt: skip
    return written


def _write_hardware(path: Path, d: Design, values: dict[str, Any], command: str) -> None:
    data = hw_to_dict(d.hw)
    data["name"] = f"{d.hw.name}-{d.point.id}"
    shown = ", ".join(f"{k} = {v}" for k, v in values.items()) or "none (the base design)"
    header = [
        f"Design {d.point.id} of a sparseflow explore sweep of {d.model}.",
        f"Axis values: {shown}.",
        "Reproduce its objective values:",
        f"  {command}",
    ]
    _write_yaml(path, data, header)


def _write_yaml(path: Path, data: dict[str, Any], header: list[str]) -> None:
    comments = "".join(f"# {line}\n" for line in header)
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    path.write_text(comments + body, encoding="utf-8")
