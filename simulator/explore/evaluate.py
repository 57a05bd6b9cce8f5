"""Evaluate design points in a worker: a task is a batch of points sharing compressed graphs.

A task holds points of one (model, recipe, batch, prompt length): the compressed graphs are
computed once per worker process and kept in a small cache, so every hardware point after
the first costs one estimate. The task returns one plain record per point:

    {"id", "values", "status": "ok" | "infeasible" | "error", "reason", "metrics", "wall_s"}

(`ok` records also carry `cpu_s`, the worker's CPU time: on a shared machine wall time
measures the load as much as the point.)

`infeasible` is an InputError of the design (it does not fit the device's memory, a pass
cannot apply, ...): the estimate refuses it before simulating. `error` is anything else (a
bug), recorded so that one bad point does not stop a sweep. A task never raises.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from sparseflow.hw_models.schema import HardwareModel
from sparseflow.ir.errors import InputError
from sparseflow.passes.recipe import Recipe
from sparseflow.simulator.design import CompressedModel, compress, estimate
from sparseflow.simulator.explore.metrics import MetricSource, flatten

COMPRESSED_CACHE_SIZE = 4  # compressed models kept per worker (a 7B shape-only graph: ~MBs)


@dataclass(frozen=True)
class Task:
    """Points of one compressed model: (id, values, hardware, gen_len) each."""

    model: str
    recipe: Recipe
    batch: int
    prompt_len: int
    points: tuple[tuple[str, dict[str, Any], HardwareModel, int], ...]
    metrics: MetricSource | None = None


def record(
    point_id: str, values: dict[str, Any], status: str, reason: str | None = None, **more: Any
) -> dict[str, Any]:
    """Return a point's record (module doc) with any further fields."""
    return {"id": point_id, "values": values, "status": status, "reason": reason, **more}


def evaluate_task(task: Task) -> list[dict[str, Any]]:
    """Estimate every point of the task; return their records (never raises)."""
    start = time.perf_counter()
    try:
        compressed, extra = _compressed(
            task.model, task.recipe, task.batch, task.prompt_len, task.metrics
        )
    except Exception as err:  # every point of the task shares the failure
        status = "infeasible" if isinstance(err, InputError) else "error"
        wall_s = (time.perf_counter() - start) / len(task.points)
        return [record(i, v, status, _reason(err), wall_s=wall_s) for i, v, _, _ in task.points]
    return [_estimate(compressed, extra, *point) for point in task.points]


@functools.lru_cache(maxsize=COMPRESSED_CACHE_SIZE)
def _compressed(
    model: str, recipe: Recipe, batch: int, prompt_len: int, metrics: MetricSource | None
) -> tuple[CompressedModel, dict[str, float]]:
    compressed = compress(model, recipe, batch=batch, prompt_len=prompt_len)
    request = {"batch": batch, "prompt_len": prompt_len}
    extra = dict(metrics.compute(model, recipe, request)) if metrics else {}
    return compressed, {k: float(v) for k, v in extra.items()}


def _estimate(
    compressed: CompressedModel,
    extra: dict[str, float],
    point_id: str,
    values: dict[str, Any],
    hw: HardwareModel,
    gen_len: int,
) -> dict[str, Any]:
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        report = estimate(
            compressed, hw, batch=compressed.batch, prompt_len=compressed.prompt_len,
            gen_len=gen_len,
        )  # fmt: skip
    except Exception as err:
        status = "infeasible" if isinstance(err, InputError) else "error"
        return record(point_id, values, status, _reason(err), wall_s=time.perf_counter() - start)
    metrics = {**flatten(report), **extra}
    seconds = {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu_start}
    return record(point_id, values, "ok", metrics=metrics, **seconds)


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if isinstance(err, InputError) else f"{type(err).__name__}: {text}"
