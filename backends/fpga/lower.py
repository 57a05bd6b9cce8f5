"""Lower graph nodes to per-core instruction lists for one pass of `tokens` tokens.

Requires the `LinearSpec`s and `HbmLayout` of `layout.py`. Ensures instruction lists (one per
core) whose token masks order every producer before its consumers (see `Emitter`), with:
- linears as weight tiles on every core: LOAD (one per channel part) -> MM/MV -> SFU
  DEQUANT, the load of tile i + 1 issued before the matrix op of tile i (double buffering:
  tile i loads into weight-buffer half i % 2 and waits for the matrix op of tile i - 2);
- fusion linear -> activation / eltwise: a silu, gelu, add or mul reading a linear's output
  runs per tile on that tile's core right after its DEQUANT (no barrier, no extra pass);
- attention per head (heads dealt round robin over the cores): LOAD K -> MM/MV scores ->
  DEQUANT -> MASK -> SOFTMAX (fused) -> QUANTIZE -> LOAD V -> MM/MV -> DEQUANT;
- the KV cache: new keys and values are QUANTIZEd and STOREd to their cache region (the host
  adds position x row bytes to the address at launch), earlier ones LOADed per head;
- decode keeps activations on chip: the only STOREs are KV-cache rows and the logits.
Other SFU work (norms, RoPE, unfused eltwise) runs on core 0; a SYS BARRIER separates work
of core 0 from work of all cores, and resets the token bookkeeping (every queue is empty).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import BLOCK_M, EngineParams, plan_linear
from sparseflow.backends.fpga.layout import ADDRESS_WORDS, SFU_WORD_ELEMENTS
from sparseflow.backends.fpga.program import BufferPlan, HbmLayout, HbmRegion, WeightPlacement
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node

Q = isa.Queue
QUEUE_OF = {
    isa.Load: Q.LOAD,
    isa.Store: Q.STORE,
    isa.MM: Q.MATRIX,
    isa.MV: Q.MATRIX,
    isa.Sfu: Q.SFU,
}
SFU_OPS = {
    "rmsnorm": isa.SfuOp.RMSNORM,
    "layernorm": isa.SfuOp.LAYERNORM,
    "silu": isa.SfuOp.SILU,
    "gelu": isa.SfuOp.GELU,
    "add": isa.SfuOp.ADD,
    "mul": isa.SfuOp.MUL,
    "rope": isa.SfuOp.ROPE,
    "softmax": isa.SfuOp.SOFTMAX,
    "scale": isa.SfuOp.MASK,
    "causal_mask": isa.SfuOp.MASK,
}
FUSABLE = {"silu", "gelu", "add", "mul"}
# cast (rounding to FP16) is free: the SFU already holds its results in FP16.
FREE = {"input", "weight", "reshape", "transpose", "repeat_kv", "kv_append", "cast"}
ATTENTION = {"matmul", "scale", "causal_mask", "softmax"}


@dataclass
class _Item:
    cls: type[isa.Instruction]
    fields: dict
    wait: int = 0
    release: int = 0


@dataclass
class Emitter:
    """Collect one core's instructions and derive their token masks from data dependencies.

    `emit(..., after=[i, j])` makes the new instruction wait for instructions i and j of
    other queues: the latest of them per queue gets a release bit for the new instruction's
    queue and the new instruction a wait bit, unless an earlier instruction of this queue
    already waited for it or a later one (queues run in order, so that covers it).
    """

    items: list[_Item] = field(default_factory=list)
    synced: dict = field(default_factory=dict)  # (to queue, from queue) -> index
    tiles: int = 0  # weight tiles since the last barrier (selects the buffer half)
    mv_by_half: dict = field(default_factory=dict)

    def emit(self, cls: type[isa.Instruction], after: tuple = (), **fields: object) -> int:
        q = QUEUE_OF.get(cls)
        item = _Item(cls, dict(fields))
        latest: dict[int, int] = {}
        for dep in after:
            if dep is None:
                continue
            p = QUEUE_OF[self.items[dep].cls]
            if p != q:
                latest[p] = max(latest.get(p, -1), dep)
        for p, dep in latest.items():
            if dep > self.synced.get((q, p), -1):
                self.items[dep].release |= 1 << q
                item.wait |= 1 << p
                self.synced[(q, p)] = dep
        self.items.append(item)
        return len(self.items) - 1

    def barrier(self) -> None:
        self.items.append(_Item(isa.Sys, {"op": isa.SysOp.BARRIER}))
        self.synced = {(q, p): len(self.items) for q in Q for p in Q}
        self.tiles, self.mv_by_half = 0, {}

    def instructions(self) -> list[isa.Instruction]:
        return [i.cls(**i.fields, wait=i.wait, release=i.release) for i in self.items]


@dataclass
class PassShape:
    """One pass through the model: `tokens` new tokens, attention over `keys` keys."""

    phase: str
    tokens: int
    keys: int


@dataclass
class Lowering:
    """Lower nodes of `graph` for one pass; `emitters` hold one Emitter per core."""

    graph: Graph
    engine: EngineParams
    plan: BufferPlan
    layout: HbmLayout
    weights: dict[str, WeightPlacement]
    shape: PassShape
    cores: int
    emitters: list[Emitter] = field(default_factory=list)
    vec: dict[str, int] = field(default_factory=dict)  # value -> SFU-buffer word
    vec_top: int = 0
    owner_all: bool = False  # last work ran on all cores (else on core 0)
    tile_sfu: dict = field(default_factory=dict)  # (core, linear) -> [(row0, rows, sfu idx)]
    done: set = field(default_factory=set)
    scratch: dict[str, int] = field(default_factory=dict)  # SFU vectors outside the graph

    def __post_init__(self) -> None:
        self.emitters = [Emitter() for _ in range(self.cores)]
        self.consumers: dict[str, list[Node]] = {}
        for n in self.graph.nodes:
            for i in n.inputs:
                self.consumers.setdefault(i, []).append(n)

    # ------------------------------------------------------------------ buffers
    def addr(self, value: str) -> int:
        """Return the SFU-buffer word of `value` (bump allocation, wrapping the buffer)."""
        if value not in self.vec:
            words = -(-self.row_elements(value) * self.shape.tokens // SFU_WORD_ELEMENTS)
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
        numel = 1
        for d in t.shape[1:]:
            numel *= d if isinstance(d, int) else self.shape.keys
        return max(1, numel // (self.shape.tokens if self.shape.phase == "prefill" else 1))

    def switch(self, all_cores: bool) -> None:
        """Insert a device-wide barrier when work moves between core 0 and all cores."""
        if all_cores != self.owner_all:
            for e in self.emitters:
                e.barrier()
            self.owner_all = all_cores

    # ------------------------------------------------------------------ nodes
    def lower(self, node: Node) -> None:
        """Emit the instructions of one node (nothing for layout-only nodes)."""
        op = node.op.name
        if op in FREE or node.name in self.done:
            return
        if op == "embedding":
            self.switch(False)
            self.io_load(self.emitters[0], "io.hidden", node.name)
        elif op == "quantize":
            self.quantize(node)
        elif op == "linear":
            self.linear(node)
        elif op == "matmul":
            self.attention(node)
        elif op in SFU_OPS:
            self.sfu_node(node)
        else:
            raise NotImplementedError(f"no FPGA lowering for op {op} (node %{node.name})")

    def io_load(self, e: Emitter, region: str, value: str) -> int:
        r = self.layout.region(region)
        return e.emit(isa.Load, buffer=isa.Buffer.SFU, channel=r.channel, hbm_addr=r.addr,
                      buf_addr=self.addr(value), length=min(r.words, 0xFFFF))  # fmt: skip

    def sfu(self, e: Emitter, op: isa.SfuOp, out: str, ins: list[str], after: tuple = (),
            **extra: int) -> int:  # fmt: skip
        rows = self.shape.tokens
        fields = {"in_addr": self.addr(ins[0]), "out_addr": self.addr(out), "rows": rows,
                  "length": min(self.row_elements(out), 0xFFFF)}  # fmt: skip
        if len(ins) > 1:
            fields["in2_addr"] = self.addr(ins[1])
        fields.update(extra)
        return e.emit(isa.Sfu, after=after, op=op, **fields)

    def sfu_node(self, node: Node) -> None:
        e = self.emitters[0]
        values = [i for i in node.inputs if self.graph.node(i).op.name != "weight"]
        self.switch(False)
        after: tuple = ()
        weights = [i for i in node.inputs if self.graph.node(i).op.name == "weight"]
        if weights:
            r = self.layout.region(weights[0])
            after = (e.emit(isa.Load, buffer=isa.Buffer.SFU, channel=r.channel, hbm_addr=r.addr,
                            buf_addr=self.addr(weights[0]), length=r.words),)  # fmt: skip
        if node.op.name == "rope":
            self.scratch["rope.table"] = 2 * int(node.type.shape[-1])
            after = (self.io_load(e, "io.rope", "rope.table"),)
            values = [values[0], "rope.table"]
        self.sfu(e, SFU_OPS[node.op.name], node.name, values, after)

    def quantize(self, node: Node) -> None:
        """QUANTIZE on every core: linears need their input in each core's ACT buffer."""
        self.switch(True)
        for e in self.emitters:
            self.sfu(e, isa.SfuOp.QUANTIZE, node.name, [node.inputs[0]], out_addr=0)

    # ------------------------------------------------------------------ linears
    def linear(self, node: Node) -> None:
        self.switch(True)
        placement = self.weights[node.inputs[1]]
        fused = self.fused_users(node)
        for core, e in enumerate(self.emitters):
            tiles = [t for t in placement.tiles if t.core == core]
            for tile in tiles:
                mv = self.weight_tile(e, placement, tile)
                dq = self.sfu(e, isa.SfuOp.DEQUANT, node.name, [node.name], (mv,),
                              in_addr=0, imm=self.dequant_imm(placement, tile))  # fmt: skip
                if tile.k0 + tile.k == placement.k:
                    self.fuse(e, fused, dq)
        for user in fused:
            self.done.add(user.name)

    def dequant_imm(self, placement: WeightPlacement, tile) -> int:  # noqa: ANN001
        stride = -(-placement.rows // SFU_WORD_ELEMENTS) & 0x1FFF
        code = {2: 0, 4: 1, 8: 2, 16: 3}[placement.n]
        return code << 14 | (tile.k0 > 0) << 13 | stride

    def weight_tile(self, e: Emitter, placement: WeightPlacement, tile) -> int:  # noqa: ANN001
        """Emit the loads and the matrix op of one weight tile; return the matrix op."""
        half_words = self.plan.weight_half_words()
        half = e.tiles % 2 if self.plan.double_buffered else 0
        reuse = e.mv_by_half.get(half)
        base, loads, offset = half * half_words, [], 0
        for part, words in zip(tile.parts, tile.part_words, strict=True):
            loads.append(e.emit(isa.Load, after=(reuse,), buffer=isa.Buffer.WEIGHT,
                                channel=part.channel, hbm_addr=part.addr,
                                buf_addr=base + offset, length=part.words))  # fmt: skip
            offset += words
        e.tiles += 1
        k_padded = -(-tile.k // BLOCK_M) * BLOCK_M  # nmblock pads K to whole 16-blocks
        op = plan_linear(self.engine, placement.n, self.shape.tokens, tile.rows, k_padded)
        cls = isa.MV if self.shape.tokens == 1 else isa.MM
        quant = self.last_sfu(e)
        mv = e.emit(cls, after=(loads[-1], quant), n=op.n, wbits=placement.wbits,
                    k_steps=op.k_steps, row_tiles=op.row_tiles, tok_pairs=op.tok_pairs,
                    w_base=base, out_base=half * (self.engine.out_depth // 2))  # fmt: skip
        e.mv_by_half[half] = mv
        return mv

    @staticmethod
    def last_sfu(e: Emitter) -> int | None:
        for i in range(len(e.items) - 1, -1, -1):
            if e.items[i].cls is isa.Sfu:
                return i
        return None

    def fused_users(self, node: Node) -> list[Node]:
        """Return the eltwise nodes that consume this linear's output directly."""
        users = self.consumers.get(node.name, [])
        return [u for u in users if u.op.name in FUSABLE and len(users) == 1]

    def fuse(self, e: Emitter, fused: list[Node], after: int) -> None:
        for user in fused:
            after = self.sfu(e, SFU_OPS[user.op.name], user.name, list(user.inputs), (after,))
            fused_next = self.fused_users(user)
            if fused_next and user.name not in self.done:
                self.fuse(e, fused_next, after)
                for n in fused_next:
                    self.done.add(n.name)

    # ------------------------------------------------------------------ attention
    def attention(self, node: Node) -> None:
        """Lower scores -> (scale, mask) -> softmax -> context of one layer, per head."""
        prefix = node.name.rsplit(".", 1)[0] + "."
        part = [n for n in self.graph.nodes if n.name.startswith(prefix) and n.op.name in ATTENTION]
        self.done.update(n.name for n in part)
        layer = prefix.split(".")[1]
        q_type = self.graph.node(node.inputs[0]).type
        heads, head_dim = int(q_type.shape[1]), int(q_type.shape[3])
        self.switch(True)
        groups = heads // self.kv_heads()  # query heads per KV head (GQA)
        for head in range(heads):
            k = self.layout.region(f"kv.k.{layer}.{head // groups}")
            v = self.layout.region(f"kv.v.{layer}.{head // groups}")
            self.head(self.emitters[head % self.cores], prefix, head, head_dim, k, v)

    def head(self, e: Emitter, prefix: str, head: int, head_dim: int, k: HbmRegion,
             v: HbmRegion) -> None:  # fmt: skip
        keys = self.shape.keys
        self.scratch[f"{prefix}q.{head}"] = head_dim
        self.scratch["positions"] = 1
        self.sfu(e, isa.SfuOp.QUANTIZE, f"{prefix}q.{head}", [f"{prefix}q"], out_addr=0)
        scores = self.kv_matrix(e, k, head, rows=keys, k=head_dim)
        name = f"{prefix}scores"
        dq = self.sfu(e, isa.SfuOp.DEQUANT, name, [name], (scores,), in_addr=0)
        mask = self.sfu(e, isa.SfuOp.MASK, name, [name, "positions"], (dq,))
        sm = self.sfu(e, isa.SfuOp.SOFTMAX, f"{prefix}probs", [name], (mask,))
        self.sfu(e, isa.SfuOp.QUANTIZE, f"{prefix}probs", [f"{prefix}probs"], (sm,), out_addr=0)
        ctx = self.kv_matrix(e, v, head, rows=head_dim, k=keys)
        out = f"{prefix}context"
        self.sfu(e, isa.SfuOp.DEQUANT, out, [out], (ctx,), in_addr=0)

    def kv_matrix(self, e: Emitter, region: HbmRegion, head: int, rows: int, k: int) -> int:
        """LOAD one head's cached keys (or values) as a dense INT8 tile and multiply."""
        op = plan_linear(self.engine, 16, self.shape.tokens, rows, k)
        nbytes = rows * k
        half = e.tiles % 2 if self.plan.double_buffered else 0
        load = e.emit(isa.Load, after=(e.mv_by_half.get(half),), buffer=isa.Buffer.WEIGHT,
                      channel=region.channel, hbm_addr=region.addr,
                      buf_addr=half * self.plan.weight_half_words(),
                      length=max(1, nbytes // isa.HBM_WORD_BYTES))  # fmt: skip
        e.tiles += 1
        cls = isa.MV if self.shape.tokens == 1 else isa.MM
        mv = e.emit(cls, after=(load, self.last_sfu(e)), n=16, wbits=8, k_steps=op.k_steps,
                    row_tiles=op.row_tiles, tok_pairs=op.tok_pairs,
                    w_base=half * self.plan.weight_half_words(),
                    out_base=half * (self.engine.out_depth // 2))  # fmt: skip
        e.mv_by_half[half] = mv
        return mv

    def kv_heads(self) -> int:
        return int(self.graph.meta_dict.get("num_kv_heads", 1))

    def store_kv(self, node: Node, kind: str, layer: str) -> None:
        """STORE the new keys/values of this pass into the cache (per head, head's core)."""
        for head in range(self.kv_heads()):
            region = self.layout.region(f"kv.{kind}.{layer}.{head}")
            e = self.emitters[head % self.cores]
            self.scratch[f"{node.name}.{head}"] = int(node.type.shape[-1])
            quant = self.sfu(e, isa.SfuOp.QUANTIZE, f"{node.name}.{head}", [node.inputs[0]],
                             out_addr=0)  # fmt: skip
            nbytes = self.shape.tokens * int(self.graph.node(node.name).type.shape[-1])
            e.emit(isa.Store, after=(quant,), buffer=isa.Buffer.ACT, channel=region.channel,
                   hbm_addr=region.addr,
                   length=max(1, nbytes // isa.HBM_WORD_BYTES))  # fmt: skip


def lower_nodes(
    lowering: Lowering, nodes: list[Node], kv_quant: Callable[[Node], str | None]
) -> None:
    """Lower `nodes` in order; `kv_quant(node)` names 'k'/'v' for quantizers of new KV rows."""
    for node in nodes:
        kind = kv_quant(node)
        if kind is not None:
            lowering.switch(True)
            lowering.store_kv(node, kind, node.name.split(".")[1])
        else:
            lowering.lower(node)
