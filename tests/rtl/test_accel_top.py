"""Build sf_accel_top and run the end-to-end program bench (ISA -> controller -> engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparseflow.backends.fpga.rtl import generate_rtl, sources_for
from sparseflow.backends.fpga.rtl.bench import PARAMS_ENV, RESULTS_ENV
from sparseflow.backends.fpga.rtl.runner import build_and_test

BENCH_DIR = Path(__file__).resolve().parent
DEPTH = 64  # matches cocotb_accel_top.DEPTH
TOP_SET = {"chain_len": 8, "min_n": 2, "wbits": 8, "n_chains": 2}


@pytest.mark.rtl
def test_accel_top_runs_a_linear_layer_program(rtl_build_root: Path, verilator: str) -> None:
    p = TOP_SET
    build_dir = rtl_build_root / "top-L{chain_len}-n{min_n}-w{wbits}-c{n_chains}".format(**p)
    depths = {f"{b}_depth": DEPTH for b in ("act", "weight", "bias", "out", "imem")}
    paths = generate_rtl(
        build_dir / "src",
        p["chain_len"],
        (p["min_n"], 16),
        p["wbits"],
        n_chains=p["n_chains"],
        **depths,
    )
    results = build_dir / "measured.json"
    build_and_test(
        "sf_accel_top",
        sources_for("sf_accel_top", paths),
        build_dir,
        "cocotb_accel_top",
        BENCH_DIR,
        {PARAMS_ENV: json.dumps(p), RESULTS_ENV: str(results)},
    )
    rows = json.loads(results.read_text())
    assert len(rows) == 4  # MM, MV, MV, whole program
    assert all(r["measured_cycles"] == r["model_cycles"] for r in rows)
