"""Build sf_accel_top and run the end-to-end program bench (ISA -> controller -> engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparseflow.backends.fpga.rtl import generate_rtl, sources_for, write_rtl
from sparseflow.backends.fpga.rtl.bench import PARAMS_ENV, RESULTS_ENV
from sparseflow.backends.fpga.rtl.generator import params_for_target
from sparseflow.backends.fpga.rtl.runner import build_and_test
from sparseflow.hw_models.loader import load_hw

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


@pytest.mark.rtl
def test_accel_top_generated_from_a_hardware_model(rtl_build_root: Path, verilator: str) -> None:
    """`rtl generate --target` RTL (memory styles, the model's depths) runs the same bench."""
    hw = load_hw("u280-small")
    params = params_for_target(hw)
    chain = params.engine.chain
    p = {"chain_len": chain.chain_len, "min_n": chain.min_n, "wbits": chain.wbits,
         "n_chains": params.engine.n_chains}  # fmt: skip
    build_dir = rtl_build_root / "top-u280-small"
    paths = write_rtl(build_dir / "src", params)
    assert "ram_style" in paths[2].read_text()
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
    assert rows and all(r["measured_cycles"] == r["model_cycles"] for r in rows)
