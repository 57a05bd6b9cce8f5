"""A checker that cannot fail is not a checker: corrupt tiny-llama's compiled program in one
place and the instruction-set simulator must report it, by an error naming the instruction
or by logits that leave the reference (relative error above 1e-3)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.iss.memory import ExecutionError
from sparseflow.ir.errors import InputError

from .conftest import REL_ERROR_BOUND, Streams

PREFILL = ("prefill", 128)
DECODE = ("decode", 16)


def first(stream: list[isa.Instruction], match) -> int:
    """Return the index of the first instruction of `stream` that `match` accepts."""
    return next(i for i, insn in enumerate(stream) if match(insn))


def weight_load(insn: isa.Instruction) -> bool:
    return isinstance(insn, isa.Load) and insn.buffer == isa.Buffer.WEIGHT


def shift_load_address(streams: Streams) -> None:
    core0 = streams[PREFILL][0]
    i = first(core0, weight_load)
    core0[i] = dataclasses.replace(core0[i], hbm_addr=core0[i].hbm_addr + 1)


def shorten_load(streams: Streams) -> None:
    core0 = streams[PREFILL][0]
    i = first(core0, weight_load)
    core0[i] = dataclasses.replace(core0[i], length=core0[i].length - 1)


def drop_wait_bit(streams: Streams) -> None:
    core0 = streams[PREFILL][0]
    i = first(core0, lambda insn: insn.wait)
    core0[i] = dataclasses.replace(core0[i], wait=core0[i].wait & (core0[i].wait - 1))


def swap_store_targets(streams: Streams) -> None:
    core0 = streams[PREFILL][0]
    stores = [i for i, insn in enumerate(core0) if isinstance(insn, isa.Store)]
    a, b = stores[0], next(j for j in stores[1:] if core0[j].length == core0[stores[0]].length)
    target = ("channel", "hbm_addr")
    core0[a], core0[b] = (
        dataclasses.replace(core0[a], **{f: getattr(core0[b], f) for f in target}),
        dataclasses.replace(core0[b], **{f: getattr(core0[a], f) for f in target}),
    )


def delete_barrier(streams: Streams, ordinal: int = 1, key: tuple = PREFILL) -> None:
    """Delete the `ordinal`-th barrier of bucket `key`'s program on every core."""
    for stream in streams[key]:
        barriers = [i for i, insn in enumerate(stream) if isinstance(insn, isa.Sys)
                    and insn.op == isa.SysOp.BARRIER]  # fmt: skip
        del stream[barriers[ordinal]]


MUTATIONS = [shift_load_address, shorten_load, drop_wait_bit, swap_store_targets, delete_barrier]


@pytest.mark.parametrize("mutate", MUTATIONS, ids=lambda m: m.__name__)
def test_each_corruption_is_reported(tiny, mutate) -> None:
    streams = tiny.streams()
    mutate(streams)
    assert streams != tiny.streams()  # the mutation changed the program
    try:
        gen, _ = tiny.run(streams)
    except ExecutionError as err:
        assert "instruction" in str(err) or "core" in str(err)
    else:
        assert tiny.error(gen) > REL_ERROR_BOUND


def reported(tiny, streams: Streams) -> bool:
    """Return whether running `streams` raises an ExecutionError or leaves the reference."""
    try:
        with np.errstate(invalid="ignore"):  # a race may feed NaN to a later QUANTIZE
            gen, _ = tiny.run(streams)
    except ExecutionError:
        return True
    return tiny.error(gen) > REL_ERROR_BOUND


@pytest.mark.parametrize("key", [PREFILL, DECODE], ids=lambda k: k[0])
def test_deleting_any_barrier_is_reported(tiny, key) -> None:
    """Every barrier the compiler emits orders some cross-core access: none is redundant."""
    barriers = sum(isinstance(i, isa.Sys) and i.op == isa.SysOp.BARRIER
                   for i in tiny.streams()[key][0])  # fmt: skip
    assert barriers > 1
    missed = []
    for ordinal in range(barriers):
        streams = tiny.streams()
        delete_barrier(streams, ordinal, key)
        if not reported(tiny, streams):
            missed.append(ordinal)
    assert missed == []


def test_random_bit_flips_give_an_error_or_a_run_never_a_crash(tiny) -> None:
    """Flip one random bit of one instruction's words (as a corrupted DIR/program would):
    the decoder refuses it, or the run reports an ExecutionError or ends; nothing else."""
    rng = np.random.default_rng(7)
    outcomes = {"refused": 0, "reported": 0, "ran": 0}
    for _ in range(12):
        streams = tiny.streams()
        core = streams[PREFILL][int(rng.integers(len(streams[PREFILL])))]
        i = int(rng.integers(len(core)))
        data = bytearray(isa.encode([core[i]]))
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        try:
            core[i : i + 1] = isa.decode(bytes(data))
        except InputError:
            outcomes["refused"] += 1
            continue
        try:
            with np.errstate(all="ignore"):
                tiny.run(streams)
        except ExecutionError:
            outcomes["reported"] += 1
        else:
            outcomes["ran"] += 1
    assert sum(outcomes.values()) == 12 and outcomes["reported"] > 0
