"""Validate the GPU models against every measured row of their calibration files.

For each GPU target with measurements (hw_models/measurements/TARGET.csv: the rows of the GPU
calibration notes, sources S1-S4 and FlightLLM, each with its source), print the shipped
model's prediction of every measured value and its error. `fit` rows were used to calibrate
the model (`sparseflow calibrate`, the command is at the top of each hw_models/TARGET.yaml),
`check` rows never were. End-to-end rows also show output tokens per second (batch x
generated tokens / end-to-end latency), the throughput the calibration notes quote. Each
target ends with the modelled efficiency of one GEMM shape from decode (M = 1) to long
prompts (M = 16384): the kernel efficiency model as a function of shape.

    python examples/validate_gpus.py [--leave-one-out]

With --leave-one-out, each calibration is run again from its prior model
(hw_models/measurements/TARGET.prior.yaml) and every fit row also gets the error of a fit
that never saw it: minutes per target.
"""

from __future__ import annotations

import argparse
import math

from sparseflow.hw_models.loader import HW_DIR, load_hw
from sparseflow.ir.ops import OpClass
from sparseflow.ir.types import parse_type
from sparseflow.simulator.analytical import KernelWork, estimate_kernel
from sparseflow.simulator.calibrate import calibrate
from sparseflow.simulator.measurements import Measurement, read_measurements
from sparseflow.simulator.predict import Predictor

MEASUREMENTS = HW_DIR / "measurements"
TARGETS = ("a100-40gb", "a100", "h100", "v100s")
# The fields each calibration fits (None: the defaults of its kind), as its YAML records.
FIT_FIELDS = {
    "a100": ["efficiency.memory_bandwidth_efficiency", "efficiency.compute_memory_overlap"],
    "v100s": ["power.busy_power_w"],
}
GEMM_ROWS = (1, 16, 128, 1024, 16384)
UNITS = {"decode_tokens_per_s": "tok/s", "ttft_s": "s", "e2e_s": "s", "avg_power_w": "W"}


def rel(ours: float, measured: float) -> str:
    return "n/a" if math.isnan(ours) else f"{ours / measured - 1:+.1%}"


def validate(target: str, leave_one_out: bool) -> list[float]:
    """Print the target's table; return the relative errors of its check rows."""
    rows = read_measurements(MEASUREMENTS / f"{target}.csv")
    hw = load_hw(target)
    predicted = Predictor(hw, rows).predict(hw, range(len(rows)), split=True)
    held = [[math.nan] * len(r.metrics) for r in rows]
    if leave_one_out:
        prior = load_hw(MEASUREMENTS / f"{target}.prior.yaml")
        result = calibrate(prior, rows, FIT_FIELDS.get(target))
        by_row = {(r.row.line, r.metric): r.held_out for r in result.results if r.row.role == "fit"}
        held = [[by_row.get((r.line, m), math.nan) for m, _ in r.metrics] for r in rows]
    print(f"\n{target}: {hw.description}")
    print(f"{'line':>4} {'role':<5} {'request':<30} {'metric':<26} {'measured':>9} "
          f"{'ours':>9} {'error':>7}" + (f" {'held out':>8}" if leave_one_out else ""))  # fmt: skip
    check_errors = []
    for row, ours, out in zip(rows, predicted, held, strict=True):
        for (metric, measured), value, held_out in zip(row.metrics, ours, out, strict=True):
            label = f"{metric} {UNITS[metric]}" + _tokens_per_s(row, metric, measured, value)
            line = (
                f"{row.line:>4} {row.role:<5} {row.label[:30]:<30} {label:<26} "
                f"{measured:>9.4g} {value:>9.4g} {rel(value, measured):>7}"
            )
            print(line + (f" {rel(held_out, measured):>8}" if leave_one_out else ""))
            if row.role == "check":
                check_errors.append(value / measured - 1)
    return check_errors


def gemm_curve(target: str) -> None:
    """Print the modelled efficiency of a 4096 x 4096 FP16 GEMM (a Llama-2-7B projection)."""
    hw = load_hw(target)
    cells = []
    for m in GEMM_ROWS:
        work = KernelWork(
            "gemm", OpClass.LINEAR, flops=2 * m * 4096 * 4096,
            activation_bytes_read=m * 4096 * 2, bytes_written=m * 4096 * 2,
            weights=(parse_type("f16[4096,4096]"),),
        )  # fmt: skip
        t = estimate_kernel(hw, work)
        cells.append(f"M={m}: {t.compute_utilization:.0%} of peak FLOP/s, "
                     f"{t.bandwidth_utilization:.0%} of peak bandwidth")  # fmt: skip
    print("  GEMM [M x 4096] x [4096 x 4096], FP16: " + "; ".join(cells))


def _tokens_per_s(row: Measurement, metric: str, measured: float, ours: float) -> str:
    if metric != "e2e_s":
        return ""
    tokens = row.batch * row.gen
    return f" ({tokens / measured:.1f}/{tokens / ours:.1f} tok/s)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leave-one-out", action="store_true", help="re-fit without each row")
    args = parser.parse_args(argv)
    for target in TARGETS:
        validate(target, args.leave_one_out)
        gemm_curve(target)


if __name__ == "__main__":
    main()
