"""Pareto fronts and hypervolumes against brute-force references on random points."""

import itertools

import numpy as np
import pytest

from sparseflow.simulator.explore.metrics import Objective
from sparseflow.simulator.explore.pareto import front_summary, hypervolume, pareto_mask


def brute_front(costs: np.ndarray) -> list[bool]:
    """Pairwise: a point is kept unless another is <= everywhere and < somewhere."""
    n = len(costs)
    return [
        not any(
            all(costs[j][k] <= costs[i][k] for k in range(costs.shape[1]))
            and any(costs[j][k] < costs[i][k] for k in range(costs.shape[1]))
            for j in range(n)
            if j != i
        )
        for i in range(n)
    ]


def brute_volume(costs: np.ndarray, reference: np.ndarray) -> float:
    """Cut space into the grid of all point coordinates; add up the dominated cells."""
    axes = [np.unique(np.append(costs[:, k], reference[k])) for k in range(costs.shape[1])]
    volume = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        low = np.array([axes[k][i] for k, i in enumerate(cell)])
        high = np.array([axes[k][i + 1] for k, i in enumerate(cell)])
        if np.any(np.all(costs <= low, axis=1)):
            volume += float(np.prod(high - low))
    return volume


@pytest.mark.parametrize("n, d, seed", [(1, 2, 0), (12, 2, 1), (25, 2, 2), (15, 3, 3), (9, 4, 4)])
def test_front_and_volume_match_brute_force(n, d, seed):
    rng = np.random.default_rng(seed)
    costs = rng.random((n, d))
    costs[n // 2 :] = np.round(costs[n // 2 :], 1)  # ties and repeated coordinates
    assert list(pareto_mask(costs)) == brute_front(costs)
    reference = np.full(d, 1.1)
    assert hypervolume(costs, reference) == pytest.approx(brute_volume(costs, reference), 1e-12)


def test_volume_edge_cases():
    reference = np.array([1.0, 1.0])
    assert hypervolume(np.empty((0, 2)), reference) == 0.0
    assert hypervolume(np.array([[2.0, 0.5]]), reference) == 0.0  # beyond the reference
    assert hypervolume(np.array([[0.5, 0.5], [0.5, 0.5]]), reference) == 0.25
    assert hypervolume(np.array([[0.0, 0.0, 0.0]]), np.ones(3)) == 1.0
    assert hypervolume(np.array([[0.25], [0.5]]), np.ones(1)) == 0.75


def test_summary_orients_maximised_objectives_and_states_the_reference():
    records = [
        {"id": "a", "status": "ok", "objectives": {"speed": 10.0, "energy": 2.0}},
        {"id": "b", "status": "ok", "objectives": {"speed": 20.0, "energy": 4.0}},
        {"id": "c", "status": "ok", "objectives": {"speed": 15.0, "energy": 5.0}},  # dominated
        {"id": "d", "status": "infeasible", "objectives": {}},
    ]
    objectives = (Objective("speed", maximize=True), Objective("energy", maximize=False))
    front, volume = front_summary(records, objectives)
    assert [r["id"] for r in front] == ["a", "b"]
    # normalised: a = (1, 0), b = (0, 2/3); reference (1.1, 1.1)
    assert volume["value"] == pytest.approx(0.1 * 1.1 + 1.0 * (1.1 - 2 / 3))
    assert volume["reference_point"] == pytest.approx({"speed": 9.0, "energy": 5.3})
    assert volume["ideal_point"] == {"speed": 20.0, "energy": 2.0}
    assert front_summary(records[3:], objectives)[0] == []
