"""The `sparseflow` command line (see DESIGN.md for the contract)."""

from __future__ import annotations

import argparse
import sys

from sparseflow.ir.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="sparseflow", description=__doc__)
    parser.add_subparsers(dest="command", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return 0 on success, 2 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as err:
        print(f"sparseflow: error: {err}", file=sys.stderr)
        return 2
