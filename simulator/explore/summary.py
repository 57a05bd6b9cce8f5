"""What a sweep reports: counts, the Pareto front, its hypervolume, the written designs.

`summarise` turns the stored records into the JSON record `explore --json` prints and
writes the designs (and the plot when asked); `format_summary` is its table for people.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from sparseflow.simulator.explore.export import write_designs
from sparseflow.simulator.explore.pareto import front_summary
from sparseflow.simulator.explore.points import BASE_ID
from sparseflow.simulator.explore.space import Space
from sparseflow.simulator.explore.store import RESULTS_FILE
from sparseflow.simulator.explore.sweep import SweepRun

MAX_ROWS = 40  # front rows printed in the table (--json has them all)


def summarise(
    space: Space, run: SweepRun, out: str | Path, plot_path: str | Path | None = None
) -> dict[str, Any]:
    """Return the sweep's result record; write OUT/designs and the plot."""
    out = Path(out)
    front, volume = front_summary(run.records, space.objectives)
    designs = write_designs(space, out, front)
    if plot_path is not None:
        from sparseflow.simulator.explore.plot import plot_sweep

        plot_sweep(run.records, front, space.objectives, plot_path, _title(space))
    status = Counter(r["status"] for r in run.records)
    base = next((r for r in run.records if r["id"] == BASE_ID), None)
    return {
        "space": space.file,
        "results": str(out / RESULTS_FILE),
        "complete": run.complete,
        "evaluated": len(run.records),
        "new": run.new,
        "feasible": status["ok"],
        "infeasible": status["infeasible"],
        "errors": status["error"],
        "objectives": {o.key: o.sense for o in space.objectives},
        "base": base,
        "front": [_row(r) for r in front],
        "hypervolume": volume,
        "designs": designs,
    }


def _title(space: Space) -> str:
    w = space.workload
    return f"{space.model} on {space.base_target} [{w['prompt']}, {w['gen']}] x {w['batch']}"


def _row(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "values", "objectives", "constraints", "metrics", "wall_s")
    return {k: r[k] for k in keys if k in r}


def format_summary(result: dict[str, Any]) -> str:
    """Return the result as text: counts, the front as a table, hypervolume, design files."""
    lines = [
        f"{result['evaluated']} points in {result['results']} ({result['new']} new): "
        f"{result['feasible']} feasible, {result['infeasible']} infeasible, "
        f"{result['errors']} errors" + ("" if result["complete"] else " (stopped early)"),
        "",
        f"Pareto front: {len(result['front'])} designs",
    ]
    lines += _table(result)
    volume = result["hypervolume"]
    reference = ", ".join(f"{k} {v:.4g}" for k, v in volume["reference_point"].items())
    lines += ["", f"hypervolume {volume['value']:.4f} (normalised; reference point: {reference})"]
    if result["designs"]:
        lines.append(f"designs written to {Path(result['designs'][0]['target']).parent}/")
    return "\n".join(lines)


def _table(result: dict[str, Any]) -> list[str]:
    front = result["front"][:MAX_ROWS]
    if not front:
        return ["  (no feasible design)"]
    axes = list(dict.fromkeys(k for r in front for k in r["values"]))
    objectives = list(result["objectives"])
    header = ["id", *axes, *objectives]
    rows = [
        [r["id"], *(_cell(r["values"].get(k, "base")) for k in axes)]
        + [f"{r['objectives'][k]:.4g}" for k in objectives]
        for r in front
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["  " + "  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True))
             for row in [header, *rows]]  # fmt: skip
    if len(result["front"]) > MAX_ROWS:
        lines.append(f"  ... {len(result['front']) - MAX_ROWS} more (--json lists them all)")
    return lines


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
