"""Lower layers never import upper ones: ir <- passes <- backends <- simulator <- cli/api,
with hw_models read by backends and simulator (each package's docstring states its rule)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "ir": {"ir"},
    "hw_models": {"hw_models", "ir"},
    "passes": {"passes", "ir"},
    "backends": {"backends", "passes", "ir", "hw_models"},
    "simulator": {"simulator", "backends", "passes", "ir", "hw_models"},
}


def imported_layers(path: Path) -> set[str]:
    """Return the top-level sparseflow packages a module imports (at any depth)."""
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "sparseflow" and len(parts) > 1:
                layers.add(parts[1])
    return layers


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_layers_below(layer: str) -> None:
    bad = {
        str(p.relative_to(ROOT)): sorted(imported_layers(p) - ALLOWED[layer])
        for p in sorted((ROOT / layer).rglob("*.py"))
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from sparseflow.simulator.plot import plot_report\n")
    assert imported_layers(module) - ALLOWED["ir"] == {"simulator"}
