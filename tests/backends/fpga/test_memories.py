"""Memory geometry (rtl/memories.py) against primitive counts Yosys 0.70 produced for the same
memories (synth_xilinx -family xcup -uram with the given ram_style), and the style rule."""

from __future__ import annotations

import pytest

from sparseflow.backends.fpga.rtl.memories import Memory, RamStyle, choose_style, map_memory
from sparseflow.hw_models.loader import load_hw

# (width, depth, read ports, style) -> (primitive, cells): Yosys runs of sf_matrix_engine.sv
# and of single-memory modules (tests/rtl/test_synth.py repeats the check when Yosys runs).
YOSYS_COUNTS = [
    ((256, 256, 1, RamStyle.BLOCK), ("RAMB36E2", 4)),
    ((384, 256, 1, RamStyle.BLOCK), ("RAMB18E2", 11)),
    ((1024, 256, 2, RamStyle.BLOCK), ("RAMB18E2", 58)),
    ((1024, 256, 1, RamStyle.BLOCK), ("RAMB18E2", 29)),
    ((32, 1024, 1, RamStyle.BLOCK), ("RAMB36E2", 1)),
    ((192, 512, 1, RamStyle.BLOCK), ("RAMB36E2", 3)),
    ((512, 64, 1, RamStyle.LUTRAM), ("RAM64M8", 74)),
    ((256, 32, 1, RamStyle.LUTRAM), ("RAM32M16", 19)),
    ((256, 4096, 1, RamStyle.ULTRA), ("URAM288", 4)),
]


@pytest.mark.parametrize(("shape", "expected"), YOSYS_COUNTS, ids=str)
def test_primitive_counts_match_yosys(shape: tuple, expected: tuple) -> None:
    width, depth, reads, style = shape
    m = map_memory(Memory("m", width, depth, reads), style)
    assert (m.cell, m.cells) == expected


def test_address_blocks_share_primitives() -> None:
    # 8 blocks of 4,096 x 256 bits pack into ceil(8 x 256 / 72) = 29 URAM288, not 8 x 4.
    m = map_memory(Memory("act", 256, 32768), RamStyle.ULTRA)
    assert (m.cells, m.uram, m.mux_bits) == (29, 29, 7 * 256)
    assert map_memory(Memory("a", 256, 4096), RamStyle.ULTRA).mux_bits == 0


def test_units_of_each_kind() -> None:
    block = map_memory(Memory("b", 384, 256), RamStyle.BLOCK)
    assert block.bram36 == 5.5 and block.uram == 0 and block.luts == 0
    lutram = map_memory(Memory("l", 512, 64), RamStyle.LUTRAM)
    assert lutram.luts == 74 * 8 and lutram.bram36 == 0


def test_more_read_ports_replicate_the_array() -> None:
    one = map_memory(Memory("o", 4096, 64, 1), RamStyle.LUTRAM)
    two = map_memory(Memory("o", 4096, 64, 2), RamStyle.LUTRAM)
    assert two.cells == 2 * one.cells


def test_style_rule_takes_the_smallest_share_of_the_device() -> None:
    fabric = load_hw("u280").fabric
    assert choose_style(Memory("bias", 512, 64), fabric) is RamStyle.LUTRAM
    assert choose_style(Memory("w", 384, 256), fabric) is RamStyle.BLOCK
    assert choose_style(Memory("act", 256, 32768), fabric) is RamStyle.ULTRA
    # Deeper than one LUT level: never LUT RAM, however small.
    assert choose_style(Memory("imem", 32, 1024), fabric) is not RamStyle.LUTRAM


def test_a_part_without_uram_never_gets_it() -> None:
    from dataclasses import replace

    fabric = replace(load_hw("u280").fabric, uram288=0)
    assert choose_style(Memory("act", 256, 32768), fabric) is RamStyle.BLOCK
