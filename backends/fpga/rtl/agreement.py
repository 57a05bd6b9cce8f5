"""Cut one linear layer of a compiled program into cases of the RTL agreement bench.

The instruction-set simulator (`iss`) runs the prefill program decoded from DIR/program's
bytes; for each core holding a tile of the layer (`WeightPlacement.tiles`, one MM/MV each)
a `Share` records:
- `words`: the core's program words as DIR/program holds them, from the tile's first weight
  LOAD through the first STORE after its MM/MV (the LOADs feeding it, the SFU ops that
  quantize its input and dequantize its result, the STORE that drains it), then SYS END;
- the ACT, WEIGHT (with its indices) and BIAS words the MM/MV reads, as the simulator holds
  them when it starts, and the OUT words it writes, as the simulator holds them after it.

The RTL slice (sf_accel_top: controller + matrix engine) fetches every word, runs the MM/MV
and retires the other instructions (their units are outside it, and it has no HBM port), so
the bench writes the read words through the buffer write ports, runs `words` and compares
the OUT words with the simulator's, word for word (`mismatched_words`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import EngineBuffers, EngineParams, matrix_words
from sparseflow.backends.fpga.iss.machine import Machine
from sparseflow.backends.fpga.iss.runner import Device, split_program, streams_from_file
from sparseflow.backends.fpga.program import Program, WeightTile
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph


@dataclass(frozen=True)
class Share:
    """One core's part of a layer: its program words and the buffer words around its MM/MV.

    `*_addr` are buffer word addresses; `act`, `weight`, `index`, `bias` hold those words as
    the MM/MV found them and `out` the words it left (`EngineBuffers` element layout).
    """

    core: int
    first: int  # stream index of the first instruction
    matrix: int  # stream index of the MM/MV
    matrix_word: int  # offset of the MM/MV's first word in `words`
    words: np.ndarray  # uint32
    act_addr: np.ndarray
    act: np.ndarray
    weight_addr: np.ndarray
    weight: np.ndarray
    index: np.ndarray
    bias_addr: np.ndarray
    bias: np.ndarray
    out_addr: np.ndarray
    out: np.ndarray

    def save(self, path: Path) -> None:
        """Write the share to an .npz file (what the cocotb side loads)."""
        np.savez(path, **dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> Share:
        """Return the share `save` wrote to `path`."""
        with np.load(path) as data:
            values = {f.name: data[f.name] for f in dataclasses.fields(cls)}
        return cls(**{k: v.item() if v.ndim == 0 else v for k, v in values.items()})

    def buffers(self, engine: EngineParams) -> tuple[EngineBuffers, dict[str, np.ndarray]]:
        """Return zero buffers holding the words the MM/MV reads, and their addresses."""
        buf = EngineBuffers.zeros(engine)
        buf.act[self.act_addr] = self.act
        buf.weight[self.weight_addr] = self.weight
        buf.index[self.weight_addr] = self.index
        buf.bias[self.bias_addr] = self.bias
        return buf, {"act": self.act_addr, "weight": self.weight_addr, "bias": self.bias_addr}

    def expected(self) -> dict[int, np.ndarray]:
        """Return the simulator's OUT words {address: int32 [2, chains, segments]}."""
        return {int(a): word for a, word in zip(self.out_addr, self.out, strict=True)}


def mismatched_words(
    expected: Mapping[int, np.ndarray], got: Mapping[int, np.ndarray]
) -> list[int]:
    """Return the addresses of `expected` whose word `got` lacks or holds differently."""
    return [a for a, word in expected.items() if a not in got or not np.array_equal(word, got[a])]


def select(stream: list[isa.Instruction], tile: WeightTile) -> tuple[int, int, int]:
    """Return the stream indices (first, matrix, last) of `tile`'s share: its first weight
    LOAD, the MM/MV reading the words its LOADs wrote, the first STORE after that."""
    parts = {(r.channel, r.addr) for r in tile.parts}
    loads = [i for i, insn in enumerate(stream) if _loads_part(insn, parts)][: len(parts)]
    if {(stream[i].channel, stream[i].hbm_addr) for i in loads} != parts:
        raise InputError(f"core {tile.core}: the tile at row {tile.row0} is not loaded")
    bases = {stream[i].buf_addr for i in loads}
    matrix = next((i for i in range(loads[-1], len(stream)) if _reads(stream[i], bases)), None)
    if matrix is None:
        raise InputError(f"core {tile.core}: no MM/MV reads the tile at row {tile.row0}")
    if stream[matrix].accumulate:
        raise InputError(f"core {tile.core}: the MM/MV accumulates (the RTL has no OUT port)")
    last = next(i for i in range(matrix, len(stream)) if isinstance(stream[i], isa.Store))
    others = [i for i in range(loads[0], last + 1) if isinstance(stream[i], isa.MM)]
    if others != [matrix]:
        raise InputError(f"core {tile.core}: instructions {others} are matrix instructions")
    return loads[0], matrix, last


def _loads_part(insn: isa.Instruction, parts: set[tuple[int, int]]) -> bool:
    """Return whether `insn` loads weight words from one of `parts` (channel, HBM word)."""
    return (
        isinstance(insn, isa.Load)
        and insn.buffer == isa.Buffer.WEIGHT
        and (insn.channel, insn.hbm_addr) in parts
    )


def _reads(insn: isa.Instruction, weight_words: set[int]) -> bool:
    """Return whether `insn` is an MM/MV reading every one of `weight_words`."""
    return isinstance(insn, isa.MM) and weight_words <= set(matrix_words(insn)["weight"])


def layer_shares(
    program: Program, graph: Graph, data: bytes, layer: str, ids: np.ndarray, seed: int = 0
) -> list[Share]:
    """Run the prefill of `ids` [1, P] from DIR/program's bytes `data` on the simulator and
    return one `Share` per tile of weight `layer` (module docstring)."""
    bucket = program.bucket_for("prefill", ids.shape[1])
    streams = streams_from_file(data, program)
    cores = streams[bucket.key]
    cuts = {}
    for tile in program.layout.weight(layer).tiles:
        first, matrix, last = select(cores[tile.core], tile)
        cuts[(tile.core, matrix)] = (first, last)
    seen: dict[tuple[int, int, bool], dict[str, np.ndarray]] = {}

    def probe(machine: Machine, core: int, index: int, done: bool) -> None:
        if (core, index) in cuts:
            buf = machine.cores[core].buf
            seen[(core, index, done)] = _buffer_words(buf, cores[core][index], done)

    Device(program, graph, seed, streams, probe).prefill(graph, ids)
    words = split_program(data, program)[bucket.key]
    shares = []
    for (core, matrix), (first, last) in cuts.items():
        offset, share_words = _cut(words[core], cores[core], first, matrix, last)
        found = {**seen[(core, matrix, False)], **seen[(core, matrix, True)]}
        shares.append(Share(core, first, matrix, offset, share_words, **found))
    return shares


def _cut(
    data: bytes, stream: list[isa.Instruction], first: int, matrix: int, last: int
) -> tuple[int, np.ndarray]:
    """Return the MM/MV's word offset and the words of instructions first..last + SYS END."""
    offsets = np.cumsum([0] + [insn.n_words() for insn in stream])
    words = np.frombuffer(data, "<u4")[offsets[first] : offsets[last + 1]]
    end = np.frombuffer(isa.encode([isa.Sys(op=isa.SysOp.END)]), "<u4")
    return int(offsets[matrix] - offsets[first]), np.concatenate([words, end])


def _buffer_words(buf: EngineBuffers, insn: isa.MM, done: bool) -> dict[str, np.ndarray]:
    """Return copies of the words `insn` reads (before it) or writes (done), with addresses."""
    spans = {name: np.array(span, np.int64) for name, span in matrix_words(insn).items()}
    if done:
        return {"out_addr": spans["out"], "out": buf.out[spans["out"]].copy()}
    return {
        "act_addr": spans["act"],
        "act": buf.act[spans["act"]].copy(),
        "weight_addr": spans["weight"],
        "weight": buf.weight[spans["weight"]].copy(),
        "index": buf.index[spans["weight"]].copy(),
        "bias_addr": spans["bias"],
        "bias": buf.bias[spans["bias"]].copy(),
    }
