"""The `sparseflow` command line (DESIGN.md fixes its contract).

Exit codes: 0 success, 2 bad input (one line naming the file, field or node), 1 internal error.
Each sub-command is a small function that calls into the library and formats the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from sparseflow.ir.errors import InputError

Handler = Callable[[argparse.Namespace], int]


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def cmd_targets(args: argparse.Namespace) -> int:
    """List the hardware models (targets) with their kind and default recipe."""
    from sparseflow.hw_models.loader import list_hw, load_hw

    rows = [load_hw(name) for name in list_hw()]
    if args.json:
        _print_json(
            [
                {
                    "name": h.name,
                    "kind": str(h.kind),
                    "default_recipe": h.default_recipe,
                    "description": h.description,
                }
                for h in rows
            ]
        )
        return 0
    for hw in rows:
        print(f"{hw.name:<12} {hw.kind!s:<5} {hw.default_recipe:<10} {hw.description}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    """List the built-in recipes and the passes they run."""
    from sparseflow.passes.recipe import list_recipes, load_recipe

    recipes = [load_recipe(name) for name in list_recipes()]
    if args.json:
        _print_json(
            [
                {
                    "name": r.name,
                    "description": r.description,
                    "passes": [s.pass_name for s in r.steps],
                }
                for r in recipes
            ]
        )
        return 0
    for recipe in recipes:
        passes = " -> ".join(s.pass_name for s in recipe.steps) or "(no passes)"
        print(f"{recipe.name:<10} {recipe.description}\n{'':<10} {passes}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="sparseflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, handler, help_text in [
        ("targets", cmd_targets, "list hardware models"),
        ("recipes", cmd_recipes, "list built-in compression recipes"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(func=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return 0 on success, 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as err:
        print(f"sparseflow: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparseflow: interrupted", file=sys.stderr)
        return 130
