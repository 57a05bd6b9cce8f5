"""Present a calibration: the fitted fields, and every measured value with its errors.

`format_calibration` is the text `sparseflow calibrate` prints; `calibration_record` the
JSON-ready record of the same. The held-out error of a `fit` row is its leave-one-out error
(predicted by a fit that did not see the row), of a `check` row the calibrated model's error.
"""

from __future__ import annotations

import math

from sparseflow.simulator.calibrate import Calibration, RowResult

UNITS = {"decode_tokens_per_s": "tok/s", "ttft_s": "s", "e2e_s": "s", "avg_power_w": "W"}


def calibration_record(calibration: Calibration) -> dict[str, object]:
    """Return the parameters (prior, fitted, bounds) and per-value results as plain data."""
    return {
        "target": calibration.hw.name,
        "parameters": [
            {
                "field": p.path,
                "prior": p.prior,
                "value": p.value,
                "lower": p.lower,
                "upper": p.upper,
                "fitted": p.fitted,
            }
            for p in calibration.parameters
        ],
        "rows": [_row_record(r) for r in calibration.results],
        "summary": error_summary(calibration),
    }


def _row_record(r: RowResult) -> dict[str, object]:
    return {
        "line": r.row.line,
        "role": r.row.role,
        "request": r.row.label,
        "metric": r.metric,
        "measured": r.measured,
        "predicted": r.fitted,
        "error": r.fit_error,
        "held_out_predicted": None if math.isnan(r.held_out) else r.held_out,
        "held_out_error": None if math.isnan(r.held_out) else r.held_out_error,
    }


def error_summary(calibration: Calibration) -> dict[str, float | None]:
    """Return the largest |error| of the fit and of the held-out predictions, per role."""
    summary: dict[str, float | None] = {}
    for role in ("fit", "check"):
        rows = [r for r in calibration.results if r.row.role == role]
        held = [abs(r.held_out_error) for r in rows if not math.isnan(r.held_out)]
        summary[f"{role}_max_error"] = max((abs(r.fit_error) for r in rows), default=None)
        summary[f"{role}_max_held_out_error"] = max(held, default=None)
    return summary


def format_calibration(calibration: Calibration) -> str:
    """Return the fitted fields and a table of every measured value, for the terminal."""
    lines = [f"calibrated {calibration.hw.name}:"]
    for p in calibration.parameters:
        state = "fitted" if p.fitted else "kept (not determined by the rows)"
        lines.append(
            f"  {p.path:<42} {p.prior:>10.4g} -> {p.value:<10.4g} "
            f"[{p.lower:.4g}, {p.upper:.4g}]  {state}"
        )
    lines.append(
        f"{'line':>5} {'role':<5} {'request':<34} {'metric':<20} {'measured':>10} "
        f"{'model':>10} {'error':>7} {'held-out':>10} {'error':>7}"
    )
    for r in calibration.results:
        held = "n/a" if math.isnan(r.held_out) else f"{r.held_out:.4g}"
        held_error = "n/a" if math.isnan(r.held_out) else f"{r.held_out_error:+.1%}"
        lines.append(
            f"{r.row.line:>5} {r.row.role:<5} {r.row.label[:34]:<34} "
            f"{r.metric + ' ' + UNITS[r.metric]:<20} {r.measured:>10.4g} {r.fitted:>10.4g} "
            f"{r.fit_error:>+7.1%} {held:>10} {held_error:>7}"
        )
    lines.append("held out: leave-one-out for fit rows, the calibrated model for check rows")
    return "\n".join(lines)
