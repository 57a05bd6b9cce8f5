"""Build sf_matrix_engine per parameter set with Verilator and run its cocotb bench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparseflow.backends.fpga.rtl import generate_rtl, sources_for
from sparseflow.backends.fpga.rtl.bench import PARAMS_ENV, RESULTS_ENV
from sparseflow.backends.fpga.rtl.runner import build_and_test

BENCH_DIR = Path(__file__).resolve().parent
DEPTH = 64  # matches cocotb_matrix_engine.DEPTH
ENGINE_SETS = [
    {"chain_len": 8, "min_n": 2, "wbits": 8, "n_chains": 2},
    {"chain_len": 4, "min_n": 4, "wbits": 4, "n_chains": 1},
]


@pytest.mark.rtl
@pytest.mark.parametrize(
    "p", ENGINE_SETS, ids=lambda p: "L{chain_len}-n{min_n}-w{wbits}-c{n_chains}".format(**p)
)
def test_matrix_engine(p: dict, rtl_build_root: Path, verilator: str) -> None:
    build_dir = rtl_build_root / "engine-L{chain_len}-n{min_n}-w{wbits}-c{n_chains}".format(**p)
    depths = {f"{b}_depth": DEPTH for b in ("act", "weight", "bias", "out")}
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
        "sf_matrix_engine",
        sources_for("sf_matrix_engine", paths),
        build_dir,
        "cocotb_matrix_engine",
        BENCH_DIR,
        {PARAMS_ENV: json.dumps(p), RESULTS_ENV: str(results)},
    )
    rows = json.loads(results.read_text())
    assert len(rows) >= 5
    assert all(r["measured_cycles"] == r["model_cycles"] for r in rows)
