"""Each strict check of the instruction-set simulator fires on a program edited to break its
rule, with a message naming the instruction (core, index, listing) and the region."""

from __future__ import annotations

import dataclasses

import pytest

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.iss.memory import ExecutionError

from .conftest import Streams
from .test_mutations import PREFILL, first, weight_load


def load_past_the_buffer(streams: Streams, depth: int) -> int:
    core0 = streams[PREFILL][0]
    i = first(core0, weight_load)
    core0[i] = dataclasses.replace(core0[i], buf_addr=depth)
    return i


def wait_for_a_missing_token(streams: Streams) -> int:
    core0 = streams[PREFILL][0]
    i = first(core0, lambda insn: isinstance(insn, isa.Sfu))
    core0[i] = dataclasses.replace(core0[i], wait=core0[i].wait | 1 << isa.Queue.STORE)
    return i


def release_an_extra_token(streams: Streams) -> int:
    """Let core 0's last unit instruction release a token to a queue that never waits for
    one from its queue."""
    core0 = streams[PREFILL][0]
    i = max(k for k, insn in enumerate(core0) if not isinstance(insn, isa.Sys))
    src = core0[i].QUEUE
    waited = {insn.QUEUE for insn in core0 if insn.QUEUE is not None and insn.wait >> src & 1}
    dst = next(q for q in isa.Queue if q != src and q not in waited)
    core0[i] = dataclasses.replace(core0[i], release=core0[i].release | 1 << dst)
    return i


def store_twice(streams: Streams) -> int:
    core0 = streams[PREFILL][0]
    i = first(core0, lambda insn: isinstance(insn, isa.Store))
    core0.insert(i + 1, dataclasses.replace(core0[i], wait=0, release=0))
    return i + 1


def read_before_write(streams: Streams, act_depth: int) -> int:
    """Point core 0's first matrix op at the last ACT words, which no QUANTIZE wrote."""
    core0 = streams[PREFILL][0]
    i = first(core0, lambda insn: isinstance(insn, isa.MM))
    words = core0[i].tok_pairs * core0[i].k_steps
    core0[i] = dataclasses.replace(core0[i], act_base=act_depth - words)
    return i


CASES = {
    "range": (
        lambda s, t: load_past_the_buffer(s, t.compiled.program.engine.weight_depth),
        r"WEIGHT buffer words \[\d+, \d+\) are outside its \d+ words",
    ),
    "deadlock": (
        lambda s, t: wait_for_a_missing_token(s),
        r"deadlock: no queue can start; .*waits for a token from S",
    ),
    "tokens": (
        lambda s, t: release_an_extra_token(s),
        r"core 0: 1 token\(s\) from \w to \w left at SYS END",
    ),
    "stores": (
        lambda s, t: store_twice(s),
        r"overwrites bytes of region kv\.\S+ word \d+ that another STORE",
    ),
    "uninitialised": (
        lambda s, t: read_before_write(s, t.compiled.program.engine.act_depth),
        r"reads ACT buffer word \d+, which nothing has written \(uninitialised\)",
    ),
}


@pytest.mark.parametrize(("edit", "message"), list(CASES.values()), ids=list(CASES))
def test_each_check_names_instruction_and_region(tiny, edit, message) -> None:
    streams = tiny.streams()
    index = edit(streams, tiny)
    with pytest.raises(ExecutionError, match=message) as err:
        tiny.run(streams)
    text = str(err.value)
    if "deadlock" not in text and "left at SYS END" not in text:
        assert text.startswith(f"core 0 instruction {index} (word ")


def test_the_cli_reports_a_broken_program_with_exit_2(monkeypatch, capsys) -> None:
    """`sparseflow run` on a program that breaks a rule: one line naming the instruction."""
    from sparseflow.backends.fpga.iss.runner import Device
    from sparseflow.cli import main

    decoded = Device.streams

    def broken(device: Device, bucket) -> list[list[isa.Instruction]]:
        streams = {bucket.key: [list(s) for s in decoded(device, bucket)]}
        if bucket.phase == "prefill":
            wait_for_a_missing_token({PREFILL: streams[bucket.key]})
        return streams[bucket.key]

    monkeypatch.setattr(Device, "streams", broken)
    argv = ["run", "tiny-llama", "--target", "u280", "--prompt", "6", "--gen", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "deadlock: no queue can start; core 0 instruction" in err
    assert "Traceback" not in err
