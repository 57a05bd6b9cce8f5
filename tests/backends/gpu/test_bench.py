"""Check the GPU benchmark: refusal on the simulator, row arithmetic, and case wiring."""

import numpy as np
import pytest

from sparseflow.backends.gpu import using_simulator
from sparseflow.backends.gpu.bench import (
    bench_row,
    measure_cases,
    peaks_from_gpu_model,
    resolve_peaks,
    run_gpu_bench,
    select_cases,
)
from sparseflow.backends.gpu.bench_cases import BenchCase, BenchShape, build_cases
from sparseflow.hw_models import load_hw
from sparseflow.ir.errors import InputError

TINY = BenchShape(tokens=3, hidden=32, group=8, heads=4, kv_heads=2, head_dim=8, kv_len=9)


@pytest.mark.skipif(not using_simulator(), reason="the refusal path needs the simulator")
def test_run_gpu_bench_refuses_on_simulator() -> None:
    with pytest.raises(InputError, match="CUDA simulator is active"):
        run_gpu_bench(1e12, 1e11, shape=TINY)


def test_resolve_peaks_accepts_one_rate_or_one_per_precision() -> None:
    assert resolve_peaks(5e12) == {"fp32": 5e12, "fp16": 5e12, "int8": 5e12}
    per = {"fp32": 1.0, "fp16": 2.0, "int8": 4}
    assert resolve_peaks(per) == {"fp32": 1.0, "fp16": 2.0, "int8": 4.0}
    with pytest.raises(InputError, match="missing precision"):
        resolve_peaks({"fp32": 1.0})
    with pytest.raises(InputError, match=r"peak_flop_per_s\[fp16\]=-1"):
        resolve_peaks({"fp32": 1.0, "fp16": -1.0, "int8": 1.0})


def test_bench_row_reports_fractions_roofline_and_speedup() -> None:
    case = BenchCase(
        "k", "fp32", {"n": 1}, flops=2e9, bytes=1e9, launch=lambda: None, dense_equivalent=None
    )
    row = bench_row(case, time_s=0.02, peak_flop_per_s=1e12, peak_bytes_per_s=1e11, baseline_s=0.04)
    assert row["achieved_flop_per_s"] == pytest.approx(1e11)
    assert row["achieved_gb_per_s"] == pytest.approx(50.0)
    assert row["flop_fraction_of_peak"] == pytest.approx(0.1)
    assert row["bandwidth_fraction_of_peak"] == pytest.approx(0.5)
    assert row["roofline_s"] == pytest.approx(0.01)  # memory floor 1e9 / 1e11 > 2e9 / 1e12
    assert row["bound"] == "memory"
    assert row["fraction_of_roofline"] == pytest.approx(0.5)
    assert row["speedup_vs_cublas"] == pytest.approx(2.0)


def test_select_cases_names_the_valid_kernels() -> None:
    cases = build_cases(TINY)
    assert [c.kernel for c in select_cases(cases, ["rope"])] == ["rope"]
    with pytest.raises(InputError, match="unknown nope; valid: gemm_fp32"):
        select_cases(cases, ["nope"])


def test_every_case_launches_and_counts_positive_work() -> None:
    cases = build_cases(TINY)
    assert len({c.kernel for c in cases}) == len(cases) == 11
    rows = measure_cases(
        cases, resolve_peaks(1e12), 1e11, warmup=0, repeats=1, baseline=None
    )  # on the simulator these times only show the wiring runs, not performance
    for row in rows:
        assert row["time_s"] > 0 and row["flops"] > 0 and row["bytes"] > 0
        assert np.isfinite(row["fraction_of_roofline"])


def test_peaks_from_gpu_model_reads_the_hardware_model() -> None:
    hw = load_hw("h100")
    peaks, bandwidth = peaks_from_gpu_model(hw)
    assert peaks == {
        "fp32": hw.peaks.fp32_flops_per_s,
        "fp16": hw.peaks.fp16_tensor_flops_per_s,
        "int8": hw.peaks.int8_tensor_ops_per_s,
    }
    assert bandwidth == hw.memory.hbm_bandwidth_bytes_per_s
    assert resolve_peaks(peaks) == peaks


def test_peaks_from_gpu_model_rejects_other_kinds() -> None:
    with pytest.raises(InputError, match="expected a gpu model"):
        peaks_from_gpu_model(load_hw("u280"))
