"""Plot a sweep: every pair of objectives as a scatter, the Pareto front highlighted, the base
design marked. Feasible points are grey, front points red (a front of more than two
objectives shows as a cloud in each pair); infeasible points have no values and are left out."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sparseflow.simulator.explore.metrics import Objective
from sparseflow.simulator.explore.points import BASE_ID

PANEL_INCHES = 4.2


def plot_sweep(
    records: list[dict[str, Any]],
    front: list[dict[str, Any]],
    objectives: tuple[Objective, ...],
    path: str | Path,
    title: str,
) -> None:
    """Write the pairwise objective scatter of the feasible records to `path`."""
    pairs = list(itertools.combinations(objectives, 2)) or [(objectives[0], objectives[0])]
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(PANEL_INCHES * columns, PANEL_INCHES * rows), squeeze=False
    )
    feasible = [r for r in records if r["status"] == "ok"]
    base = [r for r in feasible if r["id"] == BASE_ID]
    for ax, (x, y) in zip(axes.flat, pairs, strict=False):
        _panel(ax, x, y, feasible, front, base)
    for ax in list(axes.flat)[len(pairs) :]:
        ax.set_visible(False)
    counts = f"{len(feasible)} feasible of {len(records)} evaluated, {len(front)} on the front"
    fig.suptitle(f"{title}\n{counts}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _panel(ax: Any, x: Objective, y: Objective, feasible: list, front: list, base: list) -> None:
    def coords(rs: list) -> tuple[list[float], list[float]]:
        return [r["objectives"][x.key] for r in rs], [r["objectives"][y.key] for r in rs]

    ax.scatter(*coords(feasible), s=12, c="0.7", label="feasible")
    ax.scatter(*coords(front), s=28, c="tab:red", label="Pareto front")
    if base:
        ax.scatter(*coords(base), s=160, marker="*", c="tab:blue", zorder=5, label="base design")
    ax.set_xlabel(f"{x.key} ({'max' if x.maximize else 'min'})")
    ax.set_ylabel(f"{y.key} ({'max' if y.maximize else 'min'})")
    ax.ticklabel_format(style="sci", scilimits=(-3, 4))  # 1e5 tokens/s as 1.2 x 1e5
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
