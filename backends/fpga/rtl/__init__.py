"""Generate, lint and verify the accelerator's SystemVerilog (see generator and runner).

`templates/*.sv` are the blocks, `generator` fills their parameters, `runner` lints them and
runs the cocotb benches on Verilator, `bench` and `words` drive the benches, `agreement` cuts
a compiled layer into the cases of the bench that compares the RTL with the instruction-set
simulator.

Imports: sparseflow.ir and sparseflow.backends.fpga.
"""

from sparseflow.backends.fpga.rtl.generator import (
    TOPS,
    RtlParams,
    generate_rtl,
    make_params,
    parse_nm,
    sources_for,
    write_rtl,
)
from sparseflow.backends.fpga.rtl.runner import ensure_verilator_on_path, lint, run_rtl_tests

__all__ = [
    "TOPS",
    "RtlParams",
    "ensure_verilator_on_path",
    "generate_rtl",
    "lint",
    "make_params",
    "parse_nm",
    "run_rtl_tests",
    "sources_for",
    "write_rtl",
]
