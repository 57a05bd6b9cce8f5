"""Check the Program container: stream encoding and field table, buckets, layout checks."""

from __future__ import annotations

import pytest

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.program import HbmLayout, HbmRegion, Stream
from sparseflow.ir.errors import InputError

PROGRAM = [
    isa.Load(buffer=isa.Buffer.WEIGHT, channel=3, length=4, inner_count=2, release=4),
    isa.MV(n=8, k_steps=3, row_tiles=2, wait=1),
    isa.Sfu(op=isa.SfuOp.SILU, length=5, rows=2),
    isa.Store(length=7, count=3),
    isa.Sys(),
]


def test_stream_round_trip_and_table() -> None:
    stream = Stream.from_instructions(PROGRAM)
    assert stream.instructions() == PROGRAM
    assert stream.nbytes == 4 * sum(i.n_words() for i in PROGRAM)
    table = stream.table()
    assert table["opcode"].tolist() == [int(i.OPCODE) for i in PROGRAM]
    assert table["nbytes"].tolist() == [PROGRAM[0].nbytes, 0, 0, PROGRAM[3].nbytes, 0]
    assert table["elements"].tolist() == [0, 0, 10, 0, 0]
    assert table["channel"][0] == 3 and table["n"][1] == 8 and table["k_steps"][1] == 3
    assert table["wait"][1] == 1 and table["release"][0] == 4


def test_listing_from_columns_equals_the_isa_listing() -> None:
    from sparseflow.backends.fpga.columns import listing_of

    program = [*PROGRAM, isa.Sys(op=isa.SysOp.BARRIER), isa.MM(n=16, bias=True, act="relu")]
    assert listing_of(Stream.from_instructions(program).table()) == isa.listing(program)


@pytest.mark.parametrize(
    ("cls", "fields", "message"),
    [
        (isa.Load, {"length": 70000}, r"LOAD.length=70000: must be an integer in 1..65535"),
        (isa.MV, {"n": 3}, r"MV.n=3: must be one of \(2, 4, 8, 16\)"),
        (isa.MM, {"act": "tanh"}, r"MM.act='tanh'"),
        (isa.Sfu, {"rows": 0}, r"SFU.rows=0"),
    ],
)
def test_blocks_refuse_what_the_isa_cannot_encode(cls, fields, message) -> None:
    from sparseflow.backends.fpga.columns import block_of

    with pytest.raises(InputError, match=message):
        block_of([cls], [fields], [0], [0])


def test_layout_check_names_overlap_and_capacity() -> None:
    a = HbmRegion("a", "weight", 0, 0, 10)
    with pytest.raises(InputError, match="a overlaps b"):
        HbmLayout(2, 1024, (), (a, HbmRegion("b", "kv", 0, 5, 10))).check()
    with pytest.raises(InputError, match="bytes_per_channel 320"):
        HbmLayout(2, 320, (), (a, HbmRegion("b", "kv", 0, 10, 1))).check()
    HbmLayout(2, 1024, (), (a, HbmRegion("b", "kv", 1, 0, 10))).check()
