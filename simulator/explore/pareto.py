"""Pareto fronts and their exact hypervolume.

Costs are rows of objective values to minimize (a maximized objective enters negated). A
point is on the front when no other point is at least as good in every objective and
better in one. The hypervolume is the measure of the region the front dominates up to a
reference point, computed exactly by slicing along the last objective (HSO, While et al.,
IEEE TEC 2006) down to a sweep in two dimensions: O(n^(d-1) log n) for n points in d
objectives, fine for the fronts of a sweep (hundreds of points, a few objectives).

`front_summary` normalises each objective to [0, 1] between its best and worst feasible
value and takes the reference point 1.1 in every objective (10% beyond the worst), the
convention of most multi-objective benchmarks; it states the reference in raw units.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sparseflow.simulator.explore.metrics import Objective

REFERENCE = 1.1  # normalised reference point in every objective


def pareto_mask(costs: np.ndarray) -> np.ndarray:
    """Return which rows of `costs` [points, objectives] no other row dominates."""
    costs = np.asarray(costs, dtype=float)
    keep = np.ones(len(costs), dtype=bool)
    for i, row in enumerate(costs):
        dominated_by = np.all(costs <= row, axis=1) & np.any(costs < row, axis=1)
        keep[i] = not dominated_by.any()
    return keep


def hypervolume(costs: np.ndarray, reference: np.ndarray) -> float:
    """Return the exact volume dominated by `costs` and bounded by `reference`."""
    costs = np.asarray(costs, dtype=float)
    reference = np.asarray(reference, dtype=float)
    inside = costs[np.all(costs < reference, axis=1)] if len(costs) else costs
    if len(inside) == 0:
        return 0.0
    return _slice_volume(inside[pareto_mask(inside)], reference)


def _slice_volume(front: np.ndarray, reference: np.ndarray) -> float:
    if front.shape[1] == 1:
        return float(reference[0] - front[:, 0].min())
    if front.shape[1] == 2:
        return _area(front, reference)
    order = np.argsort(front[:, -1], kind="stable")
    ordered = front[order]
    tops = np.append(ordered[1:, -1], reference[-1])
    volume = 0.0
    for i in range(len(ordered)):
        height = tops[i] - ordered[i, -1]
        if height > 0:
            below = ordered[: i + 1, :-1]
            volume += _slice_volume(below[pareto_mask(below)], reference[:-1]) * height
    return volume


def _area(points: np.ndarray, reference: np.ndarray) -> float:
    """Return the area two-objective points dominate: a staircase swept along x."""
    ordered = points[np.argsort(points[:, 0], kind="stable")]
    lowest_y = np.minimum.accumulate(ordered[:, 1])
    widths = np.diff(np.append(ordered[:, 0], reference[0]))
    return float(np.sum(widths * (reference[1] - lowest_y)))


def front_summary(
    records: list[dict[str, Any]], objectives: tuple[Objective, ...]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the feasible records on the Pareto front and the front's hypervolume record."""
    feasible = [r for r in records if r["status"] == "ok"]
    if not feasible:
        return [], {"value": 0.0, "reference_point": {}, "ideal_point": {}}
    costs = np.array([[o.cost(r["objectives"][o.key]) for o in objectives] for r in feasible])
    best, worst = costs.min(axis=0), costs.max(axis=0)
    scale = np.where(worst > best, worst - best, 1.0)
    front = [r for r, keep in zip(feasible, pareto_mask(costs), strict=True) if keep]
    normalised = (costs - best) / scale
    volume = hypervolume(normalised, np.full(len(objectives), REFERENCE))
    return front, {
        "value": volume,
        "normalisation": "each objective scaled to [0, 1] from its best to its worst "
        f"feasible value; reference point {REFERENCE} in every objective",
        "reference_point": _raw(objectives, best + REFERENCE * scale),
        "ideal_point": _raw(objectives, best),
    }


def _raw(objectives: tuple[Objective, ...], costs: np.ndarray) -> dict[str, float]:
    """Return costs as objective values (maximized ones un-negated) by key."""
    return {o.key: o.cost(float(c)) for o, c in zip(objectives, costs, strict=True)}
