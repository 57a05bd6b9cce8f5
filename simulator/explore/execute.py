"""Where design points run, and how they are fed to the workers.

Every backend is a `concurrent.futures.Executor`: a local `ProcessPoolExecutor` (`--jobs N`,
default all cores), the executor of a `distributed.Client` connected to an existing Dask
scheduler (`--cluster tcp://host:port`), or Ray's futures (`--cluster ray://host:port`,
when ray is installed). No scheduling of our own: `run_tasks` only groups points into tasks
and keeps the executor busy.

Points sharing a compressed model (same model, recipe, batch, prompt) go into the same
tasks, one group after another, so each worker compresses a model once (evaluate.py keeps
it) and reuses it for every hardware point. A task holds as many points as run for about
`TASK_TARGET_S` at the measured time per point (one point until a time is measured), but
no more than keeps every worker busy on the group. At most two tasks per worker are in
flight, so an interrupt or a time limit stops after at most that much work.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sparseflow.ir.errors import InputError, SparseflowError
from sparseflow.simulator.explore.evaluate import Task, evaluate_task
from sparseflow.simulator.explore.metrics import MetricSource
from sparseflow.simulator.explore.points import Design

# Dispatching a task costs about a millisecond in a local pool and several on a cluster
# (pickling, a network round trip); tasks of 0.2 s keep that below a few percent.
TASK_TARGET_S = 0.2
TASKS_PER_WORKER = 2
CONNECT_TIMEOUT_S = 10
CLUSTER_SCHEMES = ("tcp://", "tls://", "ray://")


class WorkerLost(SparseflowError):
    """A worker died (killed, out of memory) while evaluating points."""


@dataclass(frozen=True)
class Pool:
    """An executor and its number of workers (tasks it runs at once)."""

    executor: Executor
    workers: int


def check_backend(cluster: str | None, jobs: int | None) -> None:
    """Raise InputError for a malformed --cluster address or --jobs count."""
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise InputError(f"--jobs: expected an integer >= 1, got {jobs!r}")
    if cluster is not None and not cluster.startswith(CLUSTER_SCHEMES):
        raise InputError(
            f"--cluster {cluster}: expected a Dask scheduler (tcp://host:port, tls://...) "
            "or a Ray cluster (ray://host:port)"
        )


@contextmanager
def open_pool(cluster: str | None, jobs: int | None) -> Iterator[Pool]:
    """Yield the executor for `cluster` (None: a local process pool of `jobs` workers)."""
    check_backend(cluster, jobs)
    if cluster is None:
        opened = _local(jobs or os.cpu_count() or 1)
    elif cluster.startswith("ray://"):
        opened = _ray(cluster)
    else:
        opened = _dask(cluster)
    with opened as pool:
        yield pool


@contextmanager
def _local(jobs: int) -> Iterator[Pool]:
    executor = ProcessPoolExecutor(max_workers=jobs, initializer=_ignore_interrupts)
    try:
        yield Pool(executor, jobs)
    except BaseException:
        _terminate(executor)
        raise
    executor.shutdown(wait=True)


def _ignore_interrupts() -> None:
    """Leave Ctrl-C to the main process, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _terminate(executor: ProcessPoolExecutor) -> None:
    """Cancel queued tasks and end the worker processes now."""
    # Python 3.14 has executor.terminate_workers(); before it the processes are only
    # reachable through this attribute, which shutdown() clears.
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()


@contextmanager
def _dask(address: str) -> Iterator[Pool]:
    try:
        import distributed
    except ImportError:
        raise InputError(
            f"--cluster {address}: Dask's `distributed` is not installed "
            "(pip install 'sparseflow[cluster]')"
        ) from None
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise InputError(f"--cluster {address}: cannot reach the Dask scheduler: {err}") from None
    executor = client.get_executor(pure=False)
    workers = max(1, sum(client.nthreads().values()))
    try:
        yield Pool(executor, workers)
    except BaseException:
        executor.shutdown(wait=False)  # cancels the tasks not yet finished
        raise
    finally:
        client.close()


class _RayExecutor(Executor):
    """Ray tasks as `concurrent.futures` futures (ObjectRef.future())."""

    def __init__(self, ray: Any) -> None:
        self._ray = ray

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """Run `fn(*args, **kwargs)` as a Ray task."""
        return self._ray.remote(fn).remote(*args, **kwargs).future()


@contextmanager
def _ray(address: str) -> Iterator[Pool]:
    try:
        import ray
    except ImportError:
        raise InputError(
            f"--cluster {address}: ray is not installed (pip install 'ray[client]')"
        ) from None
    ray.init(address=address)
    try:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        yield Pool(_RayExecutor(ray), workers)
    finally:
        ray.shutdown()


def run_tasks(
    designs: list[Design],
    pool: Pool,
    metrics: MetricSource | None,
    on_records: Callable[[list[dict[str, Any]]], None],
    deadline: float | None,
) -> bool:
    """Evaluate the designs on the pool, passing records on as tasks finish.

    Return False when the deadline (a `time.monotonic()` value) stopped the submissions
    before every design ran. Raise WorkerLost when a worker dies.
    """
    feeder = _Feeder(designs, pool.workers, metrics)
    pending: dict[Future, Task] = {}
    while True:
        while len(pending) < TASKS_PER_WORKER * pool.workers and not _expired(deadline):
            task = feeder.next_task()
            if task is None:
                break
            pending[pool.executor.submit(evaluate_task, task)] = task
        if not pending:
            return feeder.empty
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            pending.pop(future)
            records = _result(future)
            feeder.observe(records)
            on_records(records)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _result(future: Future) -> list[dict[str, Any]]:
    try:
        return future.result()
    except Exception as err:  # a task never raises: only its worker can fail
        problem = type(err).__name__
        raise WorkerLost(f"a worker stopped while evaluating points ({problem})") from err


class _Feeder:
    """Cut the designs into tasks: group by compressed model, size by measured time."""

    def __init__(self, designs: list[Design], workers: int, metrics: MetricSource | None):
        groups: dict[tuple, list[Design]] = {}
        for d in designs:
            groups.setdefault(d.compress_key, []).append(d)
        self.groups = deque(groups.values())
        self.workers = workers
        self.metrics = metrics
        self.point_s: float | None = None

    @property
    def empty(self) -> bool:
        """Return whether every design has been handed out."""
        return not any(self.groups)

    def next_task(self) -> Task | None:
        """Return the next task, or None when every design has been handed out."""
        while self.groups and not self.groups[0]:
            self.groups.popleft()
        if not self.groups:
            return None
        group = self.groups[0]
        size = self._size(len(group))
        taken, group[:size] = group[:size], []
        first = taken[0]
        points = tuple((d.point.id, d.point.values, d.hw, d.request.gen_len) for d in taken)
        model, recipe, batch, prompt_len = first.compress_key
        return Task(model, recipe, batch, prompt_len, points, self.metrics)

    def _size(self, left: int) -> int:
        if self.point_s is None:
            return 1
        wanted = math.ceil(TASK_TARGET_S / max(self.point_s, 1e-6))
        return max(1, min(wanted, math.ceil(left / self.workers)))

    def observe(self, records: list[dict[str, Any]]) -> None:
        """Update the time per point from finished records (a running mean)."""
        for r in records:
            seconds = r.get("wall_s") or 0.0
            self.point_s = seconds if self.point_s is None else 0.8 * self.point_s + 0.2 * seconds
