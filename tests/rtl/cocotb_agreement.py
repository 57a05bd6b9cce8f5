"""cocotb bench of sf_accel_top against the instruction-set simulator (`rtl.agreement`).

For each share the pytest side saved (one core's part of a compiled linear layer): reset,
write the words its MM/MV reads through the buffer write ports, load its program words, run
to SYS END and read the OUT words back; then the first share once more with one bit of one
word flipped. Each run writes a row: the share, whether it was corrupted, the OUT words that
differ from the simulator's, and the controller's cycles with the cycle model's.
"""

from __future__ import annotations

import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import ChainParams, EngineParams, controller_cycles
from sparseflow.backends.fpga.rtl import bench
from sparseflow.backends.fpga.rtl.agreement import Share, mismatched_words

ACT_BASE_WORD = 2  # word 2 of an MM/MV: tok_pairs (bits 31:16), act_base (bits 15:0)


def engine_from_params() -> EngineParams:
    params = bench.bench_params()
    return EngineParams(ChainParams(**params.pop("chain")), **params)


def corrupted(share: Share) -> np.ndarray:
    """Return the share's words with bit 0 of its MM/MV's act_base flipped (one word)."""
    words = share.words.copy()
    words[share.matrix_word + ACT_BASE_WORD] ^= 1
    return words


async def run_share(dut, engine: EngineParams, share: Share, words: np.ndarray) -> dict:
    """Run `words` on the share's input words; return its row of results."""
    buf, rows = share.buffers(engine)
    await bench.load_buffers(dut, engine, buf, rows)
    await bench.load_program(dut, words)
    cycles = await bench.run_program(dut)
    await RisingEdge(dut.clk)
    halted, error = int(dut.halted.value), int(dut.error.value)
    got = await bench.read_out(dut, engine, share.out_addr)
    return {
        "core": share.core,
        "instructions": [share.first, share.matrix],
        "halted": bool(halted and not error),
        "words_compared": len(share.out_addr),
        "mismatched": mismatched_words(share.expected(), got),
        "measured_cycles": cycles,
        "model_cycles": controller_cycles(isa.decode(words.tobytes()), engine),
    }


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def compiled_shares_leave_the_simulators_words(dut) -> None:
    """Every share agrees word for word; the corrupted run is recorded for pytest to judge."""
    engine = engine_from_params()
    shares = [Share.load(p) for p in sorted(Path(os.environ[bench.CASES_ENV]).glob("*.npz"))]
    runs = [(s, s.words, False) for s in shares] + [(shares[0], corrupted(shares[0]), True)]
    rows = []
    for i, (share, words, corrupt) in enumerate(runs):
        if i:
            await FallingEdge(dut.clk)  # leave the ReadOnly phase of the last read
        await bench.reset_top(dut, clock_running=i > 0)
        rows.append({**await run_share(dut, engine, share, words), "corrupted": corrupt})
        bench.log(f"core {share.core} corrupted={corrupt}: {len(rows[-1]['mismatched'])} of "
                  f"{len(share.out_addr)} OUT words differ")  # fmt: skip
    bench.write_results(rows)
