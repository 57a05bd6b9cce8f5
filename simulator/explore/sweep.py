"""Run a design-space sweep into a results store: choose points, evaluate the missing ones.

`run_sweep` opens (or resumes) the store in the output folder, evaluates the base design
and the points the search chooses that the store lacks, and returns every stored record.
Points whose design cannot be built (a loader rejection, options that do not combine) are
recorded as infeasible at once, without dispatch; the rest run on the pool. Each finished
point is judged against the objectives and constraints and appended to the store before
the next result is taken. An interrupt (KeyboardInterrupt) stops the workers and leaves
the store with every finished point; the exception propagates.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sparseflow.ir.errors import InputError
from sparseflow.simulator.explore.evaluate import record
from sparseflow.simulator.explore.execute import Pool, check_backend, open_pool, run_tasks
from sparseflow.simulator.explore.metrics import MetricSource, judge
from sparseflow.simulator.explore.points import (
    BASE_ID,
    Design,
    Point,
    design,
    make_point,
    planned_points,
)
from sparseflow.simulator.explore.space import Space
from sparseflow.simulator.explore.store import Store, open_store

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SweepRun:
    """What a sweep left: every stored record, how many are new, and whether it finished."""

    records: list[dict[str, Any]]
    new: int
    complete: bool


def run_sweep(
    space: Space,
    out: str | Path,
    *,
    jobs: int | None = None,
    cluster: str | None = None,
    budget: int | None = None,
    force: bool = False,
    metrics: MetricSource | None = None,
    progress: Progress | None = None,
) -> SweepRun:
    """Evaluate the space's missing points into `out` (see the module doc).

    `budget` overrides the space's `search.budget`; `progress(done, total)` is called as
    points finish (total: the points this run means to evaluate).
    """
    check_backend(cluster, jobs)
    if budget is not None and (type(budget) is not int or budget < 1):
        raise InputError(f"--budget: expected an integer >= 1, got {budget!r}")
    budget = budget if budget is not None else space.search.budget
    if space.search.method != "grid" and budget is None:
        raise InputError(f"{space.file}: field 'search.budget': {space.search.method} needs one")
    store = open_store(Path(out), space.identity(), asdict(space.search), force)
    limit = space.search.time_limit_s
    deadline = None if limit is None else time.monotonic() + limit
    try:
        with _Runner(space, store, (cluster, jobs), metrics, progress, deadline) as runner:
            complete = _search(space, store, runner, budget)
            return SweepRun(list(store.records.values()), runner.new, complete)
    finally:
        store.close()


def _search(space: Space, store: Store, runner: _Runner, budget: int | None) -> bool:
    if space.search.method != "nsga2":
        return runner.evaluate(planned_points(space, budget, space.search.seed))
    from sparseflow.simulator.explore.search import nsga2  # optuna loads only for NSGA-II

    assert budget is not None
    stored = sum(r["id"] != BASE_ID for r in store.records.values())
    runner.total = max(min(budget, space.size) - stored, 0) + (BASE_ID not in store.records)
    if not runner.evaluate([make_point({})]):
        return False
    return nsga2(space, store.records, runner.evaluate, budget)


class _Runner(contextlib.ExitStack):
    """Evaluate points of one space into the store; opens the pool when first needed."""

    def __init__(
        self,
        space: Space,
        store: Store,
        backend: tuple[str | None, int | None],
        metrics: MetricSource | None,
        progress: Progress | None,
        deadline: float | None,
    ) -> None:
        super().__init__()
        self.space, self.store, self.backend = space, store, backend
        self.metrics, self.progress, self.deadline = metrics, progress, deadline
        self.pool: Pool | None = None
        self.new = 0
        self.total: int | None = None

    def evaluate(self, points: list[Point]) -> bool:
        """Evaluate the points the store lacks; False when the time limit stopped it."""
        missing = list({p.id: p for p in points if p.id not in self.store.records}.values())
        if self.total is None:
            self.total = len(missing)
        designs = [d for d in map(self._design, missing) if d is not None]
        if not designs:
            return True
        if self.pool is None:
            self.pool = self.enter_context(open_pool(*self.backend))
        return run_tasks(designs, self.pool, self.metrics, self._finish, self.deadline)

    def _design(self, point: Point) -> Design | None:
        try:
            return design(self.space, point)
        except InputError as err:
            self._finish([record(point.id, point.values, "infeasible", str(err), wall_s=0.0)])
            return None

    def _finish(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self.store.append(self._judged(r))
            self.new += 1
            if self.progress:
                self.progress(self.new, max(self.total or 0, self.new))

    def _judged(self, r: dict[str, Any]) -> dict[str, Any]:
        if r["status"] != "ok":
            return {**r, "objectives": {}, "constraints": {}, "violation": None, "metrics": {}}
        try:
            verdict = judge(r["metrics"], self.space.objectives, self.space.constraints)
        except KeyError as err:
            return {**r, "status": "error", "reason": f"the report has no {err}"}
        status = "infeasible" if verdict["reason"] else "ok"
        return {**r, **verdict, "status": status}
