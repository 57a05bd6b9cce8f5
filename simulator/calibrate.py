"""Calibrate a device model against measured runs: fit bounded efficiency and power fields.

    calibrate(hw, measurements) -> Calibration

Residuals are log(predicted / measured) of every measured value of the `fit` rows (each row
predicted by the same estimate `sparseflow estimate` runs). The candidate fields
(`CANDIDATES`) are physically meaningful, bounded parameters (`parameter_bounds`), never the
device's organisation: peaks, bandwidths, capacities, clocks and the FPGA's compute
structure stay as published. Of the candidates, only the ones the rows determine are fitted:
a pivoted QR of the sensitivity matrix at the prior values keeps a field when its column
adds at least `IDENTIFIABLE` of the strongest column's weight (and never more fields than
measured values); the others keep their prior values and say so. The fit is a bounded
least-squares (scipy `least_squares`, trust region) in each field's bound interval.

Validation: every `fit` row is also predicted by a fit that leaves that row out
(leave-one-out), and every `check` row by the full fit; both are errors on data the fit did
not see.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import yaml
from scipy.optimize import least_squares

from sparseflow.hw_models.loader import hw_to_dict, with_overrides
from sparseflow.hw_models.schema import CpuModel, FpgaModel, GpuModel, HardwareModel, Kind
from sparseflow.ir.errors import InputError
from sparseflow.simulator.measurements import Measurement
from sparseflow.simulator.predict import Predictor

ANALYTICAL_CANDIDATES = (
    "efficiency.gemm_compute_efficiency",
    "efficiency.int8_gemm_compute_efficiency",
    "efficiency.memory_bandwidth_efficiency",
    "efficiency.compute_memory_overlap",
    "efficiency.kernel_launch_overhead_s",
    "power.busy_power_w",
)
CANDIDATES: dict[Kind, tuple[str, ...]] = {
    Kind.GPU: (*ANALYTICAL_CANDIDATES, "energy.pj_per_fp16_flop"),
    Kind.CPU: (*ANALYTICAL_CANDIDATES, "energy.pj_per_fp32_flop"),
    Kind.FPGA: (
        "hbm.same_channel_efficiency",
        "hbm.cross_channel_efficiency",
        "ddr.access_efficiency",
        "power.static_power_w",
    ),
}
# A kernel launch costs a few microseconds on current GPUs and CPU thread pools; 20 us bounds it.
MAX_LAUNCH_OVERHEAD_S = 20e-6
MIN_EFFICIENCY = 0.05  # below this a device would be broken, not slow
IDENTIFIABLE = 0.1  # smallest |R_kk| / |R_00| of a fitted field in the pivoted QR
# Moving a field across its whole bound interval costs as much as a 5% misfit of one value.
PRIOR_WEIGHT = 0.05
# Relative tolerances of the fits: measurements carry percent-level noise, and the rough
# fit only decides which fields the rows determine.
FIT_TOLERANCE = 1e-6
ROUGH_TOLERANCE = 1e-4
STEP = 0.02  # finite-difference step of the sensitivity matrix, in bound-interval units


@dataclass(frozen=True)
class Parameter:
    """One candidate field: its dotted path, bounds, prior value and whether it was fitted."""

    path: str
    lower: float
    upper: float
    prior: float
    value: float = math.nan
    fitted: bool = False

    def to_unit(self, value: float) -> float:
        """Return `value` as a position in [0, 1] of the bound interval."""
        return (min(max(value, self.lower), self.upper) - self.lower) / (self.upper - self.lower)

    def from_unit(self, unit: float) -> float:
        """Return the field value at position `unit` of the bound interval."""
        return self.lower + unit * (self.upper - self.lower)


@dataclass(frozen=True)
class RowResult:
    """One measured value with the calibrated model's prediction and a held-out prediction.

    `held_out` is the leave-one-out prediction of a fit row (NaN when no rows remain to fit)
    or, for a check row, the full fit's prediction: in both cases data the fit did not see.
    """

    row: Measurement
    metric: str
    measured: float
    fitted: float
    held_out: float

    @property
    def fit_error(self) -> float:
        """Return the calibrated model's relative error on this value."""
        return self.fitted / self.measured - 1

    @property
    def held_out_error(self) -> float:
        """Return the relative error of the prediction that did not see this value."""
        return self.held_out / self.measured - 1


@dataclass(frozen=True)
class Calibration:
    """The base and calibrated models, the candidate fields (prior and fitted) and results."""

    base: HardwareModel
    hw: HardwareModel
    parameters: tuple[Parameter, ...]
    results: tuple[RowResult, ...]


def parameter_bounds(hw: HardwareModel, path: str) -> Parameter:
    """Return the candidate field `path` of `hw` with its physical bounds and prior value."""
    prior = _get(hw, path)
    leaf = path.rsplit(".", 1)[-1]
    if leaf == "compute_memory_overlap":
        lower, upper = 0.0, 1.0
    elif leaf.endswith("efficiency"):
        lower, upper = MIN_EFFICIENCY, 1.0
    elif leaf == "kernel_launch_overhead_s":
        lower, upper = 0.0, MAX_LAUNCH_OVERHEAD_S
    elif leaf == "busy_power_w":
        # Idle plus busy power must stay below the power limit (the loader's rule).
        lower, upper = 0.0, 0.999 * (hw.power.tdp_w - hw.power.static_power_w)
    elif leaf in ("pj_per_fp16_flop", "pj_per_fp32_flop") and isinstance(hw, GpuModel | CpuModel):
        # Energy is not negative, and the path at its peak cannot spend more than the power
        # limit leaves above idle and DRAM at full bandwidth.
        lower, upper = 0.0, _budget_pj(hw, leaf)
    elif leaf == "static_power_w" and isinstance(hw, FpgaModel):
        lower, upper = 0.0, 0.999 * hw.power.board_power_budget_w
    else:
        raise InputError(f"field '{path}': not a calibratable field (one of {CANDIDATES})")
    return Parameter(path, lower, upper, prior)


def _budget_pj(hw: GpuModel | CpuModel, leaf: str) -> float:
    """Return the pJ per op at which a path at its peak, DRAM at full bandwidth, draws tdp_w."""
    if isinstance(hw, GpuModel):
        peak = {"pj_per_fp16_flop": hw.peaks.fp16_tensor_flops_per_s}.get(leaf)
        dram_w = hw.memory.hbm_bandwidth_bytes_per_s * hw.energy.pj_per_hbm_byte * 1e-12
    else:
        peak = {"pj_per_fp32_flop": hw.compute.peak_fp32_flops_per_s}.get(leaf)
        dram_w = hw.memory.dram_bandwidth_bytes_per_s * hw.energy.pj_per_dram_byte * 1e-12
    if peak is None:
        raise InputError(f"field 'energy.{leaf}': not a calibratable field for a {hw.kind}")
    return (hw.power.tdp_w - hw.power.static_power_w - dram_w) / peak * 1e12


def _get(hw: HardwareModel, path: str) -> float:
    value: object = hw
    for part in path.split("."):
        if not hasattr(value, part):
            raise InputError(f"{hw.source_file or hw.name}: field '{path}': no such field")
        value = getattr(value, part)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InputError(f"{hw.source_file or hw.name}: field '{path}': not a number")
    return float(value)


class Fit:
    """Residuals of the fit rows as a function of the candidate fields (in unit positions)."""

    def __init__(
        self, hw: HardwareModel, predictor: Predictor, parameters: Sequence[Parameter]
    ) -> None:
        self.hw = hw
        self.predictor = predictor
        self.parameters = tuple(parameters)

    def model(self, units: np.ndarray) -> HardwareModel:
        """Return the device with every candidate field set from `units`."""
        values = {
            p.path: p.from_unit(float(u)) for p, u in zip(self.parameters, units, strict=True)
        }
        return with_overrides(self.hw, values)

    def residuals(self, units: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        """Return log(predicted / measured) of every measured value of `rows`."""
        predicted = self.predictor.predict(self.model(units), rows)
        measured = self.predictor.measured(rows)
        return np.log(predicted / measured)

    def sensitivity(self, units: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        """Return d residual / d unit position of each field (central differences)."""
        columns = []
        for k in range(len(self.parameters)):
            up, down = units.copy(), units.copy()
            up[k], down[k] = min(units[k] + STEP, 1.0), max(units[k] - STEP, 0.0)
            delta = self.residuals(up, rows) - self.residuals(down, rows)
            columns.append(delta / (up[k] - down[k]))
        return np.stack(columns, axis=1)

    def solve(
        self,
        start: np.ndarray,
        free: Sequence[int],
        rows: Sequence[int],
        prior_weight: float = 0.0,
    ) -> np.ndarray:
        """Return the unit positions minimising the residuals of `rows` over the `free` fields.

        With `prior_weight` w, moving a field by u (unit positions) from `start` adds a
        residual w x u: fields the rows barely touch stay near their start.
        """
        if not free:
            return start
        index = list(free)

        def fun(x: np.ndarray) -> np.ndarray:
            units = start.copy()
            units[index] = x
            return np.concatenate([self.residuals(units, rows), prior_weight * (x - start[index])])

        tolerance = ROUGH_TOLERANCE if prior_weight else FIT_TOLERANCE
        solution = least_squares(
            fun, start[index], bounds=(0.0, 1.0), diff_step=1e-3,
            ftol=tolerance, xtol=tolerance, gtol=tolerance,
        )  # fmt: skip
        units = start.copy()
        units[index] = solution.x
        return units


def identifiable(sensitivity: np.ndarray) -> list[int]:
    """Return the fields the rows determine: pivoted QR of the sensitivity matrix."""
    if not np.any(sensitivity):
        return []
    _, r, pivots = scipy.linalg.qr(sensitivity, mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(r))
    keep = [
        int(p) for p, d in zip(pivots, diagonal, strict=False) if d >= IDENTIFIABLE * diagonal[0]
    ]
    return sorted(keep[: sensitivity.shape[0]])


def fit_determined(
    fit: Fit, prior: np.ndarray, rows: Sequence[int]
) -> tuple[np.ndarray, list[int]]:
    """Fit the fields `rows` determine; return the unit positions and the fitted fields.

    Which fields the rows determine depends on where the model sits (a kernel held at the
    power limit no longer shows its compute efficiency), so: (1) fit every field the rows
    touch at all, each held weakly at its prior (`PRIOR_WEIGHT`); (2) select the determined
    fields at that point (`identifiable`); (3) put the others back at their priors and fit
    the determined ones alone.
    """
    touched = np.flatnonzero(np.any(fit.sensitivity(prior, rows), axis=0)).tolist()
    rough = fit.solve(prior, touched, rows, PRIOR_WEIGHT)
    free = identifiable(fit.sensitivity(rough, rows))
    start = prior.copy()
    start[free] = rough[free]
    return fit.solve(start, free, rows), free


def calibrate(
    hw: HardwareModel,
    measurements: Sequence[Measurement],
    candidates: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
    leave_one_out: bool = True,
) -> Calibration:
    """Fit the candidate fields of `hw` to the `fit` rows; validate on held-out predictions.

    Without `leave_one_out` the held-out prediction of a fit row is NaN (saves one fit per row).
    """
    paths = candidates if candidates is not None else CANDIDATES[hw.kind]
    parameters = [parameter_bounds(hw, p) for p in paths]
    predictor = Predictor(hw, measurements, progress)
    fit = Fit(hw, predictor, parameters)
    fit_rows = [i for i, m in enumerate(measurements) if m.role == "fit"]
    if not fit_rows:
        raise InputError(f"{measurements[0].file}: no row has role 'fit'")
    prior = np.array([p.to_unit(p.prior) for p in parameters])
    units, free = fit_determined(fit, prior, fit_rows)
    # Four significant digits, as the YAML states them; results are computed with these.
    units = np.array(
        [p.to_unit(float(f"{p.from_unit(u):.4g}")) for p, u in zip(parameters, units, strict=True)]
    )
    calibrated = fit.model(units)
    fitted = predictor.predict(calibrated, range(len(measurements)), split=True)
    held_out = [list(v) for v in fitted]
    if leave_one_out:
        held_out = _held_out(fit, prior, fit_rows, measurements, fitted, progress)
    else:
        for i in fit_rows:
            held_out[i] = [math.nan] * len(fitted[i])
    results = [
        RowResult(measurements[i], metric, value, fitted[i][k], held_out[i][k])
        for i in range(len(measurements))
        for k, (metric, value) in enumerate(measurements[i].metrics)
    ]
    final = tuple(
        Parameter(p.path, p.lower, p.upper, p.prior, p.from_unit(u), k in free)
        for k, (p, u) in enumerate(zip(parameters, units, strict=True))
    )
    return Calibration(hw, calibrated, final, tuple(results))


def _held_out(
    fit: Fit,
    prior: np.ndarray,
    fit_rows: list[int],
    measurements: Sequence[Measurement],
    fitted: list[list[float]],
    progress: Callable[[str], None] | None,
) -> list[list[float]]:
    """Return each row's held-out predictions: leave-one-out for fit rows, the fit for checks.

    A left-out row's prediction comes from the whole procedure run without it (selection of
    the determined fields and the fit, from the prior values), so it owes nothing to the row.
    """
    held = [list(values) for values in fitted]
    for i in fit_rows:
        if progress:
            progress(f"leave out line {measurements[i].line}")
        others = [j for j in fit_rows if j != i]
        if not others:
            held[i] = [math.nan] * len(held[i])
            continue
        refit, _ = fit_determined(fit, prior, others)
        held[i] = fit.predictor.predict(fit.model(refit), [i], split=True)[0]
    return held


def calibrated_dict(calibration: Calibration, csv_label: str, name: str) -> dict[str, object]:
    """Return the calibrated model, named `name`, as YAML-ready data citing the fit.

    A fitted field's note names the CSV, its fit lines, the bounds, the prior and the largest
    leave-one-out error; a candidate the rows did not determine keeps its note and says so.
    """
    base = calibration.base
    sources, assumptions = dict(base.sources), dict(base.assumptions)
    fit_lines = sorted({r.row.line for r in calibration.results if r.row.role == "fit"})
    loo = [abs(r.held_out_error) for r in calibration.results if r.row.role == "fit"]
    loo = [e for e in loo if not math.isnan(e)]
    worst = f"; leave-one-out errors up to {max(loo):.1%}" if loo else ""
    for p in calibration.parameters:
        if p.fitted:
            assumptions.pop(p.path, None)
            sources[p.path] = (
                f"fitted by sparseflow calibrate to {csv_label} lines "
                f"{', '.join(map(str, fit_lines))}: bounds [{p.lower:.4g}, {p.upper:.4g}], "
                f"prior {p.prior:.4g}{worst}"
            )
            continue
        kept = f" (kept: {csv_label} does not determine it)"
        if p.path in sources:
            sources[p.path] += kept
        else:
            assumptions[p.path] = assumptions.get(p.path, "prior value") + kept
    noted = dataclasses.replace(calibration.hw, name=name, sources=sources, assumptions=assumptions)
    return hw_to_dict(noted)


def calibration_yaml(
    calibration: Calibration, csv_label: str, name: str, header: Sequence[str] = ()
) -> str:
    """Return the calibrated model as YAML text, `header` lines first as comments."""
    data = calibrated_dict(calibration, csv_label, name)
    comments = "".join(f"# {line}\n" for line in header)
    return comments + yaml.safe_dump(data, sort_keys=False, width=96, allow_unicode=False)
