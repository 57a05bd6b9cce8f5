"""Per-core instruction emission: token masks from data dependencies, the weight-buffer ring.

`Emitter` collects one core's instructions (class, fields, token masks); `WeightRing` places
weight tiles in the weight buffer and says which matrix op a load must wait for. Both are
used by `lower.Lowering`, which decides what to emit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.columns import Block, block_of
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node

Q = isa.Queue
# Queue numbers as plain ints: they key the emitter's dicts (an IntEnum hashes in Python).
QUEUE_OF = {
    isa.Load: int(Q.LOAD),
    isa.Store: int(Q.STORE),
    isa.MM: int(Q.MATRIX),
    isa.MV: int(Q.MATRIX),
    isa.Sfu: int(Q.SFU),
}
PENDING = -2  # reader of ring words loaded ahead for a matrix op not emitted yet
QUANT_CHAIN_STEP = 1 << 12  # QUANTIZE imm: k steps of chain_len elements (else 16)


def fp16_bits(value: float) -> int:
    """Return the FP16 bit pattern of `value` (an SFU immediate)."""
    return int(np.array(value, np.float16).view(np.uint16))


@dataclass
class WeightRing:
    """Weight-buffer words as a ring of tile spans [start, end, reader].

    `reader` is the index of the matrix op reading the span, PENDING for a tile loaded ahead
    whose matrix op comes later, or None once a barrier has retired its reader. A new tile
    goes at the ring's top (wrapping to 0, never over a PENDING span) and its load waits for
    the latest matrix op that read any word it overwrites.
    """

    depth: int
    spans: list[list] = field(default_factory=list)
    top: int = 0

    def place(self, words: int) -> int | None:
        """Return where the next `words` words go, or None if PENDING spans leave no room."""
        base = self.top
        for _ in range(len(self.spans) + 2):
            if base + words > self.depth:
                base = 0
            clash = [s[1] for s in self.spans if s[2] == PENDING and _overlap(s, base, words)]
            if not clash:
                return base
            base = max(clash)
        return None

    def take(self, base: int, words: int, reader: int | None) -> tuple[list, int | None]:
        """Occupy [base, base + words); return the new span and the reader to wait for."""
        latest, kept = None, []
        for s in self.spans:
            if not _overlap(s, base, words):
                kept.append(s)
                continue
            if s[2] is not None:
                latest = s[2] if latest is None else max(latest, s[2])
            kept += [p for p in ([s[0], base, s[2]], [base + words, s[1], s[2]]) if p[0] < p[1]]
        span = [base, base + words, reader]
        self.spans = [*kept, span]
        self.top = base + words
        return span, latest

    def pending_words(self) -> int:
        return sum(s[1] - s[0] for s in self.spans if s[2] == PENDING)

    def after_barrier(self) -> None:
        """Forget retired readers; keep PENDING spans, the top right after them."""
        self.spans = [s for s in self.spans if s[2] == PENDING]
        self.top = max((s[1] for s in self.spans), default=0)


def consumers_of(graph: Graph) -> dict[str, list[Node]]:
    """Return value -> the nodes reading it, in graph order."""
    consumers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for value in node.inputs:
            consumers.setdefault(value, []).append(node)
    return consumers


def _overlap(span: list, base: int, words: int) -> bool:
    return span[0] < base + words and base < span[1]


@dataclass
class Emitter:
    """Collect one core's instructions and derive their token masks from data dependencies.

    `emit(..., after=[i, j])` makes the new instruction wait for instructions i and j of
    other queues: the latest of them per queue gets a release bit for the new instruction's
    queue and the new instruction a wait bit, unless an earlier instruction of this queue
    already waited for it or a later one (queues run in order, so that covers it).
    """

    ring: WeightRing
    out_half: int = 0  # OUT-buffer words of one half (matrix ops alternate halves)
    classes: list[type[isa.Instruction]] = field(default_factory=list)  # one per instruction
    fields: list[dict] = field(default_factory=list)  # its non-default fields
    queues: list[int | None] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)
    releases: list[int] = field(default_factory=list)
    synced: dict = field(default_factory=dict)  # (to queue, from queue) -> index
    prefetched: dict = field(default_factory=dict)  # (weight, tile ordinal) -> ring span
    act_writer: int | None = None  # last QUANTIZE into the ACT buffer
    act_reader: int | None = None  # last matrix op reading the ACT buffer
    out_readers: dict = field(default_factory=dict)  # OUT half -> last SFU reading it
    matrix_ops: int = 0

    def emit(self, cls: type[isa.Instruction], after: Sequence = (), **fields: object) -> int:
        q = QUEUE_OF.get(cls)
        latest: dict[int, int] = {}
        queues = self.queues
        for dep in after:
            if dep is not None and dep >= 0:
                p = queues[dep]
                if p != q and dep > latest.get(p, -1):
                    latest[p] = dep
        wait = 0
        synced = self.synced
        for p, dep in latest.items():
            if dep > synced.get((q, p), -1):
                self.releases[dep] |= 1 << q
                wait |= 1 << p
                synced[(q, p)] = dep
        self.classes.append(cls)
        self.fields.append(fields)
        self.queues.append(q)
        self.waits.append(wait)
        self.releases.append(0)
        return len(self.classes) - 1

    def out_base(self, half: int) -> int:
        """Return the first OUT-buffer word of `half`."""
        return half * self.out_half

    def barrier(self) -> None:
        self.emit(isa.Sys, op=isa.SysOp.BARRIER)
        # everything before the barrier is done: no token needed for it (its index and below)
        self.synced = {(int(q), int(p)): len(self.classes) - 1 for q in Q for p in Q}
        self.ring.after_barrier()
        self.act_writer = self.act_reader = None
        self.out_readers = {}

    def block(self) -> Block:
        """Return the instructions as field columns (`columns.Block`; encoded on writing)."""
        return block_of(self.classes, self.fields, self.waits, self.releases)

    def carry(self) -> tuple:
        """Return the tiles loaded ahead: ((tile ordinal, base, words), ...) in ring order."""
        return tuple(
            (ordinal, span[0], span[1] - span[0])
            for (_, ordinal), span in sorted(self.prefetched.items(), key=lambda kv: kv[1][0])
        )


@dataclass
class PassShape:
    """One pass through the model: `tokens` new tokens, attention over `keys` keys."""

    phase: str
    tokens: int
    keys: int
