"""Predict measured runs on variants of one device, building each request's work only once.

`Predictor(hw, measurements)` compresses each row's model with its recipe and prepares the
request for `hw`'s kind: kernel works for GPU and CPU targets (`estimate.prepare_request`),
a compiled program for FPGA targets. `predict(variant, rows)` then runs only the timing and
energy model of a variant of `hw` (same organisation, other efficiencies or power figures),
which is what a calibration fit evaluates many times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sparseflow.backends.fpga.compiler import compile_program
from sparseflow.backends.fpga.program import Program
from sparseflow.backends.memory import deployed_weight_bytes
from sparseflow.backends.registry import CompileRequest
from sparseflow.hw_models.schema import FpgaModel, HardwareModel
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph, shape_only
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import load_recipe
from sparseflow.simulator.estimate import (
    PreparedRequest,
    Workload,
    estimate_prepared,
    prepare_request,
)
from sparseflow.simulator.fpga_estimate import check_fits, estimate_program
from sparseflow.simulator.measurements import METRIC_REPORT_KEYS, Measurement


@dataclass(frozen=True)
class CompiledRequest:
    """An FPGA request compiled once: its program, workload and deployed weight bytes."""

    program: Program
    workload: Workload
    weight_bytes: int


class Predictor:
    """Predict the measured values of rows on variants of one device."""

    def __init__(
        self,
        hw: HardwareModel,
        measurements: Sequence[Measurement],
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.measurements = tuple(measurements)
        graphs: dict[tuple[str, str, int, int], tuple[Graph, Graph]] = {}
        self.requests: list[PreparedRequest | CompiledRequest] = []
        for m in self.measurements:
            if progress:
                progress(f"prepare line {m.line}")
            key = (m.model, m.recipe, m.batch, m.prompt)
            if key not in graphs:
                graphs[key] = _compressed(m)
            self.requests.append(_prepared(hw, m, *graphs[key]))

    def measured(self, rows: Iterable[int]) -> np.ndarray:
        """Return the measured values of `rows`, row by row, in each row's column order."""
        return np.array([v for i in rows for _, v in self.measurements[i].metrics])

    def predict(
        self, hw: HardwareModel, rows: Iterable[int], split: bool = False
    ) -> np.ndarray | list[list[float]]:
        """Return the predictions on `hw` matching `measured(rows)` (one list per row if split)."""
        per_row = []
        for i in rows:
            report = _report(hw, self.requests[i])
            metrics = self.measurements[i].metrics
            per_row.append([float(report[METRIC_REPORT_KEYS[k]]) for k, _ in metrics])
        return per_row if split else np.array([v for values in per_row for v in values])


def _compressed(m: Measurement) -> tuple[Graph, Graph]:
    """Return the row's prefill and decode graphs, shape-only, compressed by its recipe."""
    prefill = shape_only(load_model(m.model, "prefill", m.batch, m.prompt))
    decode = shape_only(load_model(m.model, "decode", m.batch, "T"))
    compressed_prefill, compressed_decode = load_recipe(m.recipe).apply_model(prefill, decode)
    return compressed_prefill, compressed_decode or decode


def _prepared(
    hw: HardwareModel, m: Measurement, prefill: Graph, decode: Graph
) -> PreparedRequest | CompiledRequest:
    """Return the row's request ready to time on `hw`; InputError names the row's line."""
    workload = Workload(m.batch, m.prompt, m.gen)
    try:
        if not isinstance(hw, FpgaModel):
            return prepare_request(prefill, decode, hw, workload)
        check_fits(hw, decode, workload)
        request = CompileRequest(prefill, decode, hw, m.batch, m.prompt, m.gen + 1)
        return CompiledRequest(compile_program(request), workload, deployed_weight_bytes(decode))
    except InputError as err:
        raise InputError(f"{m.file}: line {m.line}: {m.label}: {err}") from None


def _report(hw: HardwareModel, request: PreparedRequest | CompiledRequest) -> dict[str, object]:
    if isinstance(request, PreparedRequest):
        return estimate_prepared(hw, request, {})
    if not isinstance(hw, FpgaModel):
        raise ValueError(f"{hw.name}: a compiled FPGA request needs an FPGA model")
    return estimate_program(request.program, hw, request.workload, {}, request.weight_bytes)
