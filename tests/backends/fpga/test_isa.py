"""Check the ISA: encode/decode round trip, listing, range checks."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import ChainParams, EngineParams, matrix_cycles
from sparseflow.ir.errors import InputError


def field_strategy(field: isa.Field) -> st.SearchStrategy:
    if field.values is not None:
        return st.sampled_from(field.values)
    hi = (1 << field.width) - 1 if field.hi is None else field.hi
    return st.integers(field.lo, hi)


def instruction_strategy(cls: type[isa.Instruction]) -> st.SearchStrategy:
    own = 0 if cls.QUEUE is None else 1 << cls.QUEUE
    mask = st.integers(0, 15).map(lambda m: m & ~own)
    kwargs = {f.name: field_strategy(f) for f in cls.FIELDS}
    return st.builds(cls, wait=mask, release=mask, **kwargs)


ANY_INSTRUCTION = st.one_of([instruction_strategy(c) for c in isa.INSTRUCTIONS.values()])


@settings(max_examples=300, deadline=None)
@given(st.lists(ANY_INSTRUCTION, max_size=12))
def test_encode_decode_round_trip(program: list[isa.Instruction]) -> None:
    data = isa.encode(program)
    assert len(data) == 4 * sum(i.n_words() for i in program)
    assert isa.decode(data) == program
    assert len(isa.listing(program).splitlines()) == len(program)


def test_word_lengths_follow_the_artifact_shape() -> None:
    lengths = {c.OPCODE.name: c.n_words() for c in isa.INSTRUCTIONS.values()}
    assert lengths == {"LOAD": 7, "STORE": 5, "MM": 5, "MV": 5, "SFU": 4, "SYS": 1}


def test_known_encoding_and_listing() -> None:
    mm = isa.MM(
        n=8,
        wbits=4,
        bias=True,
        act="relu",
        k_steps=3,
        row_tiles=2,
        tok_pairs=4,
        act_base=1,
        w_base=2,
        out_base=5,
        bias_base=6,
        wait=0b0001,
        release=0b1000,
    )
    words = mm.encode()
    assert words[0] == (3 << 28) | (1 << 24) | (8 << 20) | (2 << 18) | (1 << 17) | (1 << 16) | (
        1 << 13
    )
    assert words[1:] == [(3 << 16) | 2, (4 << 16) | 1, (2 << 16) | 5, 6 << 16]
    assert isa.listing([mm, isa.Sys()]) == (
        "000000  MM    n=8:16 wbits=4 bias=True accumulate=False act=relu per_block_n=False "
        "k_steps=3 row_tiles=2 tok_pairs=4 act_base=1 w_base=2 out_base=5 bias_base=6 "
        "ntable_addr=0 wait=L release=F\n"
        "000005  SYS   op=end wait=- release=-\n"
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: isa.MM(k_steps=0), "MM.k_steps=0"),
        (lambda: isa.MM(n=3), "MM.n=3"),
        (lambda: isa.MV(tok_pairs=2), "MV.tok_pairs=2"),
        (lambda: isa.MM(act_base=1 << 16), "MM.act_base=65536"),
        (lambda: isa.MM(wbits=6), "MM.wbits=6"),
        (lambda: isa.Load(channel=32), "LOAD.channel=32"),
        (lambda: isa.Load(hbm_addr=-1), "LOAD.hbm_addr=-1"),
        (lambda: isa.Store(length=0), "STORE.length=0"),
        (lambda: isa.Sfu(op=15), "SFU.op=15"),
        (lambda: isa.MM(wait=16), "MM.wait=16"),
        (lambda: isa.MM(wait=1 << isa.Queue.MATRIX), "MM.wait: names"),
        (lambda: isa.Load(release=1), "LOAD.release: names"),
    ],
)
def test_range_checks_name_instruction_and_field(make, message: str) -> None:
    with pytest.raises(InputError, match=message):
        make()


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ([0], "word 0: unknown opcode 0"),
        ([0x1 << 28, 0, 0], "word 0: LOAD truncated"),
        ([0x6 << 28, 0x3 << 28], "word 1: unknown opcode 3|word 1: MM truncated"),
        ([(0x6 << 28) | 1], "reserved bits"),
        ([(0x6 << 28) | (7 << 16)], "SYS.op: code 7"),
        ([(0x3 << 28), 0, 0, 0, 0], "MM.k_steps=0"),
    ],
)
def test_decode_rejects_bad_words(words: list[int], message: str) -> None:
    with pytest.raises(InputError, match=message):
        isa.decode(struct.pack(f"<{len(words)}I", *words))
    with pytest.raises(InputError, match="whole number"):
        isa.decode(b"\x00\x01")


def test_matrix_instruction_feeds_the_cycle_model() -> None:
    engine = EngineParams(ChainParams(8, 2, 8), n_chains=2)
    mv = isa.MV(n=2, k_steps=4, row_tiles=3)
    assert matrix_cycles(mv, engine) == 12 + 1 + engine.chain.latency_cycles + 1
