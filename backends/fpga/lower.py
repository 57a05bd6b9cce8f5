"""Lower graph nodes to per-core instruction lists for one pass of `tokens` tokens.

Requires the `LinearSpec`s and `HbmLayout` of `layout.py`. Ensures instruction lists (one per
core) whose token masks order every producer before its consumers (see `Emitter`), with:
- linears as weight tiles on every core: LOAD (one per channel part) -> MM/MV -> SFU DEQUANT
  over the tile's rows (DEQUANT_BIAS, adding the FP16 bias rows loaded once per core, for
  the first K group of a linear with a bias). Tiles live in a ring over the weight buffer
  (`WeightRing`): a load waits only for the matrix ops that last read the words it
  overwrites, so loads run ahead of the matrix engine by up to a buffer (double buffering
  for half-buffer tiles);
- fusion linear -> activation / eltwise: a silu, gelu, relu, add or mul reading a linear's output
  runs per tile on that tile's core over the tile's rows, right after its DEQUANT, once its
  other inputs exist (mul(silu(gate), up) fuses into up, whose rows split like gate's);
- norms run on every core on a core-local copy (each core needs the whole normalised vector
  to QUANTIZE its matrix engine's input), RoPE, the KV-cache stores and attention per head on
  the head's core (`layout.head_core`): LOAD K parts -> MM/MV scores -> DEQUANT -> MASK ->
  SOFTMAX -> QUANTIZE -> LOAD V parts -> MM/MV -> DEQUANT, every SFU op over one head's
  elements; K/V loads wait for the store of the pass's new rows;
- decode keeps activations on chip: the only STOREs are KV-cache rows and the logits.
Barriers: cores exchange vectors only through the device-wide SFU buffer, so a SYS BARRIER
(on every core) goes exactly before a node that reads, on some core, a value another core
wrote since the last barrier (`Lowering.reads`). Before each barrier every core prefetches
the first tiles of the next linear into free weight-buffer words: those loads overlap the
tail of the epoch (the last matrix op, DEQUANT and fused SFU work), and the next epoch's
matrix engine starts on data already on chip. Other SFU work runs on core 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.columns import Block, block_of
from sparseflow.backends.fpga.engine_model import EngineParams, plan_linear
from sparseflow.backends.fpga.layout import ADDRESS_WORDS, FP16_BYTES, SFU_WORD_ELEMENTS, head_core
from sparseflow.backends.fpga.program import BufferPlan, HbmLayout, WeightPlacement, WeightTile
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import FLIGHTLLM_BLOCK
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op

Q = isa.Queue
QUEUE_OF = {
    isa.Load: Q.LOAD,
    isa.Store: Q.STORE,
    isa.MM: Q.MATRIX,
    isa.MV: Q.MATRIX,
    isa.Sfu: Q.SFU,
}
SFU_OPS = {
    Op.RMSNORM: isa.SfuOp.RMSNORM,
    Op.LAYERNORM: isa.SfuOp.LAYERNORM,
    Op.SILU: isa.SfuOp.SILU,
    Op.GELU: isa.SfuOp.GELU,
    Op.RELU: isa.SfuOp.RELU,
    Op.ADD: isa.SfuOp.ADD,
    Op.MUL: isa.SfuOp.MUL,
    Op.ROPE: isa.SfuOp.ROPE,
    Op.SOFTMAX: isa.SfuOp.SOFTMAX,
    Op.SCALE: isa.SfuOp.MASK,
    Op.CAUSAL_MASK: isa.SfuOp.MASK,
}
NORMS = {Op.RMSNORM, Op.LAYERNORM}
ACTIVATIONS = {Op.SILU, Op.GELU, Op.RELU}  # single-input functions fused after a DEQUANT
FUSABLE = ACTIVATIONS | {Op.ADD, Op.MUL}
# cast (rounding to FP16) is free: the SFU already holds its results in FP16.
FREE = {Op.INPUT, Op.WEIGHT, Op.RESHAPE, Op.TRANSPOSE, Op.REPEAT_KV, Op.KV_APPEND, Op.CAST}
ALIASES = {Op.RESHAPE, Op.TRANSPOSE, Op.REPEAT_KV, Op.CAST}  # reading one reads its input
ATTENTION = {Op.MATMUL, Op.SCALE, Op.CAUSAL_MASK, Op.SOFTMAX}
PENDING = -2  # reader of ring words loaded ahead for a matrix op not emitted yet
LOCAL = ("local",)  # partition key: every core holds its own copy
HEADS = ("heads",)  # partition key: per head, on the head's core


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

    def emit(self, cls: type[isa.Instruction], after: tuple = (), **fields: object) -> int:
        q = QUEUE_OF.get(cls)
        latest: dict[int, int] = {}
        queues = self.queues
        for dep in after:
            if dep is not None and dep >= 0:
                p = queues[dep]
                if p != q and dep > latest.get(p, -1):
                    latest[p] = dep
        wait = 0
        for p, dep in latest.items():
            if dep > self.synced.get((q, p), -1):
                self.releases[dep] |= 1 << q
                wait |= 1 << p
                self.synced[(q, p)] = dep
        return self._append(cls, fields, q, wait)

    def _append(self, cls: type[isa.Instruction], fields: dict, queue, wait: int) -> int:
        self.classes.append(cls)
        self.fields.append(fields)
        self.queues.append(queue)
        self.waits.append(wait)
        self.releases.append(0)
        return len(self.classes) - 1

    def barrier(self) -> None:
        self._append(isa.Sys, {"op": isa.SysOp.BARRIER}, None, 0)
        self.synced = {(q, p): len(self.classes) for q in Q for p in Q}
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


@dataclass
class Lowering:
    """Lower the nodes of one segment of `graph` for one pass; one Emitter per core.

    `carry_in` (per core, see `Emitter.carry`) names the tiles of the segment's first linear
    that the previous segment loaded ahead; `lookahead` is the first linear after the
    segment, whose first tiles `finish` loads ahead before the closing barrier.
    """

    graph: Graph
    engine: EngineParams
    plan: BufferPlan
    layout: HbmLayout
    weights: dict[str, WeightPlacement]
    shape: PassShape
    cores: int
    nodes: list[Node]
    carry_in: tuple = ()
    lookahead: Node | None = None
    consumers: dict[str, list[Node]] | None = None  # `consumers_of(graph)`, if known
    emitters: list[Emitter] = field(default_factory=list)
    vec: dict[str, int] = field(default_factory=dict)  # value -> SFU-buffer word
    vec_top: int = 0
    done: set = field(default_factory=set)
    scratch: dict[str, int] = field(default_factory=dict)  # SFU vectors outside the graph
    written: dict = field(default_factory=dict)  # value -> (cores, partition) this epoch
    kv_stores: dict = field(default_factory=dict)  # (kind, kv head) -> STORE index
    position: int = 0  # index in `nodes` of the node being lowered
    keys_read: bool = False  # whether the lowering read `shape.keys` (see `keys`)

    def __post_init__(self) -> None:
        depth = self.plan.depth_words[isa.Buffer.WEIGHT]
        self.emitters = [Emitter(WeightRing(depth)) for _ in range(self.cores)]
        if self.consumers is None:
            self.consumers = consumers_of(self.graph)
        first = next((n for n in self.nodes if n.op is Op.LINEAR), None)
        for e, carried in zip(self.emitters, self.carry_in, strict=False):
            for ordinal, base, words in carried:
                span, _ = e.ring.take(base, words, PENDING)
                span.append(None)  # loaded before the barrier that opens this segment
                e.prefetched[(first.inputs[1], ordinal)] = span

    @property
    def keys(self) -> int:
        """Return the pass's KV length, noting that the lowering depends on it: segments that
        never read it lower alike for every decode bucket (the compiler reuses them)."""
        self.keys_read = True
        return self.shape.keys

    # ------------------------------------------------------------------ buffers
    def addr(self, value: str) -> int:
        """Return the SFU-buffer word of `value` (bump allocation, wrapping the buffer)."""
        if value not in self.vec:
            base = value.split("@")[0]
            words = -(-self.row_elements(base) * self.shape.tokens // SFU_WORD_ELEMENTS)
            if self.vec_top + words > ADDRESS_WORDS:
                self.vec_top = 0
            self.vec[value] = self.vec_top
            self.vec_top += words
        return self.vec[value]

    def row_elements(self, value: str) -> int:
        """Return the elements per token of a graph value or of a named SFU scratch vector."""
        if value not in self.graph:
            return self.scratch[value]
        t = self.graph.node(value).type
        seq = self.graph.meta_dict.get("seq")
        numel = 1
        for d in t.shape[1:]:
            if d != seq:  # the graph's symbolic token count stands for one token
                numel *= d if isinstance(d, int) else self.keys
        # A prefill pass covers `shape.tokens` of the graph's tokens (a chunk): per-token sizes
        # divide by the graph's own count, not the pass's.
        return max(1, numel // (int(seq) if str(seq).isdigit() else 1))

    # ------------------------------------------------------------------ epochs
    def source(self, value: str) -> str:
        """Return the value whose data `value` views (through reshapes and transposes)."""
        while value in self.graph and self.graph.node(value).op in ALIASES:
            value = self.graph.node(value).inputs[0]
        return value

    def reads(self, values: list[str], cores: list[int], partition: tuple | None = None) -> None:
        """Barrier first if a core of `cores` reads (its `partition` part of) a value that
        another core wrote in this epoch."""
        for value in values:
            cores_written, wrote = self.written.get(self.source(value), ((), None))
            mine = partition is not None and partition == wrote
            if not mine and any(set(cores_written) - {c} for c in cores):
                self.barrier()
                return

    def wrote(self, value: str, cores: list[int] | range, partition: tuple | None) -> None:
        self.written[value] = (tuple(cores), partition)

    def barrier(self) -> None:
        """Load the next linear's first tiles ahead, then a barrier on every core."""
        upcoming = [n for n in self.nodes[self.position :] if n.op is Op.LINEAR]
        nxt = upcoming[0] if upcoming else self.lookahead
        if nxt is not None:
            self.prefetch(nxt)
        for e in self.emitters:
            e.barrier()
        self.written = {}

    def finish(self) -> None:
        """Close the segment: load ahead and barrier when a linear follows it."""
        self.position = len(self.nodes)
        if self.lookahead is not None:
            self.barrier()

    def prefetch(self, node: Node) -> None:
        """Load the first tiles of linear `node` on every core into free ring words."""
        placement = self.weights[node.inputs[1]]
        budget = self.plan.weight_half_words()
        for core, e in enumerate(self.emitters):
            for ordinal, tile in enumerate(t for t in placement.tiles if t.core == core):
                key = (placement.name, ordinal)
                if key in e.prefetched:
                    continue
                base = e.ring.place(tile.words)
                if base is None or e.ring.pending_words() + tile.words > budget:
                    break
                e.prefetched[key] = self.load_tile(e, tile, base, PENDING)[0]

    # ------------------------------------------------------------------ nodes
    def lower(self, node: Node) -> None:
        """Emit the instructions of one node (nothing for layout-only nodes)."""
        op = node.op
        if op in FREE or node.name in self.done:
            return
        if op is Op.EMBEDDING:
            elements = self.row_elements(node.name)
            self.io_load(self.emitters[0], f"io.{node.name}", node.name, elements, self.host_row)
            self.wrote(node.name, [0], None)
        elif op is Op.QUANTIZE:
            self.quantize(node)
        elif op is Op.LINEAR:
            self.linear(node)
        elif op is Op.MATMUL:
            self.attention(node)
        elif op in NORMS:
            self.norm(node)
        elif op is Op.ROPE:
            self.rope(node)
        elif op in SFU_OPS:
            self.sfu_node(node)
        else:
            lowered = {Op.EMBEDDING, Op.QUANTIZE, Op.LINEAR, Op.MATMUL, *SFU_OPS, *FREE}
            supported = sorted(o.value for o in lowered)
            raise InputError(
                f"node %{node.name}: op '{op}' has no FPGA lowering (the accelerator runs "
                f"{', '.join(supported)})"
            )

    @property
    def first_token(self) -> int:
        """Return the position of the pass's first token (its keys end with its tokens).

        A decode bucket serves every KV length up to its own, so its step's position is the
        bucket's last one; the host moves the step's KV-store and RoPE-table addresses to
        the actual position (length-adaptive compilation keeps one program per bucket).
        """
        return self.keys - self.shape.tokens

    @property
    def host_row(self) -> int:
        """Return the pass's first row in the host's token-indexed I/O regions (embeddings,
        logits): the prompt position in prefill, row 0 in decode (the step's one token)."""
        return self.first_token if self.shape.phase == "prefill" else 0

    def io_load(self, e: Emitter, region: str, value: str, elements: int, first: int) -> int:
        """LOAD the pass's tokens of an I/O region holding `elements` FP16 per row, from row
        `first` on, into the SFU buffer."""
        row_bytes = elements * FP16_BYTES
        addr, words = self.io_span(region, first * row_bytes, self.shape.tokens * row_bytes)
        return e.emit(isa.Load, buffer=isa.Buffer.SFU, channel=addr[0], hbm_addr=addr[1],
                      buf_addr=self.addr(value), length=words)  # fmt: skip

    def io_span(self, region: str, offset: int, nbytes: int) -> tuple[tuple[int, int], int]:
        """Return ((channel, word address), words) of `nbytes` at byte `offset` of a region."""
        r = self.layout.region(region)
        words = -(-nbytes // isa.HBM_WORD_BYTES)
        if offset % isa.HBM_WORD_BYTES or offset + nbytes > r.nbytes or words > 0xFFFF:
            raise InputError(
                f"HBM region {region}: {nbytes} bytes at byte {offset} do not fit its "
                f"{r.nbytes} bytes as whole {isa.HBM_WORD_BYTES}-byte words in one transfer"
            )
        return (r.channel, r.addr + offset // isa.HBM_WORD_BYTES), words

    def sfu(self, e: Emitter, op: isa.SfuOp, out: str, ins: list[str], after: tuple = (),
            length: int | None = None, **extra: int) -> int:  # fmt: skip
        """Emit one SFU op over `length` elements per token (default: all of `out`)."""
        length = self.row_elements(out.split("@")[0]) if length is None else length
        if length > 0xFFFF:
            raise InputError(f"node %{out.split('@')[0]}: {length} elements per token exceed "
                             "the SFU instruction's 16-bit length")  # fmt: skip
        fields = {"in_addr": self.addr(ins[0]), "out_addr": self.addr(out),
                  "rows": self.shape.tokens, "length": length}  # fmt: skip
        if len(ins) > 1:
            fields["in2_addr"] = self.addr(ins[1])
        fields.update(extra)
        return e.emit(isa.Sfu, after=after, op=op, **fields)

    def local(self, value: str, core: int) -> str:
        """Return the name of `core`'s copy of `value` if cores hold copies, else `value`."""
        value = self.source(value)
        return f"{value}@{core}" if self.written.get(value, ((), None))[1] == LOCAL else value

    def table_load(self, e: Emitter, core: int, weight: str) -> int:
        """LOAD a norm/bias table from the copy on `core`'s channels into the SFU buffer."""
        r = self.layout.region(f"{weight}@{core}")
        return e.emit(isa.Load, buffer=isa.Buffer.SFU, channel=r.channel, hbm_addr=r.addr,
                      buf_addr=self.addr(weight), length=min(r.words, 0xFFFF))  # fmt: skip

    def norm(self, node: Node) -> None:
        """Normalise on every core into a core-local copy (no barrier before its QUANTIZE)."""
        value, weights = self.split_inputs(node)
        cores = list(range(self.cores))
        self.reads(value, cores)
        for core, e in enumerate(self.emitters):
            after = tuple(self.table_load(e, core, w) for w in weights)
            ins = [self.local(v, core) for v in value] + weights
            self.sfu(e, SFU_OPS[node.op], f"{node.name}@{core}", ins, after)
        self.wrote(node.name, cores, LOCAL)

    def split_inputs(self, node: Node) -> tuple[list[str], list[str]]:
        """Return (value inputs, weight inputs) of a node."""
        weights = [i for i in node.inputs if self.graph.node(i).op is Op.WEIGHT]
        return [i for i in node.inputs if i not in weights], weights

    def sfu_node(self, node: Node) -> None:
        """Run an unfused SFU node on core 0 over all its elements."""
        values, weights = self.split_inputs(node)
        self.reads(values, [0])
        e = self.emitters[0]
        after = tuple(self.table_load(e, 0, w) for w in weights)
        self.sfu(e, SFU_OPS[node.op], node.name, values + weights, after)
        self.wrote(node.name, [0], None)

    def quantize(self, node: Node) -> None:
        """QUANTIZE on every core: linears need their input in each core's ACT buffer.

        Quantizers feeding attention are done per head by `attention` instead.
        """
        users = self.consumers.get(node.name, [])
        if users and all(u.op is Op.MATMUL for u in users):
            return
        cores = list(range(self.cores))
        self.reads([node.inputs[0]], cores, LOCAL)
        for core, e in enumerate(self.emitters):
            self.act_quantize(e, node.name, self.local(node.inputs[0], core), None)

    def act_quantize(self, e: Emitter, out: str, value: str, length: int | None,
                     after: tuple = ()) -> int:  # fmt: skip
        """QUANTIZE into the ACT buffer once the matrix ops reading it are done."""
        e.act_writer = self.sfu(e, isa.SfuOp.QUANTIZE, out, [value], (*after, e.act_reader),
                                length, out_addr=0)  # fmt: skip
        return e.act_writer

    # ------------------------------------------------------------------ linears
    def linear(self, node: Node) -> None:
        placement = self.weights[node.inputs[1]]
        fused = self.fused_users(node)
        partition = ("rows", tuple((t.core, t.row0, t.rows) for t in placement.tiles))
        chain = {node.name} | {u.name for u in fused}
        for user in fused:
            others = [i for i in user.inputs if self.source(i) not in chain]
            self.reads(others, list(range(self.cores)), partition)
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        for core, e in enumerate(self.emitters):
            tiles = [t for t in placement.tiles if t.core == core]
            bias_load = self.table_load(e, core, bias) if bias and tiles else None
            for ordinal, tile in enumerate(tiles):
                mv, half = self.weight_tile(e, placement, ordinal, tile)
                imm = self.dequant_imm(placement, tile)
                op, after, extra = isa.SfuOp.DEQUANT, (mv,), {}
                if bias and tile.k0 == 0:  # the bias joins the first K group's sums
                    in2 = self.addr(bias) + tile.row0 // SFU_WORD_ELEMENTS
                    op, after, extra = isa.SfuOp.DEQUANT_BIAS, (mv, bias_load), {"in2_addr": in2}
                last = self.sfu(e, op, node.name, [node.name], after, tile.rows, in_addr=0,
                                imm=imm, **extra)  # fmt: skip
                if tile.k0 + tile.k == placement.k:
                    for user in fused:
                        last = self.sfu(e, SFU_OPS[user.op], user.name, list(user.inputs),
                                        (last,), tile.rows)  # fmt: skip
                if not self.consumers.get(node.name):
                    last = self.store_output(e, core, node.name, placement, tile, last)
                e.out_readers[half] = last
        cores_used = sorted({t.core for t in placement.tiles})
        for value in [node.name] + [u.name for u in fused]:
            self.wrote(value, cores_used, partition)
            self.done.add(value)

    def store_output(self, e: Emitter, core: int, value: str, placement: WeightPlacement,
                     tile: WeightTile, after: int) -> int:  # fmt: skip
        """STORE a graph output's tile rows (the logits) to the core's I/O region: one block of
        [prompt tokens, tile rows] FP16 per tile of the core, the pass's tokens at their rows
        (decode: row 0)."""
        region = f"io.logits@{core}"
        mine = [t for t in placement.tiles if t.core == core and t.k0 == 0]
        tokens = self.layout.region(region).nbytes // (sum(t.rows for t in mine) * FP16_BYTES)
        before = sum(t.rows for t in mine if t.row0 < tile.row0)
        offset = (before * tokens + self.host_row * tile.rows) * FP16_BYTES
        addr, words = self.io_span(region, offset, self.shape.tokens * tile.rows * FP16_BYTES)
        return e.emit(isa.Store, after=(after,), buffer=isa.Buffer.SFU, channel=addr[0],
                      hbm_addr=addr[1], buf_addr=self.addr(value), length=words)  # fmt: skip

    def dequant_imm(self, placement: WeightPlacement, tile: WeightTile) -> int:
        stride = -(-placement.rows // SFU_WORD_ELEMENTS) & 0x1FFF
        code = {2: 0, 4: 1, 8: 2, 16: 3}[placement.n]
        return code << 14 | (tile.k0 > 0) << 13 | stride

    def load_tile(self, e: Emitter, tile: WeightTile, base: int, reader: int | None) -> tuple:
        """Emit the loads of one weight tile at ring word `base`; return (span, last load)."""
        span, wait = e.ring.take(base, tile.words, reader)
        loads, offset = [], base
        for part, words in zip(tile.parts, tile.part_words, strict=True):
            loads.append(e.emit(isa.Load, after=(wait,), buffer=isa.Buffer.WEIGHT,
                                channel=part.channel, hbm_addr=part.addr, buf_addr=offset,
                                length=part.words))  # fmt: skip
            offset += words
        span.append(loads[-1])
        return span, loads[-1]

    def weight_tile(self, e: Emitter, placement: WeightPlacement, ordinal: int,
                    tile: WeightTile) -> tuple[int, int]:  # fmt: skip
        """Emit one weight tile's loads (unless loaded ahead) and matrix op; return the
        matrix op and the OUT-buffer half it writes."""
        span = e.prefetched.pop((placement.name, ordinal), None)
        if span is None:
            span, _ = self.load_tile(e, tile, e.ring.place(tile.words), None)
        block = FLIGHTLLM_BLOCK  # nmblock pads K to whole 16-blocks
        k_padded = -(-tile.k // block) * block
        op = plan_linear(self.engine, placement.n, self.shape.tokens, tile.rows, k_padded)
        return self.matrix(e, span, placement.n, placement.wbits, op)

    def matrix(self, e: Emitter, span: list, n: int, wbits: int, op) -> tuple[int, int]:
        """Emit the MM/MV reading ring `span`; it waits for its loads, its ACT input and the
        SFU op that last read the OUT half it overwrites."""
        half = e.matrix_ops % 2
        e.matrix_ops += 1
        cls = isa.MV if self.shape.tokens == 1 else isa.MM
        after = (span[3], e.act_writer, e.out_readers.get(half))
        mv = e.emit(cls, after=after, n=n, wbits=wbits, k_steps=op.k_steps,
                    row_tiles=op.row_tiles, tok_pairs=op.tok_pairs, w_base=span[0],
                    out_base=half * (self.engine.out_depth // 2))  # fmt: skip
        span[2] = mv
        e.act_reader = mv
        return mv, half

    def fused_users(self, node: Node) -> list[Node]:
        """Return the chain of eltwise nodes fused into this linear's tiles.

        A user fuses when it is the linear's only user and its other inputs are computed
        already (so mul(silu(gate), up) fuses into up, not gate); the chain continues
        through each fused node's single fusable user.
        """
        chain, value = [], node.name
        while True:
            users = self.consumers.get(value, [])
            while len(users) == 1 and users[0].op in ALIASES:
                users = self.consumers.get(users[0].name, [])
            if len(users) != 1 or users[0].op not in FUSABLE:
                return chain
            user = users[0]
            others = [i for i in user.inputs if self.source(i) != value]
            if any(self.pending_value(i) for i in others):
                return chain
            chain.append(user)
            value = user.name

    def pending_value(self, value: str) -> bool:
        """Return whether `value` is produced by a node of this segment not lowered yet."""
        value = self.source(value)
        later = {n.name for n in self.nodes[self.position + 1 :]}
        return value in later and value not in self.done

    # ------------------------------------------------------------------ attention
    def kv_heads(self) -> int:
        return int(self.graph.meta_dict.get("num_kv_heads", 1))

    def head_dims(self, node: Node) -> tuple[int, int]:
        t = self.graph.node(node.inputs[0]).type
        return int(t.shape[1]), int(t.shape[3])

    def rope(self, node: Node) -> None:
        """RoPE per head on the head's core (the heads the core attends to)."""
        heads, head_dim = int(node.type.shape[1]), int(node.type.shape[-1])
        groups = max(1, heads // self.kv_heads())
        self.reads([node.inputs[0]], list(range(self.cores)))
        self.scratch["rope.table"] = 2 * head_dim
        tables: dict[int, int] = {}
        for head in range(heads):
            core = head_core(head // groups if heads > self.kv_heads() else head, self.cores)
            e = self.emitters[core]
            if core not in tables:
                tables[core] = self.io_load(e, f"io.rope@{core}", "rope.table", 2 * head_dim,
                                            self.first_token)  # fmt: skip
            self.sfu(e, isa.SfuOp.ROPE, node.name, [node.inputs[0], "rope.table"],
                     (tables[core],), head_dim)  # fmt: skip
        self.wrote(node.name, list(range(self.cores)), HEADS)

    def store_kv(self, node: Node, kind: str, layer: str) -> None:
        """QUANTIZE and STORE the pass's new keys/values per KV head on the head's core."""
        head_dim = int(node.type.shape[-1])
        self.reads([node.inputs[0]], list(range(self.cores)), HEADS)
        for head in range(self.kv_heads()):
            core = head_core(head, self.cores)
            e = self.emitters[core]
            self.scratch[f"{node.name}.{head}"] = head_dim
            quant = self.sfu(e, isa.SfuOp.QUANTIZE, f"{node.name}.{head}", [node.inputs[0]],
                             length=head_dim, out_addr=0)  # fmt: skip
            stores = []
            for region in self.kv_parts(kind, layer, head):
                row_bytes = region.nbytes // self.layout.kv_keys
                # the pass's rows; a row narrower than a word (the scales) writes its word
                first = self.first_token * row_bytes // isa.HBM_WORD_BYTES
                words = max(1, self.shape.tokens * row_bytes // isa.HBM_WORD_BYTES)
                stores.append(e.emit(isa.Store, after=(quant,), buffer=isa.Buffer.ACT,
                                     channel=region.channel, hbm_addr=region.addr + first,
                                     length=words))  # fmt: skip
            self.kv_stores[(kind, head)] = stores[-1]
        self.done.add(node.name)

    def kv_parts(self, kind: str, layer: str, head: int) -> list:
        """Return the HBM regions of one KV head's cache (`layout.kv_regions`)."""
        return self.layout.parts(f"kv.{kind}.{layer}.{head}")

    def attention(self, node: Node) -> None:
        """Lower scores -> (scale, mask) -> softmax -> context of one layer, per head."""
        prefix = node.name.rsplit(".", 1)[0] + "."
        part = [n for n in self.nodes if n.op in ATTENTION and n.name.startswith(prefix)]
        self.done.update(n.name for n in part)
        layer = prefix.split(".")[1]
        heads, head_dim = self.head_dims(node)
        groups = max(1, heads // self.kv_heads())
        q = self.source(node.inputs[0])
        q = self.graph.node(q).inputs[0] if self.graph.node(q).op is Op.QUANTIZE else q
        self.reads([q], list(range(self.cores)), HEADS)
        for head in range(heads):
            kv = head // groups
            e = self.emitters[head_core(kv, self.cores)]
            self.head(e, prefix, q, head, head_dim, layer, kv)
        self.wrote(f"{prefix}context", list(range(self.cores)), HEADS)

    def head(self, e: Emitter, prefix: str, q: str, head: int, head_dim: int, layer: str,
             kv: int) -> None:  # fmt: skip
        keys = self.keys
        self.scratch[f"{prefix}q.{head}"] = head_dim
        self.scratch["positions"] = 1
        self.act_quantize(e, f"{prefix}q.{head}", q, head_dim)
        scores = self.kv_matrix(e, "k", layer, kv, rows=keys, k=head_dim)
        name = f"{prefix}scores"
        dq = self.sfu(e, isa.SfuOp.DEQUANT, name, [name], (scores[0],), keys, in_addr=0)
        mask = self.sfu(e, isa.SfuOp.MASK, name, [name, "positions"], (dq,), keys)
        sm = self.sfu(e, isa.SfuOp.SOFTMAX, f"{prefix}probs", [name], (mask,), keys)
        e.out_readers[scores[1]] = sm
        self.act_quantize(e, f"{prefix}probs", f"{prefix}probs", keys, (sm,))
        ctx = self.kv_matrix(e, "v", layer, kv, rows=head_dim, k=keys)
        out = f"{prefix}context"
        e.out_readers[ctx[1]] = self.sfu(e, isa.SfuOp.DEQUANT, out, [out], (ctx[0],), head_dim,
                                         in_addr=0)  # fmt: skip

    def kv_matrix(self, e: Emitter, kind: str, layer: str, kv: int, rows: int,
                  k: int) -> tuple[int, int]:  # fmt: skip
        """LOAD one head's cached keys (or values) from its parts and multiply (dense INT8)."""
        op = plan_linear(self.engine, 16, self.shape.tokens, rows, k)
        parts = self.kv_parts(kind, layer, kv)
        kv_rows = self.keys
        nbytes = [kv_rows * r.nbytes // self.layout.kv_keys for r in parts]
        word_bytes = self.plan.word_bytes[isa.Buffer.WEIGHT]
        words = max(1, -(-sum(nbytes) // word_bytes))
        span, wait = e.ring.take(e.ring.place(words), words, None)
        store = self.kv_stores.get((kind, kv))
        last = None
        for region, size in zip(parts, nbytes, strict=True):
            last = e.emit(isa.Load, after=(wait, store), buffer=isa.Buffer.WEIGHT,
                          channel=region.channel, hbm_addr=region.addr, buf_addr=span[0],
                          length=max(1, size // isa.HBM_WORD_BYTES))  # fmt: skip
        span.append(last)
        return self.matrix(e, span, 16, 8, op)


def lower_nodes(lowering: Lowering, kv_quant: Callable[[Node], str | None]) -> None:
    """Lower the segment's nodes in order, then close it (`Lowering.finish`).

    `kv_quant(node)` names 'k'/'v' for quantizers of new KV rows.
    """
    for position, node in enumerate(lowering.nodes):
        lowering.position = position
        kind = kv_quant(node)
        if kind is not None:
            lowering.store_kv(node, kind, node.name.split(".")[1])
        else:
            lowering.lower(node)
    lowering.finish()
