"""Lint every top module of the generated RTL with `verilator --lint-only -Wall`."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparseflow.backends.fpga.rtl import TOPS, generate_rtl, lint, sources_for

PARAM_SETS = [
    {"chain_len": 8, "nm": (2, 16), "wbits": 8, "n_chains": 2},
    {"chain_len": 6, "nm": None, "wbits": 4, "n_chains": 1, "imem_depth": 1},
    {"chain_len": 2, "nm": (2, 16), "wbits": 4, "n_chains": 3, "out_depth": 100},
    {"chain_len": 32, "nm": (8, 16), "wbits": 8, "n_chains": 1, "act_depth": 65536},
]


@pytest.mark.rtl
@pytest.mark.parametrize("params", PARAM_SETS, ids=lambda p: f"L{p['chain_len']}-{p['nm']}")
def test_every_top_lints_clean(params: dict, tmp_path: Path, verilator: str) -> None:
    paths = generate_rtl(tmp_path, **params)
    for top in TOPS:
        result = lint(sources_for(top, paths), top)
        assert result.returncode == 0, f"{top}:\n{result.stderr}"
        assert "%Warning" not in result.stderr, f"{top}:\n{result.stderr}"


@pytest.mark.rtl
def test_lint_catches_a_broken_module(tmp_path: Path, verilator: str) -> None:
    paths = generate_rtl(tmp_path, chain_len=4, nm=(4, 16))
    chain = sources_for("sf_dsp_chain", paths)
    chain[1].write_text(chain[1].read_text().replace("assign in_ready = adv;", ""))
    assert lint(chain, "sf_dsp_chain").returncode != 0
