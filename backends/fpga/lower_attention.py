"""Lower RoPE, the KV-cache stores and attention, per head on the head's core.

A mixin of `lower.Lowering` (it uses its SFU values, emitters and epochs). Per KV head on
`layout.head_core(head)`:
- RoPE reads the head's slice of the q or k linear's token-major output and writes the value
  head-major ([heads, tokens, head_dim]); its table rows (FP16 cos, sin of the pass's
  positions) come from the core's `io.rope` region;
- the new keys and values are packed to INT8 rows in the SFU buffer (PACK8: per-row f32
  scales for keys, the layer's static scale for values) and STOREd into the head's cache
  parts at the pass's rows (whole words, or partial words for rows narrower than a word);
- each query head: QUANTIZE q -> LOAD the cached keys as weight rows (one LOAD per part,
  `LoadLayout.ROWS`) and their scales -> MM/MV scores -> DEQUANT -> MASK (scale, hide later
  keys) -> SOFTMAX -> QUANTIZE -> LOAD the values transposed (`LoadLayout.COLS`) -> MM/MV ->
  DEQUANT into the head's columns of the token-major context. K/V loads wait for the store of
  the pass's new rows.
"""

from __future__ import annotations

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.emit import QUANT_CHAIN_STEP, fp16_bits
from sparseflow.backends.fpga.engine_model import DENSE_N, N_CODES, plan_linear
from sparseflow.backends.fpga.layout import (
    SCALE_BYTES,
    SCALES_PER_WORD,
    SFU_WORD_ELEMENTS,
    head_core,
    kv_parts,
    rope_row_bytes,
)
from sparseflow.ir.errors import InputError
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op

HEADS = ("heads",)  # partition key: per head, on the head's core
STATIC_SCALE = 1 << 15  # PACK8 imm: one static scale at in2
ATTENTION = {Op.MATMUL, Op.SCALE, Op.CAUSAL_MASK, Op.SOFTMAX}


class AttentionLowering:
    """RoPE, KV stores and attention of `lower.Lowering` (see the module docstring)."""

    def kv_heads(self) -> int:
        return int(self.graph.meta_dict.get("num_kv_heads", 1))

    def head_view(self, value: str, head: int, head_dim: int) -> tuple[int, int]:
        """Return (SFU word, row stride in words; 0: rows back to back) of head `head` of
        `value`, token-major [tokens, heads x head_dim] or head-major."""
        src = self.source(value)
        if head_dim % SFU_WORD_ELEMENTS:
            raise InputError(f"node %{src}: head_dim {head_dim} is not whole SFU words")
        if src in self.head_major:
            return self.sfu.addr(src) + head * self.shape.tokens * head_dim // 16, 0
        return self.sfu.addr(src) + head * head_dim // 16, self.row_words(src)

    def head_cores(self, heads: int) -> list[int]:
        """Return the core of each of `heads` query (or KV) heads."""
        groups = max(1, heads // self.kv_heads())
        return [head_core(h // groups, self.cores) for h in range(heads)]

    def rope(self, node: Node) -> None:
        """RoPE per head on the head's core into a head-major value."""
        heads, head_dim = int(node.type.shape[1]), int(node.type.shape[-1])
        if int(node.attr("rotary_dim") or head_dim) != head_dim:
            raise InputError(f"node %{node.name}: partial rotary dims are not lowered")
        cores = self.head_cores(heads)
        self.reads([node.inputs[0]], list(range(self.cores)))
        self.head_major.add(node.name)
        out = self.value(node.name, sorted(set(cores)))
        src, tables = self.source(node.inputs[0]), {}
        for head, core in enumerate(cores):
            if core not in tables:
                tables[core] = f"rope@{core}"
                self.io_load(core, f"io.rope@{core}", tables[core], rope_row_bytes(head_dim),
                             self.first_token)  # fmt: skip
            in_addr, stride = self.head_view(src, head, head_dim)
            self.emit(core, isa.Sfu, reads=(src, tables[core]), writes=(node.name,),
                      op=isa.SfuOp.ROPE, in_addr=in_addr, in2_addr=self.sfu.addr(tables[core]),
                      out_addr=out + head * self.shape.tokens * head_dim // 16,
                      rows=self.shape.tokens, length=head_dim, imm=stride)  # fmt: skip
        for name in tables.values():
            self.sfu.release(name)
        self.wrote(node.name, list(range(self.cores)), HEADS)

    def store_kv(self, node: Node, kind: str, layer: str) -> None:
        """PACK8 and STORE the pass's new keys/values per KV head on the head's core."""
        head_dim = int(node.type.shape[-1])
        static = len(node.inputs) == 2
        if static != (kind == "v"):
            raise InputError(
                f"node %{node.name}: the FPGA attention takes keys with per-token scales and "
                "values with one static scale (quantize_kv_cache with static_values: true)"
            )
        self.reads([node.inputs[0]], list(range(self.cores)), HEADS)
        src = self.source(node.inputs[0])
        for head, core in enumerate(self.head_cores(self.kv_heads())):
            rows = f"kv.{kind}.{layer}.{head}"
            words = -(-self.shape.tokens * head_dim // isa.HBM_WORD_BYTES)
            fields = {"out_addr": self.value(rows, [core], words)}
            reads, writes = [src], [rows]
            if static:
                table = self.value_scale(core, node.inputs[1])
                reads.append(table)
                fields.update(in2_addr=self.sfu.addr(table), imm=STATIC_SCALE)
            else:
                scales = f"{rows}.scales"
                tokens = -(-self.shape.tokens // SCALES_PER_WORD)
                fields["aux_addr"] = self.value(scales, [core], tokens)
                writes.append(scales)
            in_addr, stride = self.head_view(src, head, head_dim)
            fields["imm"] = fields.get("imm", 0) | stride
            self.emit(core, isa.Sfu, reads=tuple(reads), writes=tuple(writes),
                      op=isa.SfuOp.PACK8, in_addr=in_addr, rows=self.shape.tokens,
                      length=head_dim, **fields)  # fmt: skip
            self.kv_stores[(kind, head)] = self.kv_store_rows(core, kind, layer, head, head_dim)
            for name in writes:
                self.sfu.release(name)
        self.done.add(node.name)

    def value_scale(self, core: int, weight: str) -> str:
        """Return the SFU name of the value-cache scale table on `core`, loading it once
        (DEQUANT of the context reads it too; `attention` hands it back)."""
        tables = self.value_tables.setdefault(weight.split(".")[1], {})
        if core not in tables:
            tables[core] = self.table_load(core, weight)
        return tables[core]

    def kv_store_rows(self, core: int, kind: str, layer: str, head: int, head_dim: int) -> int:
        """STORE the packed rows (and the key scales) into each part; return the last."""
        parts = self.kv_parts(kind, layer, head)
        sizes = self.kv_row_bytes(core, head_dim)
        name, last, offset = f"kv.{kind}.{layer}.{head}", None, 0
        for region, row_bytes in zip(parts, sizes, strict=False):
            last = self.kv_store(core, region, name, offset, row_bytes, head_dim)
            offset += row_bytes
        if kind == "k":
            last = self.kv_store(core, parts[len(sizes)], f"{name}.scales", 0, SCALE_BYTES,
                                 SCALE_BYTES)  # fmt: skip
        return last

    def kv_store(self, core: int, region, value: str, offset: int, row_bytes: int,
                 src_row: int) -> int:  # fmt: skip
        """STORE bytes [offset, offset + row_bytes) of each packed row of `value` (rows of
        `src_row` bytes) at the pass's rows of a cache part (rows of `row_bytes`)."""
        tokens, word = self.shape.tokens, isa.HBM_WORD_BYTES
        start = region.addr * word + self.first_token * row_bytes
        buf = self.sfu.addr(value) + offset // word
        fields = {"hbm_addr": start // word, "buf_addr": buf, "count": 1}
        if row_bytes % word == 0:
            fields.update(length=row_bytes // word, count=tokens, buf_stride=src_row // word,
                          hbm_stride=row_bytes // word)  # fmt: skip
            if row_bytes == src_row:
                fields.update(length=tokens * row_bytes // word, count=1, buf_stride=0,
                              hbm_stride=0)  # fmt: skip
        elif start % word == 0 and tokens * row_bytes % word == 0:
            fields["length"] = tokens * row_bytes // word
        elif start % word + tokens * row_bytes <= word:  # the rows fill part of one word
            fields.update(length=1, byte_offset=start % word, byte_count=tokens * row_bytes)
        else:
            raise InputError(f"{region.name}: {tokens} rows of {row_bytes} bytes from row "
                             f"{self.first_token} are not whole HBM words")  # fmt: skip
        return self.emit(core, isa.Store, reads=(value,), buffer=isa.Buffer.SFU,
                         channel=region.channel, **fields)  # fmt: skip

    def kv_parts(self, kind: str, layer: str, head: int) -> list:
        """Return the HBM regions of one KV head's cache (`layout.kv_regions`)."""
        return self.layout.parts(f"kv.{kind}.{layer}.{head}")

    def attention(self, node: Node) -> None:
        """Lower scores -> (scale, mask) -> softmax -> context of one layer, per head."""
        prefix = node.name.rsplit(".", 1)[0] + "."
        part = [n for n in self.nodes if n.op in ATTENTION and n.name.startswith(prefix)]
        self.done.update(n.name for n in part)
        layer = prefix.split(".")[1]
        heads, head_dim = (
            int(self.graph.node(node.inputs[0]).type.shape[1]),
            int(self.graph.node(node.inputs[0]).type.shape[3]),
        )
        q = self.source(node.inputs[0])
        q = self.source(self.graph.node(q).inputs[0]) if self.graph.node(q).op is Op.QUANTIZE else q
        self.reads([q], list(range(self.cores)), HEADS)
        context = self.context_of(node)
        cores = self.head_cores(heads)
        self.value(context, sorted(set(cores)))
        factor, masked = self.score_ops(node)
        for head, core in enumerate(cores):
            kv = head // max(1, heads // self.kv_heads())
            self.head(core, prefix, q, head, head_dim, layer, kv, context, factor, masked)
        for name in self.value_tables.pop(layer, {}).values():
            self.sfu.release(name)
        self.wrote(context, list(range(self.cores)), HEADS)

    def context_of(self, scores: Node) -> str:
        """Return the context matmul fed (through scale, mask and softmax) by `scores`."""
        node = scores
        while node.op is not Op.MATMUL or node is scores:
            node = self.consumers[node.name][0]
        return node.name

    def score_ops(self, scores: Node) -> tuple[float, bool]:
        """Return (scale factor, causal mask?) applied to the scores before the softmax."""
        factor, masked, node = 1.0, False, scores
        while len(users := self.consumers.get(node.name, [])) == 1:
            node = users[0]
            if node.op is Op.SCALE:
                factor *= float(node.attr("factor"))
            elif node.op is Op.CAUSAL_MASK:
                masked = True
            elif node.op not in (Op.CAST, Op.RESHAPE, Op.TRANSPOSE):
                break
        return factor, masked

    def head(self, core: int, prefix: str, q: str, head: int, head_dim: int, layer: str,
             kv: int, context: str, factor: float, masked: bool) -> None:  # fmt: skip
        keys, tokens = self.keys, self.shape.tokens
        e = self.emitters[core]
        names = {k: f"{prefix}{k}.{head}" for k in ("q", "scores", "probs", "kscales")}
        in_addr, stride = self.head_view(q, head, head_dim)
        step_flag = self.attention_step_flag()
        self.act_quantize(core, names["q"], self.source(q), head_dim, in_addr=in_addr,
                          imm=step_flag | stride)  # fmt: skip
        scores_mm, kscales = self.kv_keys_matrix(core, layer, kv, head_dim, names["kscales"])
        row_words = -(-keys // SFU_WORD_ELEMENTS)
        out = self.value(names["scores"], [core], tokens * row_words)
        last = self.emit(core, isa.Sfu, after=(scores_mm[0],), reads=(kscales, names["q"]),
                         writes=(names["scores"],), op=isa.SfuOp.DEQUANT,
                         in_addr=e.out_base(scores_mm[1]), out_addr=out,
                         in2_addr=self.sfu.addr(kscales), aux_addr=self.sfu.addr(names["q"]),
                         rows=tokens, length=keys, imm=N_CODES[DENSE_N] << 14)  # fmt: skip
        e.out_readers[scores_mm[1]] = last
        self.sfu.release(kscales)
        self.sfu.release(names["q"])
        self.scale_scores(core, names["scores"], keys, factor, masked)
        self.emit(
            core,
            isa.Sfu,
            reads=(names["scores"],),
            writes=(names["scores"],),
            op=isa.SfuOp.SOFTMAX,
            in_addr=out,
            out_addr=out,
            rows=tokens,
            length=keys,
        )
        self.act_quantize(core, names["probs"], names["scores"], keys, imm=step_flag)
        self.sfu.release(names["scores"])
        ctx = self.kv_values_matrix(core, layer, kv, head_dim)
        table = self.value_tables[layer][core]
        ctx_row = self.row_words(context)
        e.out_readers[ctx[1]] = self.emit(
            core, isa.Sfu, after=(ctx[0],), reads=(table, names["probs"]), writes=(context,),
            op=isa.SfuOp.DEQUANT, in_addr=e.out_base(ctx[1]),
            out_addr=self.sfu.addr(context) + head * head_dim // 16,
            in2_addr=self.sfu.addr(table), aux_addr=self.sfu.addr(names["probs"]), rows=tokens,
            length=head_dim, imm=N_CODES[DENSE_N] << 14 | ctx_row,
        )  # fmt: skip
        self.sfu.release(names["probs"])

    def attention_step_flag(self) -> int:
        """Return the QUANTIZE flag for dense (K, V) weight rows: k steps of chain_len."""
        return QUANT_CHAIN_STEP if self.engine.k_per_step(DENSE_N) != 16 else 0

    def scale_scores(self, core: int, scores: str, keys: int, factor: float,
                     masked: bool) -> None:  # fmt: skip
        """Scale the scores (and hide keys after each query's position) in place."""
        if not masked and factor == 1.0:
            return
        addr = self.sfu.addr(scores)
        op = isa.SfuOp.MASK if masked else isa.SfuOp.SCALE
        extra = {"aux_addr": self.first_token} if masked else {}
        self.emit(core, isa.Sfu, reads=(scores,), writes=(scores,), op=op, in_addr=addr,
                  out_addr=addr, rows=self.shape.tokens, length=keys, imm=fp16_bits(factor),
                  **extra)  # fmt: skip

    def kv_keys_matrix(self, core: int, layer: str, kv: int, head_dim: int,
                       scales: str) -> tuple[tuple[int, int], str]:  # fmt: skip
        """LOAD one head's cached keys as weight rows (and their scales into the SFU
        buffer) and multiply; return ((matrix op, OUT half), SFU name of the scales)."""
        keys, e = self.keys, self.emitters[core]
        op = plan_linear(self.engine, DENSE_N, self.shape.tokens, keys, head_dim)
        span, wait = e.ring.take(e.ring.place(op.row_tiles * op.k_steps),
                                 op.row_tiles * op.k_steps, None)  # fmt: skip
        store = self.kv_stores.get(("k", kv))
        parts = self.kv_parts("k", layer, kv)
        step = self.engine.k_per_step(DENSE_N)
        last, offset = None, 0
        for region, row_bytes in zip(parts, self.kv_row_bytes(core, head_dim), strict=False):
            if offset % step:
                raise InputError(f"{region.name}: a part starts inside a k step of {step}")
            last = e.emit(isa.Load, after=(wait, store), buffer=isa.Buffer.WEIGHT,
                          channel=region.channel, hbm_addr=region.addr,
                          buf_addr=span[0] + offset // step, length=-(-keys * row_bytes // 32),
                          layout=isa.LoadLayout.ROWS, row_bytes=row_bytes,
                          buf_stride_outer=op.k_steps)  # fmt: skip
            offset += row_bytes
        span.append(last)
        region = parts[-1]
        words = -(-keys * SCALE_BYTES // isa.HBM_WORD_BYTES)
        buf = self.value(scales, [core], words)
        self.emit(
            core,
            isa.Load,
            after=(store,),
            writes=(scales,),
            buffer=isa.Buffer.SFU,
            channel=region.channel,
            hbm_addr=region.addr,
            buf_addr=buf,
            length=words,
        )
        return self.matrix(e, span, DENSE_N, 8, op), scales

    def kv_values_matrix(self, core: int, layer: str, kv: int, head_dim: int) -> tuple[int, int]:
        """LOAD one head's cached values transposed into weight rows and multiply."""
        keys, e = self.keys, self.emitters[core]
        op = plan_linear(self.engine, DENSE_N, self.shape.tokens, head_dim, keys)
        words = op.row_tiles * op.k_steps
        span, wait = e.ring.take(e.ring.place(words), words, None)
        store = self.kv_stores.get(("v", kv))
        last, offset = None, 0
        parts = self.kv_parts("v", layer, kv)
        for region, row_bytes in zip(parts, self.kv_row_bytes(core, head_dim), strict=True):
            last = e.emit(isa.Load, after=(wait, store), buffer=isa.Buffer.WEIGHT,
                          channel=region.channel, hbm_addr=region.addr, buf_addr=span[0],
                          length=-(-keys * row_bytes // 32), layout=isa.LoadLayout.COLS,
                          row_bytes=row_bytes, buf_stride_inner=offset,
                          buf_stride_outer=op.k_steps)  # fmt: skip
            offset += row_bytes
        span.append(last)
        return self.matrix(e, span, DENSE_N, 8, op)

    def kv_row_bytes(self, core: int, head_dim: int) -> list[int]:
        """Return the row bytes of each INT8 part of a KV head's cache on `core`."""
        return kv_parts(head_dim, len(range(core, self.layout.channels, self.cores)))
