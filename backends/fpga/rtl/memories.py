"""Map the generated RTL's memories onto UltraScale+ RAM primitives, as Yosys does.

Every buffer of the RTL is a memory with one synchronous write port and one or more
synchronous read ports at other addresses. Which primitive kind holds it (LUT RAM, block RAM
or UltraRAM) is chosen here (`choose_style`) and written into the RTL as a `ram_style`
attribute; how many primitives that kind needs is computed by `map_memory`, which replays the
geometry search of Yosys `memory_libmap` (passes/memory/memory_libmap.cc, `handle_geom`) over
the primitive library Yosys uses for `synth_xilinx -family xcup -uram`
(techlibs/xilinx/{lutrams_xcu,brams_xc4v,urams}.txt with HAS_SIZE_36 and HAS_MIXWIDTH_SDP):

- For each primitive mode (abits = address bits at its narrowest width, widths, byte, cost) and
  each base width w: a memory of width W and depth D is padded to whole bytes (Wp), split into
  ceil(D / depth(w)) address blocks, and the blocks' bits are packed into
  ceil(blocks x Wp / w) primitives; every read port beyond what one primitive serves
  replicates the whole array.
- Cost = primitive cost x count (or the used share of it, for `widthscale` LUT RAMs)
  + 0.5 x (read-mux bits + write-demux enables) + 2 x emulation score; the cheapest mode and
  width win, the earlier one on ties (library order), as in Yosys.

Aspect ratios are those of AMD UG573: RAMB36E2 32Kx1 .. 512x72, RAMB18E2 16Kx1 .. 512x36 (simple
dual port), URAM288 4Kx72; LUT RAMs per UG574 (RAM64M8: 64 x 7 bits, RAM32M16: 32 x 14).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

MUX_FACTOR = 0.5  # memory_libmap FACTOR_MUX / FACTOR_DEMUX
EMU_FACTOR = 2.0  # memory_libmap FACTOR_EMU
SHALLOW_DEPTH = 64  # deepest memory a single LUT level holds (RAM64M8, UG574)
# LUTs per LUT-RAM primitive (AMD UG574, distributed RAM configurations).
LUTRAM_LUTS = {
    "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
    "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8, "RAM32M": 4, "RAM64M": 4,
    "RAM32M16": 8, "RAM64M8": 8, "RAM64X8SW": 8, "RAM32X16DR8": 8,
}  # fmt: skip


class RamStyle(StrEnum):
    """Primitive kinds, spelled as the `ram_style` attribute values Yosys accepts."""

    LUTRAM = "distributed"
    BLOCK = "block"
    ULTRA = "ultra"


@dataclass(frozen=True)
class RamMode:
    """One primitive configuration of the Yosys library (a `ram` block with its options)."""

    style: RamStyle
    cell: str  # primitive the mode maps to
    abits: int  # address bits at the narrowest width
    widths: tuple[int, ...]
    cost: float
    byte: int = 0  # write-enable granularity (0: one enable per port)
    widthscale: bool = False  # cost scales with the used share of the width (LUT RAMs)
    read_slots: int = 1  # read ports one primitive offers besides the write port
    per_bit: bool = False  # one single-bit primitive per used data bit (RAM64X1D and up)

    @property
    def luts_per_cell(self) -> int:
        """Return the LUTs one primitive occupies (0 for block and ultra RAM)."""
        return LUTRAM_LUTS.get(self.cell, 0)

    def depth(self, width_index: int) -> int:
        """Return the words one primitive holds at widths[width_index]."""
        return 1 << (self.abits - width_index)


_qp = {"widthscale": True, "read_slots": 3}  # quad port: RW + 3 R
_op = {"widthscale": True, "read_slots": 7}  # octal port: RW + 7 R
LIBRARY: tuple[RamMode, ...] = (
    # lutrams_xcu.txt, in file order: dual port (RW + R), quad port (RW + 3 R), octal port
    # (RW + 7 R), simple dual port (W + R); lutrams_xc5v_map.v names the cells. Single-port
    # modes need one address for read and write, which the buffers never have.
    RamMode(RamStyle.LUTRAM, "RAM32M16", 5, (8,), 16, widthscale=True),
    RamMode(RamStyle.LUTRAM, "RAM64X1D", 6, (4,), 16, widthscale=True, per_bit=True),
    RamMode(RamStyle.LUTRAM, "RAM128X1D", 7, (2,), 16, widthscale=True, per_bit=True),
    RamMode(RamStyle.LUTRAM, "RAM256X1D", 8, (1,), 16, widthscale=True, per_bit=True),
    RamMode(RamStyle.LUTRAM, "RAM32M16", 5, (4,), 16, **_qp),
    RamMode(RamStyle.LUTRAM, "RAM64M8", 6, (2,), 16, **_qp),
    RamMode(RamStyle.LUTRAM, "RAM32M16", 5, (2,), 16, **_op),
    RamMode(RamStyle.LUTRAM, "RAM64M8", 6, (1,), 16, **_op),
    RamMode(RamStyle.LUTRAM, "RAM32M16", 5, (14,), 16, widthscale=True),
    RamMode(RamStyle.LUTRAM, "RAM64M8", 6, (7,), 16, widthscale=True),
    # brams_xc4v.txt: true dual port (HALF = RAMB18E2, FULL = RAMB36E2), then simple dual port.
    RamMode(RamStyle.BLOCK, "RAMB18E2", 14, (1, 2, 4, 9, 18), 129, byte=9),
    RamMode(RamStyle.BLOCK, "RAMB36E2", 15, (1, 2, 4, 9, 18, 36), 257, byte=9),
    RamMode(RamStyle.BLOCK, "RAMB18E2", 14, (1, 2, 4, 9, 18, 36), 129, byte=9),
    RamMode(RamStyle.BLOCK, "RAMB36E2", 15, (1, 2, 4, 9, 18, 36, 72), 257, byte=9),
    # urams.txt: 4K x 72 with write enables per 8- or 9-bit byte (the two BYTEWIDTH options).
    RamMode(RamStyle.ULTRA, "URAM288", 12, (72,), 1024, byte=8),
    RamMode(RamStyle.ULTRA, "URAM288", 12, (72,), 1024, byte=9),
)


@dataclass(frozen=True)
class Memory:
    """One RTL buffer: words x bits, with its read ports (one synchronous write port)."""

    name: str
    width_bits: int
    depth_words: int
    read_ports: int = 1


@dataclass(frozen=True)
class Mapping:
    """How many primitives of one kind a memory takes (see the module docstring)."""

    memory: Memory
    style: RamStyle
    cell: str
    cells: int
    luts: int  # LUTs used as RAM (LUT RAM cells only)
    mux_bits: int  # read-data bits selected among address blocks, in LUTs
    cost: float

    @property
    def bram36(self) -> float:
        """Return the block RAM taken, in RAMB36 units (a RAMB18 is half of one)."""
        return {"RAMB36E2": 1.0, "RAMB18E2": 0.5}.get(self.cell, 0.0) * self.cells

    @property
    def uram(self) -> int:
        return self.cells if self.cell == "URAM288" else 0


def map_memory(memory: Memory, style: RamStyle) -> Mapping:
    """Return the cheapest mapping of `memory` onto primitives of `style`, as Yosys picks."""
    best: Mapping | None = None
    for mode in LIBRARY:
        if mode.style is not style:
            continue
        for width_index in range(len(mode.widths)):
            found = _mapping(memory, mode, width_index)
            if best is None or found.cost < best.cost:
                best = found
    if best is None:
        raise AssertionError(f"no {style} primitive in the library")
    return best


def _mapping(memory: Memory, mode: RamMode, width_index: int) -> Mapping:
    unit = mode.widths[width_index]
    byte = mode.byte if 0 < mode.byte <= unit else unit
    padded = -(-memory.width_bits // byte) * byte
    blocks = -(-memory.depth_words // mode.depth(width_index))
    repl_data = -(-blocks * padded // unit)
    repl_port = -(-memory.read_ports // mode.read_slots)
    demux = blocks if blocks > 1 else 0
    mux_bits = (blocks - 1) * memory.width_bits * memory.read_ports
    if mode.widthscale:
        cell_cost = mode.cost * blocks * memory.width_bits / unit * repl_port
    else:
        cell_cost = mode.cost * repl_data * repl_port
    # Emulation score: one point per read port that does not share the write port.
    cost = cell_cost + MUX_FACTOR * (mux_bits + demux) + EMU_FACTOR * memory.read_ports
    cells = repl_data * repl_port
    if mode.per_bit:
        cells = blocks * memory.width_bits * repl_port
    return Mapping(memory, mode.style, mode.cell, cells, cells * mode.luts_per_cell,
                   mux_bits, cost)  # fmt: skip


@dataclass(frozen=True)
class FabricTotals:
    """Device totals that memory styles are weighed against."""

    luts: int
    bram36: int
    uram288: int


def choose_style(memory: Memory, fabric: FabricTotals) -> RamStyle:
    """Return the primitive kind that takes the smallest share of the device for `memory`.

    LUT RAM is a candidate only for memories of at most SHALLOW_DEPTH words (one LUT level,
    the vendors' use for small buffers); a part without UltraRAM never gets it.
    """
    shares = {}
    for style in RamStyle:
        if style is RamStyle.LUTRAM and memory.depth_words > SHALLOW_DEPTH:
            continue
        if style is RamStyle.ULTRA and not fabric.uram288:
            continue
        m = map_memory(memory, style)
        used = {RamStyle.LUTRAM: (m.luts, fabric.luts), RamStyle.BLOCK: (m.bram36, fabric.bram36),
                RamStyle.ULTRA: (m.uram, fabric.uram288)}[style]  # fmt: skip
        shares[style] = used[0] / used[1] if used[1] else math.inf
    return min(shares, key=lambda s: (shares[s], list(RamStyle).index(s)))
