"""cocotb bench of sf_accel_top: a small linear layer's program built with the ISA."""

from __future__ import annotations

import dataclasses

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sparseflow.backends.fpga import engine_model as em
from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.rtl import bench

DEPTH = 64  # buffer and instruction-memory words of the bench build
L, M, F = 1 << isa.Queue.LOAD, 1 << isa.Queue.MATRIX, 1 << isa.Queue.SFU


def engine_from_params() -> em.EngineParams:
    p = bench.bench_params()
    chain = em.ChainParams(p["chain_len"], p["min_n"], p["wbits"])
    return em.EngineParams(chain, p["n_chains"], DEPTH, DEPTH, DEPTH, DEPTH)


def to_isa(op: em.MatrixOp, cls: type[isa.MM], **extra: int) -> isa.MM:
    return cls(**dataclasses.asdict(op), **extra)


def linear_program(engine: em.EngineParams, rng: np.random.Generator):
    """Return (program, {op: (x, w, bias)}) of a 32 -> 12 linear layer: prefill then decode."""
    n_sparse = min(n for n in em.N_CODES if engine.chain.supports(n))
    k, rows = 32, 12
    lim = 1 << (engine.chain.wbits - 1)
    w_sparse = rng.integers(-lim, lim, (rows, k))
    w_sparse *= (rng.random((rows, k // 16, 16)).argsort(-1) < n_sparse).reshape(rows, k)
    w_dense = rng.integers(-lim, lim, (rows, k))
    bias = rng.integers(-(1 << 16), 1 << 16, rows)
    prefill = em.plan_linear(engine, n_sparse, 3, rows, k, bias=True, act="relu")
    decode_w = prefill.row_tiles * prefill.k_steps
    decode = em.plan_linear(
        engine, 16, 2, rows, k, act_base=20, w_base=decode_w, bias_base=4, out_base=30, bias=True
    )
    again = dataclasses.replace(decode, bias=False, accumulate=True)
    data = {
        prefill: (rng.integers(-128, 128, (3, k)), w_sparse, bias),
        decode: (rng.integers(-128, 128, (2, k)), w_dense, bias),
    }
    program = [
        isa.Load(buffer=isa.Buffer.ACT, length=prefill.tok_pairs * prefill.k_steps),
        isa.Load(buffer=isa.Buffer.WEIGHT, channel=3, hbm_addr=1 << 20, length=8, release=M),
        to_isa(prefill, isa.MM, wait=L, release=F),
        isa.Sfu(op=isa.SfuOp.SILU, length=rows, wait=M),
        to_isa(decode, isa.MV),
        to_isa(again, isa.MV),
        isa.Sys(op=isa.SysOp.BARRIER),
        isa.Sys(op=isa.SysOp.END),
    ]
    return program, data


def program_words(program: list[isa.Instruction]) -> list[int]:
    data = isa.encode(program)
    return [int.from_bytes(data[i : i + 4], "little") for i in range(0, len(data), 4)]


async def busy_bursts(dut, bursts: list[int]) -> None:
    """Append the length of every engine-busy burst to `bursts`."""
    run = 0
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        if int(dut.engine_busy.value):
            run += 1
        elif run:
            bursts.append(run)
            run = 0


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def linear_layer_program(dut) -> None:
    """Run MM (N:16 sparse, bias, ReLU) + MV + MV accumulate; check outputs and cycles."""
    engine = engine_from_params()
    buf = em.EngineBuffers.zeros(engine)
    program, data = linear_program(engine, np.random.default_rng(11))
    await bench.reset_top(dut)
    for op, (x, w, bias) in data.items():
        em.load_linear(engine, buf, op, x, w, bias)
        await bench.load_buffers(
            dut,
            engine,
            buf,
            {
                "act": range(op.act_base, op.act_base + op.tok_pairs * op.k_steps),
                "weight": range(op.w_base, op.w_base + op.row_tiles * op.k_steps),
                "bias": range(op.bias_base, op.bias_base + op.row_tiles),
            },
        )
    await bench.load_program(dut, program_words(program))
    bursts: list[int] = []
    cocotb.start_soon(busy_bursts(dut, bursts))
    total = await bench.run_program(dut)
    await RisingEdge(dut.clk)
    assert int(dut.halted.value) and not int(dut.error.value)
    matrix = [insn for insn in program if isinstance(insn, isa.MM)]
    for insn in matrix:
        em.execute_matrix(insn, engine, buf)
    for insn in matrix[:2]:
        out_rows = range(insn.out_base, insn.out_base + insn.tok_pairs * insn.row_tiles)
        got = await bench.read_out(dut, engine, out_rows)
        for addr in out_rows:
            assert np.array_equal(got[addr], buf.out[addr]), f"{insn.mnemonic} word {addr}"
    prefill, decode = data
    x, w, bias = data[prefill]
    ref = np.maximum(x @ w.T + bias, 0)
    assert np.array_equal(em.read_linear(engine, buf, prefill, 3, 12), ref)
    x, w, bias = data[decode]
    assert np.array_equal(em.read_linear(engine, buf, decode, 2, 12), 2 * (x @ w.T) + bias)
    model = [em.matrix_cycles(insn, engine) for insn in matrix]
    rows = [
        {"instruction": insn.listing(), "measured_cycles": got, "model_cycles": want}
        for insn, got, want in zip(matrix, bursts, model, strict=True)
    ]
    rows.append(
        {
            "instruction": "whole program",
            "measured_cycles": total,
            "model_cycles": em.controller_cycles(program, engine),
        }
    )
    bench.write_results(rows)
    assert bursts == model, f"engine cycles {bursts} != model {model}"
    assert total == em.controller_cycles(program, engine)


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def rejects_what_the_engine_cannot_run(dut) -> None:
    """MM with a fused silu, and an unknown opcode, stop the controller with error."""
    bad_programs = [
        program_words([isa.MM(act="silu"), isa.Sys()]),
        program_words([isa.Sys(op=isa.SysOp.BARRIER)]) + [7 << 28],  # opcode 7 is undefined
    ]
    for i, words in enumerate(bad_programs):
        if i:
            await FallingEdge(dut.clk)  # leave the ReadOnly phase of the last check
        await bench.reset_top(dut, clock_running=i > 0)
        await bench.load_program(dut, words)
        await bench.run_program(dut)
        await RisingEdge(dut.clk)
        await ReadOnly()
        assert int(dut.error.value) and not int(dut.halted.value)
