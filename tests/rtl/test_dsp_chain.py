"""Build sf_dsp_chain per parameter set with Verilator and run its cocotb bench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparseflow.backends.fpga.engine_model import ChainParams
from sparseflow.backends.fpga.rtl import generate_rtl, sources_for
from sparseflow.backends.fpga.rtl.bench import PARAMS_ENV, RESULTS_ENV
from sparseflow.backends.fpga.rtl.runner import build_and_test

BENCH_DIR = Path(__file__).resolve().parent
CHAIN_SETS = [
    {"chain_len": 8, "min_n": 2, "wbits": 8},  # all modes, 4 groups, 2 tree levels
    {"chain_len": 4, "min_n": 4, "wbits": 4},  # INT4 weights, 4:16 and dense
    {"chain_len": 6, "min_n": 16, "wbits": 8},  # dense only, 3 groups (not a power of 2)
]


@pytest.mark.rtl
@pytest.mark.parametrize(
    "p", CHAIN_SETS, ids=lambda p: "L{chain_len}-n{min_n}-w{wbits}".format(**p)
)
def test_dsp_chain(p: dict, rtl_build_root: Path, verilator: str) -> None:
    name = "chain-L{chain_len}-n{min_n}-w{wbits}".format(**p)
    build_dir = rtl_build_root / name
    nm = None if p["min_n"] == 16 else (p["min_n"], 16)
    paths = generate_rtl(build_dir / "src", p["chain_len"], nm, p["wbits"])
    results = build_dir / "measured.json"
    build_and_test(
        "sf_dsp_chain",
        sources_for("sf_dsp_chain", paths),
        build_dir,
        "cocotb_dsp_chain",
        BENCH_DIR,
        {PARAMS_ENV: json.dumps(p), RESULTS_ENV: str(results)},
    )
    measured = json.loads(results.read_text())[0]["latency_cycles"]
    assert measured == ChainParams(**p).latency_cycles
