"""The numbers of a report a sweep can optimise or bound, and extra metrics a caller adds.

A report (DESIGN.md "Report") flattens to dotted keys (`utilization.compute`); the keys
below are the numeric ones each target kind's estimate produces. A space file's objectives
and constraints must name one of them, or a key of the `MetricSource` the sweep was given
(for instance an accuracy metric computed from a compressed model with weights), so a typo
is an error before any evaluation. tests/simulator/explore/test_metrics.py checks this table
against real reports of every kind: a key the simulator adds must be listed here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sparseflow.backends.fpga.resources import KEYS
from sparseflow.hw_models.schema import Kind
from sparseflow.passes.recipe import Recipe
from sparseflow.simulator.power import COMPONENTS

REQUEST_METRICS = (
    "prefill_latency_s",
    "decode_first_step_s",
    "decode_mean_step_s",
    "decode_tokens_per_s",
    "e2e_latency_s",
    "energy_j",
    "energy_per_token_j",
    "tokens_per_j",
    "avg_power_w",
    "weight_bytes",
    "utilization.compute",
    "utilization.memory_bandwidth",
)
# Every report records how the batch's prompts were laid out (`simulator.estimate`).
BATCHING_METRICS = tuple(
    f"batching.{key}"
    for key in ("prompt_tokens", "prefill_tokens", "padding_fraction", "first_step_kv_tokens")
)
# FPGA reports add power and energy by component (`simulator.power`) and the resources.
FPGA_ENERGY_SPLIT = tuple(
    key for part in COMPONENTS for key in (f"energy_split_j.{part}_j", f"power_w.{part}")
) + ("energy_split_j.total_j",)
FPGA_RESOURCES = ("resources.cores",) + tuple(
    f"resources.{section}.{key}"
    for section in ("total", "utilization", "device")
    for key in (*KEYS, "lutram")
    if not (key == "lutram" and section != "total")
)
REPORT_METRICS: dict[Kind, tuple[str, ...]] = {
    Kind.FPGA: REQUEST_METRICS + BATCHING_METRICS + FPGA_ENERGY_SPLIT + FPGA_RESOURCES,
    Kind.GPU: REQUEST_METRICS + BATCHING_METRICS,
    Kind.CPU: REQUEST_METRICS + BATCHING_METRICS,
}
# Request sizes are inputs of a design point, not results: never objectives.
INPUT_KEYS = ("batch", "prompt_len", "gen_len")


@dataclass(frozen=True)
class MetricSource:
    """Metrics a sweep adds to every report, computed once per (model, recipe, request).

    `compute(model, recipe, request)` returns {key: number} for each of `keys`; `request`
    is {"batch", "prompt_len"}. It runs in the workers, so it must be a module-level
    function (picklable by reference).
    """

    keys: tuple[str, ...]
    compute: Callable[[str, Recipe, dict[str, int]], Mapping[str, float]]


def known_metrics(kinds: set[Kind], extra: MetricSource | None) -> list[str]:
    """Return the keys every target kind in `kinds` reports, plus the extra source's keys."""
    common = [k for k in REPORT_METRICS[Kind.FPGA] if all(k in REPORT_METRICS[x] for x in kinds)]
    return common + list(extra.keys if extra else ())


def flatten(report: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Return the report's numbers as {dotted key: float}, lists and labels left out."""
    out: dict[str, float] = {}
    for key, value in report.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, path))
        elif _is_number(value) and path not in INPUT_KEYS:
            out[path] = float(value)
    return out


def _is_number(value: Any) -> bool:
    try:
        return not isinstance(value, bool | str) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Objective:
    """A report key to minimize or maximize."""

    key: str
    maximize: bool

    @property
    def sense(self) -> str:
        """Return "maximize" or "minimize"."""
        return "maximize" if self.maximize else "minimize"

    def cost(self, value: float) -> float:
        """Return the value to minimize."""
        return -value if self.maximize else value


@dataclass(frozen=True)
class Constraint:
    """Bounds on a report key: lo <= value <= hi (either may be None)."""

    key: str
    lo: float | None
    hi: float | None

    def violation(self, value: float) -> float:
        """Return how far `value` lies outside the bounds, relative to the bound (0 inside)."""
        over = value - self.hi if self.hi is not None and value > self.hi else 0.0
        under = self.lo - value if self.lo is not None and value < self.lo else 0.0
        bound = self.hi if over else self.lo
        return (over + under) / max(abs(bound or 0.0), 1e-30) if over or under else 0.0

    def describe(self) -> str:
        """Return the constraint as text: `avg_power_w <= 75`."""
        parts = [f"{self.lo:g} <=" if self.lo is not None else "", self.key]
        parts.append(f"<= {self.hi:g}" if self.hi is not None else "")
        return " ".join(p for p in parts if p)


def judge(
    metrics: Mapping[str, float],
    objectives: tuple[Objective, ...],
    constraints: tuple[Constraint, ...],
) -> dict[str, Any]:
    """Return a design point's objective and constraint values, its total relative
    constraint violation and, when it violates any, the reason."""
    values = {c.key: metrics[c.key] for c in constraints}
    broken = [c for c in constraints if c.violation(values[c.key]) > 0]
    reason = "; ".join(f"violates {c.describe()}: {values[c.key]:.6g}" for c in broken)
    return {
        "objectives": {o.key: metrics[o.key] for o in objectives},
        "constraints": values,
        "violation": sum(c.violation(values[c.key]) for c in broken),
        "reason": reason or None,
    }
