"""Check `bench gpu`: the record against a hardware model, the simulator warning, the table."""

import json

import pytest

from sparseflow.backends.gpu import using_simulator
from sparseflow.backends.gpu.bench_report import SIMULATOR_WARNING, bench_gpu, format_gpu_bench
from sparseflow.hw_models.loader import load_hw
from sparseflow.ir.errors import InputError


@pytest.mark.skipif(not using_simulator(), reason="the warning path needs the simulator")
def test_bench_gpu_on_the_simulator_says_so() -> None:
    record = json.loads(json.dumps(bench_gpu("a100", kernels=["rope", "gemm_int8"])))
    assert record["simulator"] is True and record["warning"] == SIMULATOR_WARNING
    assert record["hw"] == "a100" and record["baseline"] is None
    hw = load_hw("a100")
    assert record["peaks"]["int8"] == hw.peaks.int8_tensor_ops_per_s
    assert [r["kernel"] for r in record["rows"]] == ["gemm_int8", "rope"]
    assert format_gpu_bench(record).startswith("WARNING: numba CUDA simulator")


def test_bench_gpu_rejects_a_non_gpu_model() -> None:
    with pytest.raises(InputError, match="expected a gpu model"):
        bench_gpu("u280")


def test_format_gpu_bench_prints_one_row_per_kernel() -> None:
    row = {
        "kernel": "gemm_fp16", "precision": "fp16", "shape": {"t": 512, "n": 4096, "k": 4096},
        "time_s": 2e-3, "achieved_flop_per_s": 8.6e12, "achieved_gb_per_s": 50.0,
        "flop_fraction_of_peak": 0.0275, "bandwidth_fraction_of_peak": 0.025,
        "roofline_s": 5.5e-5, "bound": "compute", "cublas_s": 1e-4, "speedup_vs_cublas": 0.05,
    }  # fmt: skip
    record = {"device": "GPU X", "simulator": False, "hw": "a100", "baseline": "t", "rows": [row]}
    lines = format_gpu_bench(record).splitlines()
    assert lines[0] == "device: GPU X  peaks of: a100  baseline: t"
    assert lines[2].split() == [
        "gemm_fp16", "fp16", "t=512,n=4096,k=4096", "2", "8.6e+03", "50", "2.75", "2.5",
        "0.055", "compute", "0.100", "0.05",
    ]  # fmt: skip
