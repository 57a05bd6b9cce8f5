"""Drive the generated RTL from cocotb: clock/reset, buffer and program loads, cycle counts.

Used by the cocotb benches under tests/rtl (HDL side of the test benches). Inputs are driven
on the falling edge; outputs are sampled after the rising edge in ReadOnly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sparseflow.backends.fpga.engine_model import EngineBuffers, EngineParams
from sparseflow.backends.fpga.rtl import words

CLOCK_PERIOD_NS = 4  # 250 MHz, above the U280 design's 225 MHz (FlightLLM [P])
PARAMS_ENV = "SPARSEFLOW_RTL_PARAMS"  # JSON of the build's parameters, set by the pytest side
RESULTS_ENV = "SPARSEFLOW_RTL_RESULTS"  # file the bench writes its measured cycles to
CASES_ENV = "SPARSEFLOW_RTL_CASES"  # folder of the cases a bench runs (agreement.Share files)


def bench_params() -> dict:
    """Return the parameter set the pytest side built this simulation with."""
    return json.loads(os.environ[PARAMS_ENV])


def write_results(rows: list[dict]) -> None:
    """Write measured rows (JSON) where the pytest side expects them."""
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)


async def start(dut: object) -> None:
    """Start the clock, hold reset for two cycles and release it on a falling edge."""
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    await reset(dut)


async def reset(dut: object) -> None:
    """Hold reset for two cycles (the clock is running) and release it on a falling edge."""
    await FallingEdge(dut.clk)
    dut.rst.value = 1
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


async def load_buffers(dut: object, engine: EngineParams, buf: EngineBuffers, rows: dict) -> None:
    """Write the given rows {"act"|"weight"|"bias": [addresses]} of `buf` into the RTL."""
    writers = {
        "act": ("act", lambda a: words.act_word(buf.act[a])),
        "weight": ("w", lambda a: words.weight_word(engine, buf.weight[a], buf.index[a])),
        "bias": ("bias", lambda a: words.bias_word(buf.bias[a])),
    }
    for name, addresses in rows.items():
        port, make = writers[name]
        for addr in addresses:
            await FallingEdge(dut.clk)
            getattr(dut, f"{port}_we").value = 1
            getattr(dut, f"{port}_waddr").value = int(addr)
            getattr(dut, f"{port}_wdata").value = make(addr)
        await FallingEdge(dut.clk)
        getattr(dut, f"{port}_we").value = 0


async def read_out(
    dut: object, engine: EngineParams, addresses: Iterable[int]
) -> dict[int, object]:
    """Return {address: int32 [2, chains, segments]} read through the output read port."""
    result = {}
    for addr in map(int, addresses):
        await FallingEdge(dut.clk)
        dut.out_raddr.value = addr
        await RisingEdge(dut.clk)
        await ReadOnly()
        result[addr] = words.out_row(engine, dut.out_rdata.value.to_unsigned())
    return result


async def reset_top(dut: object, clock_running: bool = False) -> None:
    """Clear sf_accel_top's inputs, then reset (starting the clock unless it runs already)."""
    for name in ("run", "imem_we", "act_we", "w_we", "bias_we"):
        getattr(dut, name).value = 0
    await (reset(dut) if clock_running else start(dut))


async def load_program(dut: object, program_words: list[int]) -> None:
    """Write 32-bit program words into sf_accel_top's instruction memory from address 0."""
    for addr, word in enumerate(program_words):
        await FallingEdge(dut.clk)
        dut.imem_we.value = 1
        dut.imem_waddr.value = addr
        dut.imem_wdata.value = int(word)
    await FallingEdge(dut.clk)
    dut.imem_we.value = 0


async def run_program(dut: object) -> int:
    """Pulse sf_accel_top's run and return the cycles its controller spends running."""
    counter = cocotb.start_soon(count_high_cycles(dut, dut.running, 100_000))
    await FallingEdge(dut.clk)
    dut.run.value = 1
    await FallingEdge(dut.clk)
    dut.run.value = 0
    return await counter


async def count_high_cycles(dut: object, signal: object, timeout_cycles: int) -> int:
    """Return how many consecutive cycles `signal` is high, waiting for it to rise first."""
    high, seen = 0, False
    for _ in range(timeout_cycles):
        await RisingEdge(dut.clk)
        await ReadOnly()
        if int(signal.value):
            high, seen = high + 1, True
        elif seen:
            return high
    raise TimeoutError(f"signal still busy or never rose after {timeout_cycles} cycles")


def log(message: str) -> None:
    """Log through cocotb's logger."""
    cocotb.log.info(message)
