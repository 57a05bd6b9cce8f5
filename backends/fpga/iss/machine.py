"""The accelerator's state and its dispatcher: the programs of all cores run to SYS END.

State: the HBM image (`hbm.HbmImage`), per core the matrix engine's ACT, WEIGHT (values and
the NTABLE indices at the same addresses), BIAS and OUT buffers (`EngineBuffers`, their
depths from the buffer plan), and the device-wide SFU buffer (65,536 words of 32 bytes).
On-chip buffers start empty for every program: a program may read only what it wrote.

Dispatcher (`isa` module docstring): each core's dispatcher reads its stream in order and
appends each instruction to its unit's in-order queue, up to a SYS BARRIER or SYS END. The
queues then run: an instruction starts once its wait tokens are there (taking one from
each `sem[src][dst]`) and releases its tokens when done. Among the queues that can start,
one is picked at random (seeded): any legal interleaving may come up, and the access checks
(`memory.Tracked`) fail for every data race whatever the order picked. A barrier waits for
every queue of every core to drain and for all cores to reach it; SYS END ends a core's
program once its queues are empty. A state where no queue can start while some hold
instructions is a deadlock, and tokens left over at the end are an unbalanced release:
both raise `ExecutionError`.

A probe (`Probe`), when given, is called around every executed instruction: benches read the
state there (the RTL agreement bench takes the buffers an MM reads and writes).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import EngineBuffers
from sparseflow.backends.fpga.iss.hbm import HbmImage
from sparseflow.backends.fpga.iss.memory import Access, Clocks, ExecutionError, Tracked
from sparseflow.backends.fpga.iss.sfu import run_sfu
from sparseflow.backends.fpga.iss.units import load, matrix, store
from sparseflow.backends.fpga.layout import ADDRESS_WORDS
from sparseflow.backends.fpga.program import Program

UNITS = len(isa.Queue)
EXECUTE = {
    isa.Opcode.LOAD: load,
    isa.Opcode.STORE: store,
    isa.Opcode.MM: matrix,
    isa.Opcode.MV: matrix,
    isa.Opcode.SFU: run_sfu,
}
Probe = Callable[["Machine", int, int, bool], None]  # (machine, core, index, done); reads only


@dataclass
class CoreState:
    """One core's engine buffers and their access history (`weight_init`: which chain
    entries of each weight word hold loaded data)."""

    buf: EngineBuffers
    act: Tracked
    weight: Tracked
    weight_init: np.ndarray
    bias: Tracked
    out: Tracked

    def clear(self) -> None:
        for tracked in (self.act, self.weight, self.bias, self.out):
            tracked.clear()
        self.weight_init[:] = False


class Machine:
    """The state of one device running `program`'s streams over `hbm` (module docstring);
    `probe(machine, core, index, done)` is called before (done False) and after (done True) each
    executed instruction other than SYS."""

    def __init__(self, program: Program, hbm: HbmImage, probe: Probe | None = None) -> None:
        self.program, self.engine, self.hbm, self.probe = program, program.engine, hbm, probe
        self.queues = program.cores * UNITS
        self.sfu = np.zeros((ADDRESS_WORDS, isa.HBM_WORD_BYTES), np.uint8)
        self.sfu_track = Tracked("SFU buffer", ADDRESS_WORDS, self.queues)
        self.cores = [self._core() for _ in range(program.cores)]

    def _core(self) -> CoreState:
        e, q = self.engine, self.queues
        buf = EngineBuffers.zeros(e)
        return CoreState(
            buf,
            Tracked("ACT buffer", e.act_depth, q),
            Tracked("WEIGHT buffer", e.weight_depth, q),
            np.zeros((e.weight_depth, e.n_chains), bool),
            Tracked("BIAS buffer", e.bias_depth, q),
            Tracked("OUT buffer", e.out_depth, q),
        )

    def run(self, streams: list[list[isa.Instruction]], seed: int = 0) -> int:
        """Run one program (a stream per core) to SYS END; return the instructions executed.
        ExecutionError names the instruction and the region of any broken rule."""
        if len(streams) != len(self.cores):
            raise ExecutionError(f"{len(streams)} streams for {len(self.cores)} cores")
        for core in self.cores:
            core.clear()
        self.sfu_track.clear()
        run = _Run(self, streams, np.random.default_rng(seed))
        executed = run.all()
        self.hbm.end_program()
        return executed


class _Run:
    """One program's execution: dispatch up to each barrier, then drain the queues."""

    def __init__(self, machine: Machine, streams: list[list[isa.Instruction]], rng) -> None:
        self.m, self.streams, self.rng = machine, streams, rng
        self.clocks = Clocks(machine.queues)
        self.pcs = [0] * len(streams)
        self.sems: dict[tuple[int, int, int], deque] = {}
        self.first = np.cumsum([0] + [len(s) for s in streams])
        self.offsets = [np.cumsum([0] + [i.n_words() for i in s]) for s in streams]
        self.executed = 0

    def name(self, gid: int) -> str:
        """Return how errors name instruction `gid` (a global index)."""
        if gid < 0:
            return "the host"
        core = int(np.searchsorted(self.first, gid, side="right")) - 1
        index = gid - int(self.first[core])
        insn = self.streams[core][index]
        word = int(self.offsets[core][index])
        return f"core {core} instruction {index} (word {word}: {insn.listing()})"

    def all(self) -> int:
        barriers = 0
        while True:
            queues, stops = {}, []
            for core in range(len(self.streams)):
                stops.append(self.dispatch(core, queues))
            self.drain(queues)
            if set(stops) == {isa.SysOp.END}:
                self.check_tokens()
                return self.executed
            if isa.SysOp.END in stops:
                ended = stops.index(isa.SysOp.END)
                waiting = stops.index(isa.SysOp.BARRIER)
                raise ExecutionError(
                    f"core {ended} reached SYS END while core {waiting} waits at its barrier "
                    f"{barriers}: the cores' streams pass different numbers of barriers"
                )
            self.clocks.barrier()
            barriers += 1

    def dispatch(self, core: int, queues: dict) -> isa.SysOp:
        """Queue `core`'s instructions up to its next SYS instruction; return its op."""
        stream = self.streams[core]
        while True:
            pc = self.pcs[core]
            if pc >= len(stream):
                raise ExecutionError(f"core {core}: the stream ends without SYS END")
            insn = stream[pc]
            self.pcs[core] = pc + 1
            if isinstance(insn, isa.Sys):
                self.executed += 1
                return insn.op
            queues.setdefault((core, int(insn.QUEUE)), deque()).append(pc)

    def drain(self, queues: dict) -> None:
        """Run every queued instruction, picking among the startable queues at random."""
        pending = {k: q for k, q in queues.items() if q}
        while pending:
            ready = [k for k, q in pending.items() if self.can_start(k, q[0])]
            if not ready:
                raise self.deadlock(pending)
            key = ready[int(self.rng.integers(len(ready)))]
            index = pending[key].popleft()
            if not pending[key]:
                del pending[key]
            self.execute(key[0], key[1], index)

    def can_start(self, key: tuple[int, int], index: int) -> bool:
        core, unit = key
        wait = self.streams[core][index].wait
        return all(self.sems.get((core, j, unit)) for j in range(UNITS) if wait >> j & 1)

    def execute(self, core: int, unit: int, index: int) -> None:
        insn = self.streams[core][index]
        queue = core * UNITS + unit
        for j in range(UNITS):
            if insn.wait >> j & 1:
                self.clocks.merge(queue, self.sems[(core, j, unit)].popleft())
        time = self.clocks.tick(queue)
        gid = int(self.first[core]) + index
        access = Access(queue, time, self.clocks.vc[queue], gid, self.name)
        if self.m.probe:
            self.m.probe(self.m, core, index, False)
        try:
            EXECUTE[insn.OPCODE](self.m, core, insn, access)
        except (ValueError, IndexError) as err:  # fields no check above foresaw
            raise access.error(f"cannot execute: {err}") from None
        if self.m.probe:
            self.m.probe(self.m, core, index, True)
        self.executed += 1
        for j in range(UNITS):
            if insn.release >> j & 1:
                self.sems.setdefault((core, unit, j), deque()).append(self.clocks.snapshot(queue))

    def deadlock(self, pending: dict) -> ExecutionError:
        heads = []
        for (core, unit), q in sorted(pending.items()):
            insn = self.streams[core][q[0]]
            missing = [isa.QUEUE_LETTERS[j] for j in range(UNITS)
                       if insn.wait >> j & 1 and not self.sems.get((core, j, unit))]  # fmt: skip
            gid = int(self.first[core]) + q[0]
            heads.append(f"{self.name(gid)} waits for a token from {'/'.join(missing)}")
        return ExecutionError("deadlock: no queue can start; " + "; ".join(heads))

    def check_tokens(self) -> None:
        for (core, src, dst), tokens in sorted(self.sems.items()):
            if tokens:
                raise ExecutionError(
                    f"core {core}: {len(tokens)} token(s) from {isa.QUEUE_LETTERS[src]} to "
                    f"{isa.QUEUE_LETTERS[dst]} left at SYS END (a release without its wait)"
                )
