"""Lower graph nodes to per-core instruction lists for one pass of `tokens` tokens.

Requires the `LinearSpec`s and `HbmLayout` of `layout.py`. Ensures instruction lists (one per
core) that compute the graph on the machine `isa` describes, with token masks ordering every
producer before its consumers and every reuse of a buffer word after its last reader:
- values live in the device-wide SFU buffer as FP16 rows, one row per token (token-major), or
  per head (head-major: RoPE outputs); spans are allocated by liveness (`sfu_alloc`): taken
  at a value's first write, handed back after its last reader; values that outlive the
  segment (the residual stream) are carried to the next one at the same words;
- linears as weight tiles on every core: one LOAD of the core's constants (row scales, bias),
  then per tile LOADs (one per channel part) -> MM/MV -> SFU DEQUANT over the tile's rows at
  the tile's row offset (DEQUANT_BIAS for the first K group of a linear with a bias). Tiles
  live in a ring over the weight buffer (`emit.WeightRing`): a load waits only for the matrix
  ops that last read the words it overwrites, so loads run ahead of the matrix engine;
- fusion linear -> activation / eltwise: a silu, gelu, relu, add or mul reading a linear's
  output runs per tile on that tile's core over the tile's rows, right after its DEQUANT, once
  its other inputs exist (mul(silu(gate), up) fuses into up, whose rows split like gate's);
- norms run on every core on a core-local copy (each core needs the whole normalised vector
  to QUANTIZE its matrix engine's input); RoPE, the KV-cache stores and attention per head on
  the head's core (`lower_attention`);
- decode keeps activations on chip: the only STOREs are KV-cache rows and the logits.
Barriers: cores exchange vectors only through the device-wide SFU buffer, so a SYS BARRIER
(on every core) goes exactly before a node that reads, on some core, a value another core
wrote since the last barrier (`Lowering.reads`). Before each barrier every core prefetches
the first tiles of the next linear into free weight-buffer words. Other SFU work runs on
core 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.emit import (
    PENDING,
    QUANT_CHAIN_STEP,
    Emitter,
    PassShape,
    WeightRing,
    fp16_bits,
)
from sparseflow.backends.fpga.engine_model import N_CODES, EngineParams, plan_linear
from sparseflow.backends.fpga.layout import (
    ADDRESS_WORDS,
    FP16_BYTES,
    SCALES_PER_WORD,
    SFU_WORD_ELEMENTS,
    const_layout,
    output_block,
    padded_rows,
    tile_span_words,
)
from sparseflow.backends.fpga.lower_attention import AttentionLowering
from sparseflow.backends.fpga.program import BufferPlan, HbmLayout, WeightPlacement, WeightTile
from sparseflow.backends.fpga.sfu_alloc import SfuAllocator
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import FLIGHTLLM_BLOCK
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op
from sparseflow.ir.ops_math import positive_in_dtype

SFU_OPS = {
    Op.RMSNORM: isa.SfuOp.RMSNORM,
    Op.LAYERNORM: isa.SfuOp.LAYERNORM,
    Op.SILU: isa.SfuOp.SILU,
    Op.GELU: isa.SfuOp.GELU,
    Op.RELU: isa.SfuOp.RELU,
    Op.ADD: isa.SfuOp.ADD,
    Op.MUL: isa.SfuOp.MUL,
    Op.SCALE: isa.SfuOp.SCALE,
}
NORMS = {Op.RMSNORM, Op.LAYERNORM}
ACTIVATIONS = {Op.SILU, Op.GELU, Op.RELU}  # single-input functions fused after a DEQUANT
FUSABLE = ACTIVATIONS | {Op.ADD, Op.MUL}
# cast (rounding to FP16) is free: the SFU already holds its results in FP16.
FREE = {Op.INPUT, Op.WEIGHT, Op.RESHAPE, Op.TRANSPOSE, Op.REPEAT_KV, Op.KV_APPEND, Op.CAST}
ALIASES = {Op.RESHAPE, Op.TRANSPOSE, Op.REPEAT_KV, Op.CAST}  # reading one reads its input
LOCAL = ("local",)  # partition key: every core holds its own copy
GELU_TANH = 1 << 15  # GELU imm: tanh approximation


def source_of(graph: Graph, value: str) -> str:
    """Return the value whose data `value` views (through reshapes, transposes and casts)."""
    while value in graph and graph.node(value).op in ALIASES:
        value = graph.node(value).inputs[0]
    return value


def feeds_attention(node: Node, consumers: dict[str, list[Node]]) -> bool:
    """Return whether `node` quantizes an attention operand (done per head by `attention`)."""
    users = consumers.get(node.name, [])
    return node.op is Op.QUANTIZE and bool(users) and all(u.op is Op.MATMUL for u in users)


def last_reads(graph: Graph, consumers: dict[str, list[Node]]) -> dict[str, int]:
    """Return source value -> index in graph.nodes of the last node reading it (reading a
    view reads its source, and attention reads what its quantizers quantize; a value
    nothing reads maps to its own index)."""

    def physical(value: str) -> str:
        value = source_of(graph, value)
        node = graph.node(value) if value in graph else None
        return physical(node.inputs[0]) if node and feeds_attention(node, consumers) else value

    last = {}
    for index, node in enumerate(graph.nodes):
        last.setdefault(node.name, index)
        if node.op not in ALIASES and not feeds_attention(node, consumers):
            for value in node.inputs:
                last[physical(value)] = index
    return last


@dataclass
class Lowering(AttentionLowering):
    """Lower the nodes of one segment of `graph` for one pass; one Emitter per core.

    `carry_in` (per core, see `Emitter.carry`) names the tiles of the segment's first linear
    that the previous segment loaded ahead, `live_in` the SFU spans of the values it reads
    from earlier segments; `lookahead` is the first linear after the segment, whose first
    tiles `finish` loads ahead before the closing barrier. `start` is the index of the
    segment's first node in graph.nodes and `last_read` is `last_reads(graph)`: a value is
    handed back after its last reader unless it is in `live_out` (read by a later segment).
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
    consumers: dict[str, list[Node]] = field(default_factory=dict)
    live_in: dict[str, tuple[int, int]] = field(default_factory=dict)
    live_out: tuple[str, ...] = ()
    start: int = 0
    last_read: dict[str, int] = field(default_factory=dict)
    end_barrier: bool = False  # close with a barrier even without a lookahead (a pass ends)
    emitters: list[Emitter] = field(default_factory=list)
    sfu: SfuAllocator = field(init=False)
    writers: dict = field(default_factory=dict)  # (SFU value, core) -> last writer
    users: dict = field(default_factory=dict)  # (SFU value, core) -> last reader or writer
    head_major: set = field(default_factory=set)  # values laid out [heads, tokens, head_dim]
    done: set = field(default_factory=set)
    written: dict = field(default_factory=dict)  # value -> (cores, partition) this epoch
    kv_stores: dict = field(default_factory=dict)  # (kind, kv head) -> STORE index
    value_tables: dict = field(default_factory=dict)  # layer -> core -> value-scale table
    position: int = 0  # index in `nodes` of the node being lowered
    keys_read: bool = False  # whether the lowering read `shape.keys` (see `keys`)
    elements: dict = field(default_factory=dict)  # value -> `row_elements`, once computed
    sources: dict = field(default_factory=dict)  # value -> `source`, once computed

    def __post_init__(self) -> None:
        depth = self.plan.depth_words[isa.Buffer.WEIGHT]
        half = self.engine.out_depth // 2
        self.emitters = [Emitter(WeightRing(depth), out_half=half) for _ in range(self.cores)]
        self.sfu = SfuAllocator(ADDRESS_WORDS, self.live_in)
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

    # ------------------------------------------------------------------ SFU values
    def row_elements(self, value: str) -> int:
        """Return the elements per token of graph value `value` (symbolic dims: the keys)."""
        elements = self.elements.get(value)
        if elements is None:
            elements = self.elements[value] = self._row_elements(value)
        return elements

    def _row_elements(self, value: str) -> int:
        t = self.graph.node(value).type
        seq = self.graph.meta_dict.get("seq")
        graph_tokens = int(seq) if str(seq).isdigit() else 1
        numel = 1
        for d in t.shape:
            if str(d) == str(seq):
                numel *= graph_tokens
            else:
                numel *= d if isinstance(d, int) else self.keys
        batch = int(self.graph.meta_dict.get("batch", 1))
        return max(1, numel // (graph_tokens * batch))

    def row_words(self, value: str) -> int:
        """Return the SFU words of one token's row of (the source of) `value`."""
        return -(-self.row_elements(self.source(value)) // SFU_WORD_ELEMENTS)

    def value(self, name: str, cores: list[int] | range, words: int | None = None) -> int:
        """Return the SFU word of value `name`, taking a span of `words` (default: the
        pass's rows of the graph value) for writers on `cores` at its first write."""
        if words is None:
            words = self.shape.tokens * self.row_words(name.split("@")[0])
        addr = self.sfu.alloc(name, words, list(cores))
        if addr is None:  # spans other cores used since the last barrier would fit it
            self.sync()
            addr = self.sfu.alloc(name, words, list(cores))
        return addr

    def emit(self, core: int, cls: type[isa.Instruction], after: tuple = (), reads: tuple = (),
             writes: tuple = (), **fields: object) -> int:  # fmt: skip
        """Emit on `core` an instruction reading and writing SFU values `reads`, `writes`;
        it waits for their last writers (and a write for their last users) on the core."""
        writers, users, sfu = self.writers, self.users, self.sfu
        deps = [*after, *(writers.get((n, core)) for n in reads)]
        for n in writes:
            deps.append(users.get((n, core)))
            deps.append(sfu.war(n, core))
        index = self.emitters[core].emit(cls, deps, **fields)
        for n in (*reads, *writes):
            users[(n, core)] = index
            sfu.touch(n, core, index)
        for n in writes:
            writers[(n, core)] = index
        return index

    def release_dead(self) -> None:
        """Hand back the SFU spans of values whose last reader has been lowered."""
        now = self.start + self.position
        for name in list(self.sfu.live):
            base = name.split("@")[0]  # scratch values (not graph values) go explicitly
            if base in self.graph and base not in self.live_out and self.last_read[base] <= now:
                self.sfu.release(name)

    def carry(self) -> tuple:
        """Return (ring carry per core, SFU spans of `live_out`): what the next segment
        starts from, free of names (layers that repeat have equal carries)."""
        return tuple(e.carry() for e in self.emitters), self.sfu.spans(self.live_out)

    # ------------------------------------------------------------------ epochs
    def source(self, value: str) -> str:
        """Return the value whose data `value` views (through reshapes and transposes)."""
        source = self.sources.get(value)
        if source is None:
            source = self.sources[value] = source_of(self.graph, value)
        return source

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
        self.sync()

    def sync(self) -> None:
        """Emit a barrier on every core: all earlier work is done, retired SFU spans free."""
        for e in self.emitters:
            e.barrier()
        self.sfu.barrier()
        self.written = {}

    def finish(self) -> None:
        """Close the segment: load ahead and barrier when a linear or a pass follows it."""
        self.position = len(self.nodes)
        self.release_dead()
        if self.lookahead is not None or self.end_barrier:
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
                words = tile_span_words(self.engine, placement, tile)
                base = e.ring.place(words)
                if base is None or e.ring.pending_words() + words > budget:
                    break
                e.prefetched[key] = self.load_tile(e, placement, tile, base, PENDING)[0]

    # ------------------------------------------------------------------ nodes
    def lower(self, node: Node) -> None:
        """Emit the instructions of one node (nothing for layout-only nodes)."""
        op = node.op
        if op in FREE or node.name in self.done:
            return
        if op is Op.EMBEDDING:
            self.embedding(node)
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
            lowered = {Op.EMBEDDING, Op.QUANTIZE, Op.LINEAR, Op.MATMUL, Op.ROPE, *SFU_OPS, *FREE}
            supported = sorted(o.value for o in lowered)
            raise InputError(
                f"node %{node.name}: op '{op}' has no FPGA lowering (the accelerator runs "
                f"{', '.join(supported)})"
            )

    @property
    def first_token(self) -> int:
        """Return the position of the pass's first token (its keys end with its tokens).

        A decode bucket serves every KV length up to its own, so its step's position is the
        bucket's last one; the host moves the step's KV-store and RoPE-table addresses and
        the mask's position to the actual ones (length-adaptive compilation keeps one
        program per bucket; `iss.host.relocate`).
        """
        return self.keys - self.shape.tokens

    @property
    def host_row(self) -> int:
        """Return the pass's first row in the host's token-indexed I/O regions (embeddings,
        logits): the prompt position in prefill, row 0 in decode (the step's one token)."""
        return self.first_token if self.shape.phase == "prefill" else 0

    def embedding(self, node: Node) -> None:
        """LOAD the pass's rows of the host's lookup (FP16, `io.<node>`) on core 0."""
        elements = self.row_elements(node.name)
        if elements % SFU_WORD_ELEMENTS:
            raise InputError(f"node %{node.name}: {elements} elements per token are not whole "
                             f"SFU words of {SFU_WORD_ELEMENTS}")  # fmt: skip
        self.io_load(0, f"io.{node.name}", node.name, elements * FP16_BYTES, self.host_row)
        self.wrote(node.name, [0], None)

    def io_load(self, core: int, region: str, value: str, row_bytes: int, first: int) -> int:
        """LOAD the pass's tokens of an I/O region of `row_bytes` per row, from row `first`
        on, into SFU value `value`."""
        addr, words = self.io_span(region, first * row_bytes, self.shape.tokens * row_bytes)
        buf = self.value(value, [core], words)
        return self.emit(core, isa.Load, writes=(value,), buffer=isa.Buffer.SFU,
                         channel=addr[0], hbm_addr=addr[1], buf_addr=buf, length=words)  # fmt: skip

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

    def local(self, value: str, core: int) -> str:
        """Return the name of `core`'s copy of `value` if cores hold copies, else `value`."""
        value = self.source(value)
        return f"{value}@{core}" if self.written.get(value, ((), None))[1] == LOCAL else value

    def table_load(self, core: int, weight: str) -> str:
        """LOAD a table (norm weights and biases, value scales) from the copy on `core`'s
        channels into the SFU buffer; return its SFU name."""
        r = self.layout.region(f"{weight}@{core}")
        name = f"{weight}.table@{core}"  # scratch: handed back explicitly
        buf = self.value(name, [core], r.words)
        self.emit(core, isa.Load, writes=(name,), buffer=isa.Buffer.SFU, channel=r.channel,
                  hbm_addr=r.addr, buf_addr=buf, length=r.words)  # fmt: skip
        return name

    def norm(self, node: Node) -> None:
        """Normalise on every core into a core-local copy (no barrier before its QUANTIZE)."""
        values, weights = self.split_inputs(node)
        cores = list(range(self.cores))
        self.reads(values, cores)
        eps = fp16_bits(positive_in_dtype(float(node.attr("eps")), DType.F16))
        for core in cores:
            tables = [self.table_load(core, w) for w in weights]
            ins = [self.local(v, core) for v in values]
            out = f"{node.name}@{core}"
            fields = {"in2_addr": self.sfu.addr(tables[0])}
            if len(tables) > 1:
                fields["aux_addr"] = self.sfu.addr(tables[1])
            self.sfu_op(core, SFU_OPS[node.op], out, [*ins, *tables], imm=eps, **fields)
            for name in tables:
                self.sfu.release(name)
        self.wrote(node.name, cores, LOCAL)

    def split_inputs(self, node: Node) -> tuple[list[str], list[str]]:
        """Return (value inputs, weight inputs) of a node."""
        weights = [i for i in node.inputs if self.graph.node(i).op is Op.WEIGHT]
        return [i for i in node.inputs if i not in weights], weights

    def sfu_op(self, core: int, op: isa.SfuOp, out: str, ins: list[str], after: tuple = (),
               length: int | None = None, offset: int = 0, **extra: int) -> int:  # fmt: skip
        """Emit one SFU op over the pass's tokens: `length` elements per token (default: all
        of `out`) from element `offset` (a tile's rows) of values `ins` (in, in2) into `out`."""
        base = out.split("@")[0]
        length = self.row_elements(base) if length is None else length
        if length > 0xFFFF:
            raise InputError(f"node %{base}: {length} elements per token exceed the SFU "
                             "instruction's 16-bit length")  # fmt: skip
        words = offset // SFU_WORD_ELEMENTS
        fields = {"out_addr": self.value(out, [core]) + words, "rows": self.shape.tokens,
                  "length": length, "in_addr": self.sfu.addr(ins[0]) + words}  # fmt: skip
        if len(ins) > 1 and op in (isa.SfuOp.ADD, isa.SfuOp.MUL):
            fields["in2_addr"] = self.sfu.addr(ins[1]) + words
        fields.update(extra)
        return self.emit(core, isa.Sfu, after=after, reads=tuple(ins), writes=(out,), op=op,
                         **fields)  # fmt: skip

    def sfu_node(self, node: Node) -> None:
        """Run an unfused SFU node on core 0 over all its elements."""
        values, _ = self.split_inputs(node)
        self.reads(values, [0])
        ins = [self.source(v) for v in values]
        self.sfu_op(0, SFU_OPS[node.op], node.name, ins, imm=self.sfu_imm(node, 0))
        self.wrote(node.name, [0], None)

    def sfu_imm(self, node: Node, stride: int) -> int:
        """Return the imm field of an SFU op computing `node` with row stride `stride`."""
        if node.op is Op.SCALE:
            return fp16_bits(float(node.attr("factor")))
        if node.op is Op.GELU and node.attr("approximate", "none") == "tanh":
            return GELU_TANH | stride
        return stride

    def quantize(self, node: Node) -> None:
        """QUANTIZE on every core: linears need their input in each core's ACT buffer.

        Quantizers feeding attention are done per head by `attention` instead.
        """
        users = self.consumers.get(node.name, [])
        if feeds_attention(node, self.consumers):
            return
        cores = list(range(self.cores))
        self.reads([node.inputs[0]], cores, LOCAL)
        imm, groups = self.act_format(node, users)
        for core in cores:
            value = self.local(node.inputs[0], core)
            self.act_quantize(core, f"{node.name}@{core}", value, None, imm=imm,
                              in2_addr=groups)  # fmt: skip

    def act_format(self, node: Node, users: list[Node]) -> tuple[int, int]:
        """Return (QUANTIZE imm, k steps per K group) for the linears reading `node`."""
        formats = set()
        for user in users:
            placement = self.weights[user.inputs[1]]
            step = self.engine.k_per_step(placement.n)
            groups = placement.k_group // step if placement.k_group < placement.k else 0
            formats.add((QUANT_CHAIN_STEP if step != FLIGHTLLM_BLOCK else 0, groups))
        if len(formats) > 1:
            raise InputError(
                f"node %{node.name}: its linears need different activation layouts {formats} "
                "(k steps of different widths or K groups)"
            )
        return formats.pop() if formats else (0, 0)

    def act_quantize(self, core: int, scales: str, value: str, length: int | None,
                     after: tuple = (), **extra: int) -> int:  # fmt: skip
        """QUANTIZE `value` into the ACT buffer once the matrix ops reading it are done; its
        per-token scales go to SFU value `scales`."""
        e = self.emitters[core]
        length = self.row_elements(value.split("@")[0]) if length is None else length
        aux = self.value(scales, [core], -(-self.shape.tokens // SCALES_PER_WORD))
        e.act_writer = self.emit(
            core, isa.Sfu, after=(*after, e.act_reader), reads=(value,), writes=(scales,),
            op=isa.SfuOp.QUANTIZE, in_addr=extra.pop("in_addr", self.sfu.addr(value)),
            out_addr=0, aux_addr=aux, rows=self.shape.tokens, length=length, **extra,
        )  # fmt: skip
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
        cores_used = sorted({t.core for t in placement.tiles})
        for value in [node.name] + [u.name for u in fused]:
            self.value(value, cores_used)
        output = self.graph_output(node, fused)
        for core in cores_used:
            self.linear_core(node, placement, core, fused, output)
        for value in [node.name] + [u.name for u in fused]:
            self.wrote(value, cores_used, partition)
            self.done.add(value)

    def linear_core(self, node: Node, placement: WeightPlacement, core: int, fused: list[Node],
                    output: str | None) -> None:  # fmt: skip
        """Emit one core's tiles of a linear: constants, then per tile loads, matrix op,
        DEQUANT at the tile's rows and the fused ops; STORE the rows of a graph output."""
        e = self.emitters[core]
        tiles = [t for t in placement.tiles if t.core == core]
        consts = self.consts_load(core, placement)
        offsets, _ = const_layout(tiles, placement.bias)
        scales = f"{self.source(node.inputs[0])}@{core}"
        stride = self.row_words(node.name)
        for ordinal, (tile, offset) in enumerate(zip(tiles, offsets, strict=True)):
            mv, half = self.weight_tile(e, placement, ordinal, tile)
            op = isa.SfuOp.DEQUANT_BIAS if placement.bias and tile.k0 == 0 else isa.SfuOp.DEQUANT
            last = self.sfu_op(core, op, node.name, [consts, scales], (mv,), tile.rows,
                               tile.row0, imm=self.dequant_imm(placement, tile, stride),
                               in_addr=e.out_base(half), in2_addr=self.sfu.addr(consts) + offset,
                               aux_addr=self.sfu.addr(scales))  # fmt: skip
            if tile.k0 + tile.k == placement.k:
                for user in fused:
                    ins = [self.source(i) for i in user.inputs]
                    last = self.sfu_op(core, SFU_OPS[user.op], user.name, ins, (), tile.rows,
                                       tile.row0, imm=self.sfu_imm(user, stride))  # fmt: skip
                if output is not None:
                    last = self.store_output(core, output, placement, tile, last)
            e.out_readers[half] = last
        self.sfu.release(consts)

    def graph_output(self, node: Node, fused: list[Node]) -> str | None:
        """Return the value the host reads (the logits) if this linear (or its last fused op)
        is a graph output, through casts and reshapes."""
        value = fused[-1].name if fused else node.name
        outputs = {self.source(o) for o in self.graph.outputs}
        return value if value in outputs else None

    def consts_load(self, core: int, placement: WeightPlacement) -> str:
        """LOAD the core's row scales (and bias) of a linear into the SFU buffer."""
        region = next(r for r in placement.consts if r.name.endswith(f"@{core}"))
        name = f"{placement.name}.consts@{core}"
        buf = self.value(name, [core], region.words)
        self.emit(core, isa.Load, writes=(name,), buffer=isa.Buffer.SFU, channel=region.channel,
                  hbm_addr=region.addr, buf_addr=buf, length=region.words)  # fmt: skip
        return name

    def store_output(self, core: int, value: str, placement: WeightPlacement, tile: WeightTile,
                     after: int) -> int:  # fmt: skip
        """STORE a graph output's tile rows (the logits) to the core's I/O region: one block
        of [prompt tokens, padded tile rows] FP16 per tile of the core, the pass's tokens at
        their rows (decode: row 0; `layout.output_block`)."""
        region = self.layout.region(f"io.logits@{core}")
        words = padded_rows(tile.rows) // SFU_WORD_ELEMENTS
        tokens = region.nbytes // (FP16_BYTES * max(1, self.output_rows(placement, core)))
        start = output_block(placement, tile, tokens) * FP16_BYTES // isa.HBM_WORD_BYTES
        addr, _ = self.io_span(region.name, (start + self.host_row * words) * 32,
                               self.shape.tokens * words * isa.HBM_WORD_BYTES)  # fmt: skip
        buf = self.sfu.addr(value) + tile.row0 // SFU_WORD_ELEMENTS
        return self.emit(core, isa.Store, after=(after,), reads=(value,), buffer=isa.Buffer.SFU,
                         channel=addr[0], hbm_addr=addr[1], buf_addr=buf, length=words,
                         count=self.shape.tokens, buf_stride=self.row_words(value),
                         hbm_stride=words)  # fmt: skip

    def output_rows(self, placement: WeightPlacement, core: int) -> int:
        """Return the padded rows of the first-K-group tiles of `core` (its output region)."""
        return sum(padded_rows(t.rows) for t in placement.tiles if t.core == core and t.k0 == 0)

    def dequant_imm(self, placement: WeightPlacement, tile: WeightTile, stride: int) -> int:
        if stride >= 1 << 13:
            raise InputError(f"layer {placement.name}: rows of {stride} SFU words exceed the "
                             "13-bit DEQUANT row stride")  # fmt: skip
        return N_CODES[placement.n] << 14 | (tile.k0 > 0) << 13 | stride

    def load_tile(self, e: Emitter, placement: WeightPlacement, tile: WeightTile, base: int,
                  reader: int | None) -> tuple:  # fmt: skip
        """Emit the loads of one weight tile at ring word `base`; return (span, last load)."""
        words = tile_span_words(self.engine, placement, tile)
        span, wait = e.ring.take(base, words, reader)
        layout = stored_layout(placement)
        loads, offset = [], base
        for part, part_words in zip(tile.parts, tile.part_words, strict=True):
            loads.append(e.emit(isa.Load, after=(wait,), buffer=isa.Buffer.WEIGHT,
                                channel=part.channel, hbm_addr=part.addr, buf_addr=offset,
                                length=part.words, layout=layout))  # fmt: skip
            offset += part_words
        span.append(loads[-1])
        return span, loads[-1]

    def weight_tile(self, e: Emitter, placement: WeightPlacement, ordinal: int,
                    tile: WeightTile) -> tuple[int, int]:  # fmt: skip
        """Emit one weight tile's loads (unless loaded ahead) and matrix op; return the
        matrix op and the OUT-buffer half it writes."""
        span = e.prefetched.pop((placement.name, ordinal), None)
        if span is None:
            words = tile_span_words(self.engine, placement, tile)
            span, _ = self.load_tile(e, placement, tile, e.ring.place(words), None)
        block = FLIGHTLLM_BLOCK  # nmblock pads K to whole 16-blocks
        k_padded = -(-tile.k // block) * block
        op = plan_linear(self.engine, placement.n, self.shape.tokens, tile.rows, k_padded)
        groups = placement.k // placement.k_group if placement.k_group < placement.k else 1
        act_base = tile.k0 // placement.k_group * op.tok_pairs * op.k_steps if groups > 1 else 0
        return self.matrix(e, span, placement.n, placement.wbits, op, act_base)

    def matrix(self, e: Emitter, span: list, n: int, wbits: int, op,
               act_base: int = 0) -> tuple[int, int]:  # fmt: skip
        """Emit the MM/MV reading ring `span`; it waits for its loads, its ACT input and the
        SFU op that last read the OUT half it overwrites."""
        half = e.matrix_ops % 2
        e.matrix_ops += 1
        cls = isa.MV if self.shape.tokens == 1 else isa.MM
        after = (span[3], e.act_writer, e.out_readers.get(half))
        mv = e.emit(cls, after=after, n=n, wbits=wbits, k_steps=op.k_steps,
                    row_tiles=op.row_tiles, tok_pairs=op.tok_pairs, w_base=span[0],
                    act_base=act_base, out_base=e.out_base(half))  # fmt: skip
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


def stored_layout(placement: WeightPlacement) -> isa.LoadLayout:
    """Return the LOAD layout of a weight's stored engine words."""
    sparse = placement.n != 16
    if placement.wbits == 8:
        return isa.LoadLayout.W8I if sparse else isa.LoadLayout.W8
    return isa.LoadLayout.W4I if sparse else isa.LoadLayout.W4


def lower_nodes(lowering: Lowering, kv_quant: Callable[[Node], str | None]) -> None:
    """Lower the segment's nodes in order, handing back dead SFU values, then close it
    (`Lowering.finish`). `kv_quant(node)` names 'k'/'v' for quantizers of new KV rows."""
    for position, node in enumerate(lowering.nodes):
        lowering.position = position
        kind = kv_quant(node)
        if kind is not None:
            lowering.store_kv(node, kind, node.name.split(".")[1])
        else:
            lowering.lower(node)
        lowering.release_dead()
    lowering.finish()
