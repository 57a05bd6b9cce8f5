"""The kernel dispatcher, the SpMM benchmark driver, its table and plot, and thread control."""

from __future__ import annotations

import json

import numba
import numpy as np
import pytest

from sparseflow.backends.cpu.bench import ROW_KEYS, default_cases, prune, run_spmm_bench
from sparseflow.backends.cpu.bench_report import format_spmm_table, plot_spmm
from sparseflow.backends.cpu.dispatch import choose_kernel, host_kernels
from sparseflow.backends.cpu.threads import SERIAL_MAX_BYTES, serial_below, set_threads
from sparseflow.ir.errors import InputError


def test_choose_kernel_switches_at_the_modelled_threshold() -> None:
    e = host_kernels().bsr_col_prefill
    sparse = choose_kernel(4096, 4096, 128, "block4x1", density=e / 2)
    dense = choose_kernel(4096, 4096, 128, "block4x1", density=min(1.0, e * 1.5))
    assert (sparse.kernel, sparse.sparse) == ("bsr_col", True)
    assert sparse.predicted_speedup == pytest.approx(2.0)
    assert (dense.kernel, dense.sparse) == ("dense_blas", False)


def test_choose_kernel_per_pattern_and_dtype() -> None:
    assert choose_kernel(768, 768, 1, "unstructured", 0.01).kernel == "csr"
    assert choose_kernel(768, 768, 128, "2:4", 1.0).kernel == "dense_blas"  # 2:4 is density 0.5
    assert choose_kernel(768, 768, 128, "1:16", 1.0).kernel == "nm"  # density 1/16
    assert choose_kernel(768, 768, 128, "block1x16", 0.05).kernel == "bsr_row"
    assert choose_kernel(768, 768, 128, "block4x1", 0.05, "int8").kernel == "int8_bsr"
    assert choose_kernel(768, 768, 128, "unstructured", 0.05, "int8").kernel == "int8_gemm"
    assert choose_kernel(768, 768, 1, "dense", 1.0, "int4").kernel == "int4_gemv"


@pytest.mark.parametrize(
    "args",
    [
        (768, 768, 1, "diagonal", 0.1),
        (768, 768, 1, "5:4", 0.1),
        (0, 768, 1, "dense", 1.0),
        (768, 768, 1, "dense", 1.5),
    ],  # fmt: skip
)
def test_choose_kernel_rejects_bad_input(args: tuple) -> None:
    with pytest.raises(InputError):
        choose_kernel(*args)


def test_prune_hits_the_requested_pattern() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64)).astype(np.float32) + 10.0
    blocks = prune(rng, w, "block4x1", 0.75) != 0
    assert np.array_equal(blocks[0::4], blocks[3::4])
    assert 0.15 < blocks.mean() < 0.35
    nm = (prune(rng, w, "2:4", 0.5) != 0).reshape(64, 16, 4).sum(axis=2)
    assert np.all(nm == 2)


def test_default_cases_cover_the_issue_sweep() -> None:
    full = default_cases()
    assert {(c["m"], c["k"]) for c in full} >= {(768, 768), (11008, 4096)}
    assert {c["n"] for c in full} == {1, 128}
    assert {c["sparsity"] for c in full if c["pattern"] == "block4x1"} == {0.5, 0.7, 0.8, 0.9, 0.95}
    assert len(default_cases(quick=True)) < len(full) / 10


def test_run_spmm_bench_rows_are_complete_and_json(tmp_path) -> None:
    cases = [
        {"m": 40, "k": 64, "n": 3, "pattern": "block4x1", "sparsity": 0.8, "dtype": "fp32"},
        {"m": 40, "k": 64, "n": 1, "pattern": "unstructured", "sparsity": 0.9, "dtype": "fp32"},
        {"m": 40, "k": 64, "n": 5, "pattern": "2:4", "sparsity": 0.5, "dtype": "fp32"},
        {"m": 40, "k": 64, "n": 2, "pattern": "block4x1", "sparsity": 0.7, "dtype": "int8"},
        {"m": 40, "k": 128, "n": 1, "pattern": "dense", "sparsity": 0.0, "dtype": "int4"},
    ]
    before = numba.get_num_threads()
    result = run_spmm_bench(cases, repeats=2, progress=False, threads=1)
    set_threads(before)
    json.dumps(result)
    assert len(result["rows"]) == len(cases)
    for row in result["rows"]:
        assert tuple(row) == ROW_KEYS
        assert row["dense_s"] > 0 and row["sparse_s"] > 0
        assert row["speedup_vs_dense"] == pytest.approx(row["dense_s"] / row["sparse_s"])
    assert result["rows"][-1]["scipy_s"] is None
    table = format_spmm_table(result)
    assert len(table.splitlines()) == len(cases) + 1 and "block4x1" in table
    png = plot_spmm(result, tmp_path / "bench.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rejects_bad_options() -> None:
    with pytest.raises(InputError, match="repeats"):
        run_spmm_bench([], repeats=0)
    with pytest.raises(InputError, match="threads"):
        set_threads(0)


def test_serial_below_runs_small_work_on_the_calling_thread() -> None:
    before = numba.get_num_threads()
    top = set_threads(numba.config.NUMBA_NUM_THREADS)["numba"]
    with serial_below(SERIAL_MAX_BYTES - 1):
        small = numba.get_num_threads()
    with serial_below(SERIAL_MAX_BYTES):
        large = numba.get_num_threads()
    with pytest.raises(InputError), serial_below(0):
        raise InputError("restored after an error")
    after = numba.get_num_threads()
    set_threads(before)
    assert (small, large, after) == (1, top, top)
