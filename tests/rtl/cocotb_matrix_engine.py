"""cocotb bench of sf_matrix_engine: random linear layers vs the engine model, cycle counts."""

from __future__ import annotations

import dataclasses

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from sparseflow.backends.fpga import engine_model as em
from sparseflow.backends.fpga.rtl import bench

DEPTH = 64  # buffer words of the bench builds (small: fast builds)


def engine_from_params() -> em.EngineParams:
    p = bench.bench_params()
    chain = em.ChainParams(p["chain_len"], p["min_n"], p["wbits"])
    return em.EngineParams(chain, p["n_chains"], DEPTH, DEPTH, DEPTH, DEPTH)


def random_weights(rng, engine: em.EngineParams, n: int, rows: int, k: int) -> np.ndarray:
    lim = 1 << (engine.chain.wbits - 1)
    w = rng.integers(-lim, lim, size=(rows, k))
    if n < 16:
        keep = rng.random((rows, k // 16, 16)).argsort(axis=-1) < n
        w = w * keep.reshape(rows, k)
    return w


async def run_op(dut, engine, buf, op) -> int:
    """Start `op` on the RTL and return its busy cycles."""
    counter = cocotb.start_soon(bench.count_high_cycles(dut, dut.busy, 100_000))
    await FallingEdge(dut.clk)
    dut.start.value = 1
    dut.n_code.value = em.N_CODES[op.n]
    for name in ("k_steps", "row_tiles", "tok_pairs", "act_base", "w_base", "bias_base"):
        getattr(dut, name).value = getattr(op, name)
    dut.out_base.value = op.out_base
    dut.use_bias.value = int(op.bias)
    dut.accumulate.value = int(op.accumulate)
    dut.relu.value = int(op.act == "relu")
    await FallingEdge(dut.clk)
    dut.start.value = 0
    return await counter


async def check_op(dut, engine, buf, op, x, w, bias, rows_log: list[dict]) -> None:
    """Load, run on RTL and model, compare every output word and the cycle count."""
    if x is not None:
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
    measured = await run_op(dut, engine, buf, op)
    em.execute_matrix(op, engine, buf)
    out_rows = range(op.out_base, op.out_base + op.tok_pairs * op.row_tiles)
    got = await bench.read_out(dut, engine, out_rows)
    seg = engine.chain.segments(op.n)
    for addr in out_rows:
        assert np.array_equal(got[addr][:, :, :seg], buf.out[addr][:, :, :seg]), (
            f"{op}: output word {addr}: RTL {got[addr].tolist()} model {buf.out[addr].tolist()}"
        )
    model = em.matrix_cycles(op, engine)
    rows_log.append(
        {"op": dataclasses.asdict(op), "measured_cycles": measured, "model_cycles": model}
    )
    assert measured == model, f"{op}: measured {measured} cycles, model {model}"


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def random_linear_layers(dut) -> None:
    """Dense and every supported N:16 mode; bias, ReLU, accumulate and int32 wrap-around."""
    engine = engine_from_params()
    rng = np.random.default_rng(7)
    buf = em.EngineBuffers.zeros(engine)
    dut.start.value = 0
    for port in ("act", "w", "bias"):
        getattr(dut, f"{port}_we").value = 0
    await bench.start(dut)
    log: list[dict] = []
    modes = [n for n in em.N_CODES if engine.chain.supports(n)]
    for i, n in enumerate(modes * 2):
        tokens = int(rng.integers(1, 6))
        rows = int(rng.integers(1, 2 * engine.rows_per_tile(n) + 1))
        k = 16 * int(rng.integers(1, 4)) + (int(rng.integers(0, 16)) if n == 16 else 0)
        x = rng.integers(-128, 128, size=(tokens, k))
        w = random_weights(rng, engine, n, rows, k)
        bias = rng.integers(-(1 << 20), 1 << 20, size=rows)
        op = em.plan_linear(
            engine,
            n,
            tokens,
            rows,
            k,
            bias=i % 2 == 0,
            act="relu" if i % 3 == 0 else "none",
            out_base=i % 3,
            act_base=1,
            w_base=2,
            bias_base=3,
        )
        await check_op(dut, engine, buf, op, x, w, bias, log)
        expected = x @ w.T + (bias if op.bias else 0)
        if op.act == "relu":
            expected = np.maximum(expected, 0)
        got = em.read_linear(engine, buf, op, tokens, rows)
        assert np.array_equal(got, expected), f"model disagrees with numpy for {op}"
        again = dataclasses.replace(op, accumulate=True, bias=False, act="none")
        await check_op(dut, engine, buf, again, None, None, None, log)
    # Overflow corner: bias at the int32 limits plus large products must wrap.
    n = modes[-1]
    k = 16
    rows = engine.rows_per_tile(n)
    x = np.full((2, k), 127)
    w = random_weights(rng, engine, n, rows, k) * 0 + (1 << (engine.chain.wbits - 1)) - 1
    w = w * (random_weights(rng, engine, n, rows, k) != 0) if n < 16 else w
    bias = np.where(np.arange(rows) % 2 == 0, 2**31 - 1, -(2**31))
    op = em.plan_linear(engine, n, 2, rows, k, bias=True)
    await check_op(dut, engine, buf, op, x, w, bias, log)
    bench.write_results(log)
