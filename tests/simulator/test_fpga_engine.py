"""FPGA event engine: token order, load- and compute-bound times, roofline floor, contention,
reuse equal to the full simulation, RTL cycle agreement, deadlocks and bad input."""

import dataclasses

import numpy as np
import pytest

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import ChainParams, EngineParams, MatrixOp, matrix_cycles
from sparseflow.backends.fpga.layout import core_channels
from sparseflow.backends.fpga.program import Stream
from sparseflow.hw_models.loader import load_hw, with_overrides
from sparseflow.ir.errors import InputError
from sparseflow.simulator.fpga_costs import FpgaMachine
from sparseflow.simulator.fpga_engine import simulate_streams

L, S, M, F = (1 << q for q in isa.Queue)
HW = load_hw("u280")
MACHINE = FpgaMachine.from_hw(HW)
PERIOD = 1 / HW.clock_hz
END = isa.Sys(op=isa.SysOp.END)
BARRIER = isa.Sys(op=isa.SysOp.BARRIER)


def run(*streams, reuse=True, machine=MACHINE):
    return simulate_streams([Stream.from_instructions(s) for s in streams], machine, reuse=reuse)


def dispatch_s(program, upto):
    """Return when the dispatcher has issued instruction `upto` (fetch + execute + words)."""
    return sum(i.n_words() + 2 for i in program[: upto + 1]) * PERIOD


def load(channel, words, **kw):
    return isa.Load(buffer=isa.Buffer.WEIGHT, channel=channel, length=words, **kw)


def mv(k_steps=64, row_tiles=4, **kw):
    return isa.MV(n=8, wbits=4, k_steps=k_steps, row_tiles=row_tiles, **kw)


def rate(core, channel, sharers=1):
    return MACHINE.hbm.shared_rate(core, channel, sharers)


def test_matrix_waits_for_the_load_token_and_runs_at_once_without_one():
    ch = core_channels(HW, 0)[0]
    program = [load(ch, 4096, release=M), mv(wait=L), END]
    result = run(program)
    t = result.cores[0]
    assert t.start_s[1] == pytest.approx(t.end_s[0])
    free = run([load(ch, 4096), mv(), END]).cores[0]
    assert free.start_s[1] == pytest.approx(dispatch_s(program, 1))
    assert free.start_s[1] < free.end_s[0]


def test_release_goes_out_only_when_every_older_transfer_has_landed():
    a, b = core_channels(HW, 0)[:2]
    program = [load(a, 8192), load(b, 256, release=M), mv(wait=L), END]
    t = run(program).cores[0]
    assert t.end_s[1] < t.end_s[0]  # the small load lands first ...
    assert t.start_s[2] == pytest.approx(t.end_s[0])  # ... but releases after the big one


def test_load_bound_stream_takes_bytes_over_bandwidth():
    channels = core_channels(HW, 0)
    words = 60000
    program = [load(ch, words) for ch in channels] + [END]
    result = run(program)
    nbytes = words * isa.HBM_WORD_BYTES
    last_issue = dispatch_s(program, len(channels) - 1)
    assert result.time_s == pytest.approx(last_issue + nbytes / rate(0, channels[-1]))
    assert result.channel_bytes.sum() == nbytes * len(channels)
    assert result.events.hbm_bytes == nbytes * len(channels)


def test_same_channel_transfers_serialise_and_cross_core_ones_share():
    ch = core_channels(HW, 0)[0]
    words = 50000
    nbytes = words * isa.HBM_WORD_BYTES
    one = run([load(ch, words), load(ch, words), END])
    assert one.time_s == pytest.approx(dispatch_s([load(ch, 1)], 0) + 2 * nbytes / rate(0, ch))
    shared = run([load(ch, words), END], [load(ch, words), END])
    core1 = shared.cores[1]
    assert core1.end_s[0] - core1.start_s[0] > nbytes / rate(1, ch, 1)
    assert shared.time_s > nbytes / rate(0, ch, 1)


def test_compute_bound_stream_takes_the_matrix_cycles():
    program = [mv(k_steps=256, row_tiles=8, wait=0) for _ in range(5)] + [END]
    result = run(program)
    cycles = matrix_cycles(
        MatrixOp(n=8, tok_pairs=1, row_tiles=8, k_steps=256), EngineParams(MACHINE.chain)
    )
    assert result.time_s == pytest.approx(dispatch_s(program, 0) + 5 * cycles * PERIOD)
    assert result.busy_s[0, isa.Queue.MATRIX] == pytest.approx(5 * cycles * PERIOD)
    assert result.events.int4_macs == 5 * 256 * 8 * MACHINE.macs_per_issue


def random_program(rng, core, n):
    channels = core_channels(HW, core)
    program = []
    for i in range(n):
        kind = rng.integers(4)
        if kind == 0:
            program.append(load(int(rng.choice(channels)), int(rng.integers(1, 30000)), release=M))
            program.append(mv(int(rng.integers(1, 300)), int(rng.integers(1, 9)), wait=L))
        elif kind == 1:
            program.append(mv(int(rng.integers(1, 300)), int(rng.integers(1, 9)), release=F))
            program.append(isa.Sfu(op=isa.SfuOp.SILU, length=int(rng.integers(1, 5000)), wait=M))
        elif kind == 2:
            program.append(
                isa.Store(channel=int(rng.choice(channels)), length=int(rng.integers(1, 500)))
            )
        elif i % 3 == 0:
            program.append(BARRIER)
    return program + [END]


@pytest.mark.parametrize("seed", range(4))
def test_never_beats_the_roofline_and_reuse_equals_full_simulation(seed):
    rng = np.random.default_rng(seed)
    base = random_program(rng, 0, 40)
    streams = [base, random_program(rng, 1, 30) + base[:10] + [END], random_program(rng, 2, 25)]
    full = run(*streams, reuse=False)
    reused = run(*streams, reuse=True)
    assert reused.time_s == pytest.approx(full.time_s, rel=1e-12)
    for a, b in zip(full.cores, reused.cores, strict=True):
        np.testing.assert_allclose(a.start_s, b.start_s, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(a.end_s, b.end_s, rtol=1e-12, atol=1e-15)
    peak_bw = HW.hbm.bandwidth_bytes_per_s
    matrix_floor = max(full.busy_s[:, isa.Queue.MATRIX])
    assert full.time_s >= max(full.channel_bytes.sum() / peak_bw, matrix_floor)
    per_channel_floor = full.channel_bytes / HW.hbm.bandwidth_per_channel_bytes_per_s
    assert full.time_s >= per_channel_floor.max()


def test_reuse_equals_full_simulation_across_repeated_epochs():
    layer = [load(core_channels(HW, 0)[i % 4], 2000, release=M) for i in range(6)]
    layer += [mv(wait=L, release=F), isa.Sfu(op=isa.SfuOp.RMSNORM, length=4096, wait=M)]
    layer += [mv(wait=L) for _ in range(5)] + [BARRIER]
    program = layer * 6 + [END]
    full, reused = run(program, reuse=False), run(program, reuse=True)
    assert reused.time_s == pytest.approx(full.time_s, rel=1e-12)
    np.testing.assert_allclose(full.cores[0].end_s, reused.cores[0].end_s, rtol=1e-12)


def test_barrier_is_device_wide():
    slow = [mv(k_steps=1000, row_tiles=8), BARRIER, mv(), END]
    fast = [mv(k_steps=1), BARRIER, mv(), END]
    for reuse in (True, False):
        result = run(slow, fast, reuse=reuse)
        assert result.cores[1].start_s[2] >= result.cores[0].end_s[0]


def test_deadlock_is_reported_with_the_waiting_queue():
    with pytest.raises(InputError, match="deadlocks.*M waits L"):
        run([mv(wait=L), END])


# Measured by the cocotb benches (docs/rtl_cycles.md): engine chain_len 8, N >= 2, INT8,
# 2 chains; (N, tok_pairs, row_tiles, k_steps) -> cycles.
RTL_MEASURED = [
    ((2, 3, 2, 3), 27), ((4, 3, 2, 3), 27), ((8, 1, 1, 1), 10), ((16, 2, 1, 6), 21),
    ((2, 1, 2, 3), 15), ((4, 2, 2, 1), 13), ((8, 1, 2, 2), 13), ((16, 2, 2, 3), 21),
    ((16, 1, 1, 2), 11), ((2, 2, 2, 2), 17), ((16, 1, 6, 4), 33),
]  # fmt: skip


@pytest.mark.parametrize(("shape", "measured"), RTL_MEASURED)
def test_simulated_matrix_cycles_match_the_rtl_measurements(shape, measured):
    n, tok_pairs, row_tiles, k_steps = shape
    machine = dataclasses.replace(MACHINE, chain=ChainParams(8, 2, 8), n_chains=2)
    cls = isa.MV if tok_pairs == 1 else isa.MM
    insn = cls(n=n, wbits=8, tok_pairs=tok_pairs, row_tiles=row_tiles, k_steps=k_steps)
    t = run([insn, END], machine=machine).cores[0]
    simulated = (t.end_s[0] - t.start_s[0]) * HW.clock_hz
    assert simulated == pytest.approx(measured, rel=0.02)


def test_streams_must_fit_the_device():
    with pytest.raises(InputError, match="4 streams for a device of 3 cores"):
        run([END], [END], [END], [END])
    with pytest.raises(InputError, match="bytes per transfer exceed the weight buffer"):
        run([load(0, 0xFFFF), END], machine=dataclasses.replace(MACHINE, buffer_bytes={
            b: 1024 for b in isa.Buffer}))  # fmt: skip


def test_bad_hardware_values_are_named():
    with pytest.raises(InputError, match=r"field 'hbm.bandwidth_per_channel_bytes_per_s'"):
        with_overrides(HW, {"hbm.bandwidth_per_channel_bytes_per_s": -1.0})
    with pytest.raises(InputError, match=r"field 'hbm.port_bytes_per_cycle'"):
        with_overrides(HW, {"hbm.port_bytes_per_cycle": 0})


def test_program_words_come_from_ddr_and_stall_dispatch_only_when_it_is_slow():
    program = [mv(), mv(), mv(), END]
    fetched = sum(i.n_words() for i in program) * isa.WORD_BYTES
    result = run(program)
    assert result.events.ddr_bytes == fetched
    assert result.cores[0].start_s[3] == pytest.approx(dispatch_s(program, 3))  # controller
    # 1 byte per cycle for each of the 3 cores: dispatch waits for every word to arrive.
    slow_ddr = 3 * HW.clock_hz / HW.ddr.access_efficiency
    slow = with_overrides(HW, {"ddr.bandwidth_bytes_per_s": slow_ddr})
    machine = FpgaMachine.from_hw(slow)
    assert machine.fetch_bytes_per_cycle == pytest.approx(1.0)
    assert run(program, machine=machine).cores[0].start_s[3] == pytest.approx(fetched * PERIOD)
