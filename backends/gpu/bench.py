"""Time the GPU kernels on a real device against the hardware model's peaks and cuBLAS.

`run_gpu_bench` refuses to run on numba's CUDA simulator unless asked (`allow_simulator`,
which marks the record `"simulator": true`): simulated timings say nothing about a GPU. Each
row reports the median wall time of `repeats` synchronised launches (launch overhead
included), achieved FLOP/s and bytes/s, their fractions of the peaks passed in, the roofline
floor max(flops / peak, bytes / bandwidth), and, for matrix kernels, the time of the
same-shaped dense cuBLAS call through torch or cupy when one of them sees the GPU.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

from sparseflow.backends.gpu.bench_cases import BenchCase, BenchShape, build_cases
from sparseflow.backends.gpu.cublas import find_cublas
from sparseflow.backends.gpu.device import cuda, using_simulator
from sparseflow.hw_models.schema import GpuModel, HardwareModel
from sparseflow.ir.errors import InputError

PRECISIONS = ("fp32", "fp16", "int8")


def peaks_from_gpu_model(hw: HardwareModel) -> tuple[dict[str, float], float]:
    """Return (op-rate peaks per precision, HBM bytes/s) of a GPU hardware model.

    fp16 and int8 take the tensor-core peaks: the device's true ceiling, which these CUDA-core
    kernels are not expected to approach (their fractions show the headroom left).
    """
    if not isinstance(hw, GpuModel):
        raise InputError(f"hardware model {hw.name}: kind {hw.kind}, expected a gpu model")
    peaks = {
        "fp32": hw.peaks.fp32_flops_per_s,
        "fp16": hw.peaks.fp16_tensor_flops_per_s,
        "int8": hw.peaks.int8_tensor_ops_per_s,
    }
    return peaks, hw.memory.hbm_bandwidth_bytes_per_s


def resolve_peaks(peak_flop_per_s: float | Mapping[str, float]) -> dict[str, float]:
    """Return the peak op rate per precision key; a single number applies to all of them."""
    if isinstance(peak_flop_per_s, Mapping):
        missing = [p for p in PRECISIONS if p not in peak_flop_per_s]
        if missing:
            raise InputError(f"peak_flop_per_s: missing precision(s) {', '.join(missing)}")
        peaks = {p: peak_flop_per_s[p] for p in PRECISIONS}
    else:
        peaks = dict.fromkeys(PRECISIONS, peak_flop_per_s)
    for key, value in peaks.items():
        _check_rate(f"peak_flop_per_s[{key}]", value)
    return {k: float(v) for k, v in peaks.items()}


def _check_rate(name: str, value: object) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name}={value!r}: must be a finite number > 0")


def bench_row(
    case: BenchCase,
    time_s: float,
    peak_flop_per_s: float,
    peak_bytes_per_s: float,
    baseline_s: float | None,
) -> dict[str, object]:
    """Return the JSON-ready result row of one case timed at `time_s` seconds."""
    compute_floor_s = case.flops / peak_flop_per_s
    memory_floor_s = case.bytes / peak_bytes_per_s
    roofline_s = max(compute_floor_s, memory_floor_s)
    return {
        "kernel": case.kernel,
        "precision": case.precision,
        "shape": dict(case.shape),
        "time_s": time_s,
        "flops": case.flops,
        "bytes": case.bytes,
        "achieved_flop_per_s": case.flops / time_s,
        "achieved_gb_per_s": case.bytes / time_s / 1e9,
        "flop_fraction_of_peak": case.flops / time_s / peak_flop_per_s,
        "bandwidth_fraction_of_peak": case.bytes / time_s / peak_bytes_per_s,
        "roofline_s": roofline_s,
        "fraction_of_roofline": roofline_s / time_s,
        "bound": "compute" if compute_floor_s >= memory_floor_s else "memory",
        "cublas_s": baseline_s,
        "speedup_vs_cublas": None if baseline_s is None else baseline_s / time_s,
    }


def median_time_s(
    launch: Callable[[], object], synchronize: Callable[[], object], warmup: int, repeats: int
) -> float:
    """Return the median wall time of `repeats` launches, each followed by a synchronise."""
    for _ in range(warmup):
        launch()
    synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        launch()
        synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure_cases(
    cases: Sequence[BenchCase],
    peaks: Mapping[str, float],
    peak_bytes_per_s: float,
    *,
    warmup: int,
    repeats: int,
    baseline: tuple[str, Callable, Callable] | None,
) -> list[dict[str, object]]:
    """Return one result row per case (see `bench_row`), timing baselines where available."""
    rows = []
    for case in cases:
        time_s = median_time_s(case.launch, cuda.synchronize, warmup, repeats)
        baseline_s = None
        if baseline is not None and case.dense_equivalent is not None:
            _, make, synchronize = baseline
            dense_call = make(*case.dense_equivalent)
            if dense_call is not None:
                baseline_s = median_time_s(dense_call, synchronize, warmup, repeats)
        peak = peaks[case.precision]
        rows.append(bench_row(case, time_s, peak, peak_bytes_per_s, baseline_s))
    return rows


def run_gpu_bench(
    peak_flop_per_s: float | Mapping[str, float],
    peak_bandwidth_bytes_per_s: float,
    *,
    shape: BenchShape | None = None,
    kernels: Sequence[str] | None = None,
    warmup: int = 3,
    repeats: int = 20,
    seed: int = 0,
    allow_simulator: bool = False,
) -> dict[str, object]:
    """Time every GPU kernel (or those named in `kernels`) on the real GPU; return a record.

    Peaks come from the hardware model: op rates per precision ("fp32", "fp16", "int8"; one
    number for all) and off-chip bandwidth. Raises InputError on the CUDA simulator unless
    `allow_simulator` (then the times only show that the kernels run).
    """
    simulated = using_simulator()
    if simulated and not allow_simulator:
        raise InputError(
            "bench gpu: no GPU found (numba's CUDA simulator is active) and simulated timings"
            " are meaningless; run on a machine with an NVIDIA GPU"
        )
    peaks = resolve_peaks(peak_flop_per_s)
    _check_rate("peak_bandwidth_bytes_per_s", peak_bandwidth_bytes_per_s)
    if repeats < 1 or warmup < 0:
        raise InputError(f"repeats={repeats}, warmup={warmup}: need repeats >= 1, warmup >= 0")
    cases = select_cases(build_cases(shape or BenchShape(), seed), kernels)
    baseline = find_cublas()
    rows = measure_cases(
        cases,
        peaks,
        float(peak_bandwidth_bytes_per_s),
        warmup=warmup,
        repeats=repeats,
        baseline=baseline,
    )
    return {
        "device": _device_name(),
        "simulator": simulated,
        "repeats": repeats,
        "baseline": None if baseline is None else baseline[0],
        "rows": rows,
    }


def _device_name() -> str:
    if using_simulator():
        return "numba CUDA simulator"
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def select_cases(cases: Sequence[BenchCase], kernels: Sequence[str] | None) -> list[BenchCase]:
    """Return the cases named in `kernels` (all when None); unknown names raise InputError."""
    if kernels is None:
        return list(cases)
    known = [c.kernel for c in cases]
    unknown = [k for k in kernels if k not in known]
    if unknown:
        raise InputError(f"kernels: unknown {', '.join(unknown)}; valid: {', '.join(known)}")
    return [c for c in cases if c.kernel in kernels]
