"""NSGA-II over a design space: optuna's `NSGAIISampler` driven through ask and tell.

Each axis is one categorical parameter over the indices of its values (every value list
is discrete; indices also carry values that optuna cannot, such as lists). A generation of
`population` trials is asked for, its new points evaluated in parallel, and every trial is
told its objectives. An infeasible point is told as a violated constraint (one constraint,
`violation`: 0 when feasible, the summed relative excess over the space's bounds when it
breaks them, infinity when the design was rejected before any estimate), so NSGA-II's
constrained domination ranks it below every feasible point. A point asked for again is told
its stored result without a new evaluation. Resuming replays the stored points into the
study (`create_trial` + `add_trial`); the budget counts distinct points, replayed ones
included, so a rerun of a finished search evaluates nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution

from sparseflow.simulator.explore.points import (
    BASE_ID,
    Point,
    point_of_indices,
    value_indices,
)
from sparseflow.simulator.explore.space import Space

# NSGA-II asks for points it has seen (an elite copied whole); on a small space nearly every
# ask may be one, so asks are capped at this many per point of the budget.
MAX_ASKS_PER_POINT = 20
REJECTED = math.inf  # the violation of a design rejected before any estimate
CONSTRAINT = "violation"


def nsga2(
    space: Space,
    records: dict[str, dict[str, Any]],
    evaluate: Callable[[list[Point]], bool],
    budget: int,
) -> bool:
    """Run NSGA-II until `budget` distinct points are stored (earlier runs' included), the
    space is exhausted, or `evaluate` returns False (the time limit stopped it); `records`
    fills as points finish. Return False when the time limit stopped it."""
    directions = ["maximize" if o.maximize else "minimize" for o in space.objectives]
    population = min(space.search.population, max(budget, 2))
    sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=space.search.seed)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(directions=directions, sampler=sampler)
        distributions = {
            a.key: CategoricalDistribution(list(range(len(a.values)))) for a in space.axes
        }
        evaluated = _replay(space, study, records, distributions)
        goal, asks = min(budget, space.size), 0
        while evaluated < goal and asks < MAX_ASKS_PER_POINT * goal:
            asked = [study.ask(distributions) for _ in range(min(population, goal - evaluated))]
            points = [point_of_indices(space, t.params) for t in asked]
            finished = evaluate(points)
            for trial, point in zip(asked, points, strict=True):
                _tell(space, study, trial, records.get(point.id))
            asks += len(asked)
            evaluated = _replayable(records)
            if not finished:
                return False
        return True
    finally:
        optuna.logging.set_verbosity(verbosity)


def _replay(
    space: Space,
    study: optuna.Study,
    records: dict[str, dict[str, Any]],
    distributions: dict[str, CategoricalDistribution],
) -> int:
    """Add the stored points of this space to the study; return how many."""
    for record in records.values():
        if record["id"] == BASE_ID:
            continue
        point = Point(record["id"], record["values"])
        values, violation = _outcome(space, record)
        study.add_trial(
            optuna.trial.create_trial(
                params=value_indices(space, point),
                distributions=distributions,
                values=values,
                constraints={CONSTRAINT: violation},
            )
        )
    return _replayable(records)


def _replayable(records: dict[str, dict[str, Any]]) -> int:
    return sum(record_id != BASE_ID for record_id in records)


def _tell(
    space: Space, study: optuna.Study, trial: optuna.Trial, record: dict[str, Any] | None
) -> None:
    if record is None:  # not evaluated: the time limit stopped the generation
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    values, violation = _outcome(space, record)
    trial.set_constraint(CONSTRAINT, violation)
    study.tell(trial, values)


def _outcome(space: Space, record: dict[str, Any]) -> tuple[list[float], float]:
    """Return a record's objective values (zeros without an estimate) and its violation."""
    objectives = record.get("objectives") or {}
    if not objectives:
        return [0.0] * len(space.objectives), REJECTED
    return [objectives[o.key] for o in space.objectives], record.get("violation") or 0.0
