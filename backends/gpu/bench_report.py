"""Run `sparseflow bench gpu`: time every GPU kernel against a hardware model, as a table.

`bench_gpu` reads the peaks (fp32, fp16/int8 tensor-core rates, HBM bandwidth) from a gpu
hardware model and times the kernels with `run_gpu_bench`: on a real GPU at LLaMA-2-7B layer
sizes, with cuBLAS (torch or cupy) as the dense baseline when present; on numba's CUDA
simulator at tiny sizes, once each, with the record marked `"simulator": true` and a
`"warning"`, because simulated times measure Python threads, not a GPU. `format_gpu_bench`
prints the record as a fixed-width table, the simulator warning first.
"""

from __future__ import annotations

from collections.abc import Sequence

from sparseflow.backends.gpu.bench import peaks_from_gpu_model, run_gpu_bench
from sparseflow.backends.gpu.bench_cases import BenchShape
from sparseflow.backends.gpu.device import simulator_switching, using_simulator
from sparseflow.hw_models.loader import load_hw
from sparseflow.hw_models.schema import HardwareModel

# Sizes that the simulator runs in seconds: a few tokens, hidden 32 (the smallest sizes whose
# 2:4 and int4 groups still fill a metadata word and a group), a 16-entry KV cache.
SIMULATOR_SHAPE = BenchShape(
    tokens=4, hidden=32, group=16, heads=4, kv_heads=2, head_dim=8, kv_len=16
)
SIMULATOR_WARNING = (
    "numba CUDA simulator (no GPU found): the kernels ran as Python threads at tiny sizes; "
    "these times show that the kernels run, not how fast a GPU runs them"
)


def bench_gpu(
    hw: str | HardwareModel = "a100",
    *,
    kernels: Sequence[str] | None = None,
    repeats: int = 20,
) -> dict[str, object]:
    """Return the benchmark record of every GPU kernel (or those named) against `hw`'s peaks.

    The record has `device`, `simulator`, `hw`, `peaks`, `baseline` and one row per kernel
    (see `bench.bench_row`); on the simulator also `warning`.
    """
    model = load_hw(hw) if isinstance(hw, str) else hw
    peaks, bandwidth = peaks_from_gpu_model(model)
    simulated = using_simulator()
    with simulator_switching():
        record = run_gpu_bench(
            peaks,
            bandwidth,
            shape=SIMULATOR_SHAPE if simulated else None,
            kernels=kernels,
            warmup=0 if simulated else 3,
            repeats=1 if simulated else repeats,
            allow_simulator=True,
        )
    record["hw"] = model.name
    record["peaks"] = {**peaks, "hbm_bytes_per_s": bandwidth}
    if simulated:
        record["warning"] = SIMULATOR_WARNING
    return record


def _shape(shape: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in shape.items())


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


_HEADER = (
    f"{'kernel':<22} {'prec':<5} {'shape':<40} {'time_ms':>9} {'GFLOP/s':>9} {'GB/s':>9} "
    f"{'%flop':>8} {'%bw':>8} {'roof_ms':>9} {'bound':<7} {'cublas_ms':>9} {'x_cublas':>8}"
)


def format_gpu_bench(record: dict) -> str:
    """Return the benchmark record as a text table (times in ms, fractions in percent)."""
    lines = []
    if record.get("simulator"):
        lines.append(f"WARNING: {record.get('warning', SIMULATOR_WARNING)}")
    baseline = record.get("baseline") or "none found"
    lines.append(f"device: {record['device']}  peaks of: {record['hw']}  baseline: {baseline}")
    lines.append(_HEADER)
    for r in record["rows"]:
        cublas_ms = None if r["cublas_s"] is None else r["cublas_s"] * 1e3
        lines.append(
            f"{r['kernel']:<22} {r['precision']:<5} {_shape(r['shape']):<40} "
            f"{r['time_s'] * 1e3:>9.4g} {r['achieved_flop_per_s'] / 1e9:>9.3g} "
            f"{r['achieved_gb_per_s']:>9.3g} {r['flop_fraction_of_peak'] * 100:>8.3g} "
            f"{r['bandwidth_fraction_of_peak'] * 100:>8.3g} {r['roofline_s'] * 1e3:>9.3g} "
            f"{r['bound']:<7} {_num(cublas_ms, '.3f'):>9} {_num(r['speedup_vs_cublas'], '.2f'):>8}"
        )
    return "\n".join(lines)
