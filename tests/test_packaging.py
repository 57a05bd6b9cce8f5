"""Packaging: a normal (non-editable) install must ship every subpackage and data file."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_python_folder_is_a_listed_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    skip = {"tests", "examples", "docs", ".ci", ".venv", "build"}
    found = {
        "sparseflow" + "".join("." + part for part in init.parent.relative_to(ROOT).parts)
        for init in ROOT.rglob("__init__.py")
        if not skip & set(init.relative_to(ROOT).parts)
    }
    assert found <= listed, sorted(found - listed)
    for package, patterns in config["package-data"].items():
        folder = ROOT.joinpath(*package.split(".")[1:])
        assert all(list(folder.glob(p)) for p in patterns), package
