"""Compile compressed prefill/decode graphs for a FlightLLM-style FPGA: `CompileRequest -> Program`.

Requires an `FpgaModel` and graphs whose linears run on the engine (see `layout.py`).
Ensures a `program.Program` with one bucket per length bucket of the request (prefill prompt
length rounded up to `prefill_step`, every decode KV length rounded up to `decode_step`),
reused for every length inside its bucket. Per bucket, the graph is lowered (`lower.py`) in
segments: prologue, each transformer layer, epilogue. Layers of the same shape lower to the
same instructions up to HBM addresses, so layers 0 and 1 are lowered and the others are
derived from them by adding the per-layer address step to the encoded words (checked on
layer 2); layers that differ (per-layer sparsity modes of real weights) are lowered one by one.
Prefill runs in passes of `chunk` tokens (as many as the activation and output buffers hold).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.columns import Block, check, listing_of, table_of
from sparseflow.backends.fpga.emit import PassShape, consumers_of
from sparseflow.backends.fpga.layout import (
    FP16_BYTES,
    SCALE_BYTES,
    SCALES_PER_WORD,
    ChannelAllocator,
    RowSplitter,
    buffer_plan,
    core_channels,
    engine_for,
    hbm_layout,
    head_core,
    kv_regions,
    linear_spec,
    padded_rows,
    place_weight,
    rope_row_bytes,
)
from sparseflow.backends.fpga.lower import (
    ACTIVATIONS,
    NORMS,
    SFU_OPS,
    Lowering,
    last_reads,
    lower_nodes,
)
from sparseflow.backends.fpga.program import Bucket, Program, Stream, WeightPlacement
from sparseflow.backends.fpga.resources import ResourceReport, check_fit
from sparseflow.backends.fpga.sfu_alloc import SfuFull
from sparseflow.backends.registry import CompileRequest, register_backend
from sparseflow.hw_models.schema import FpgaModel, Kind
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op

PREFILL_STEP = 128  # prefill lengths round up to 128: FlightLLM length-adaptive compilation [P]
DECODE_STEP = 16  # decode KV lengths round up to 16 [P]
LAYER = re.compile(r"layers\.(\d+)\.")


@dataclass(frozen=True)
class CompileOptions:
    """Bucket steps of length-adaptive compilation."""

    prefill_step: int = PREFILL_STEP
    decode_step: int = DECODE_STEP


def compile_program(
    request: CompileRequest, options: CompileOptions | None = None, lazy: bool = False
) -> Program:
    """Return the Program for `request`; InputError names the layer and limit at fault.

    With `lazy`, no bucket is lowered here: `Program.bucket_for` lowers the one asked for
    each time and keeps none (an estimate runs each bucket once and needs only one in memory).
    """
    options = options or CompileOptions()
    hw = request.hw
    if not isinstance(hw, FpgaModel):
        raise InputError(f"target {hw.name} is not an FPGA model")
    if request.batch != 1:
        raise InputError(
            f"--batch {request.batch}: the {hw.name} programs serve one sequence at a time "
            "(the compiler builds batch-1 buckets); use --batch 1, or a gpu/cpu target"
        )
    engine = engine_for(hw)
    plan = buffer_plan(hw, engine.chain, engine.n_chains)
    graph = request.prefill
    meta = graph.meta_dict
    hbm = ChannelAllocator(hw)
    names = _linear_weights(graph)
    biased = {n.inputs[1] for n in graph.nodes_of(Op.LINEAR) if len(n.inputs) > 2}
    splitter, shared = RowSplitter(hw), _shared_splits(graph)
    placements = []
    for name in names:
        spec = linear_spec(graph, name, hw, bias=name in biased)
        row_tiles = -(-spec.rows // engine.rows_per_tile(spec.n))
        counts = splitter.split(name, row_tiles, shared.get(name))
        placements.append(place_weight(spec, hw, engine, plan, hbm, counts))
    weights = {p.name: p for p in placements}
    prefill_len = -(-request.prompt_len // options.prefill_step) * options.prefill_step
    max_keys = request.prompt_len + request.gen_len
    # The prefill bucket runs (and caches) its padded length even if few tokens follow.
    kv_keys = max(-(-max_keys // options.decode_step) * options.decode_step, prefill_len)
    _place_tables(graph, hbm, kv_keys, prefill_len, weights[names[-1]])
    layout = hbm_layout(hw, hbm, placements, kv_keys)
    keys = [("prefill", prefill_len)]
    graphs = {"prefill": _Graph.of(graph)}
    if request.decode is not None:
        graphs["decode"] = _Graph.of(request.decode)
        kv_lengths = range(request.prompt_len + 1, request.prompt_len + request.gen_len)
        steps = {-(-n // options.decode_step) * options.decode_step for n in kv_lengths}
        keys += [("decode", length) for length in sorted(steps)]

    reused = _Reuse()

    def lower(phase: str, length: int) -> Bucket:
        return _bucket(graphs[phase], phase, length, hw, engine, plan, layout, weights, reused)

    buckets = () if lazy else tuple(lower(*key) for key in keys)
    program_meta = {"sfu_precision": hw.core.sfu.precision, "vocab_size": meta.get("vocab_size")}
    return Program(hw.name, hw.cores, engine, layout, plan, buckets, options.prefill_step,
                   options.decode_step, program_meta, tuple(keys) if lazy else (),
                   lower if lazy else None)  # fmt: skip


def _linear_weights(graph: Graph) -> list[str]:
    names = []
    for node in graph.nodes_of(Op.LINEAR):
        source = graph.node(node.inputs[0])
        if graph.node(node.inputs[1]).attr("role") == "embedding":
            raise InputError(
                f"layer {node.inputs[1]}: %{node.name} multiplies by the embedding table (tied "
                "embeddings), which the host keeps for lookups; add the untie_lm_head pass "
                "before the compression passes (as the flightllm recipe does)"
            )
        if source.op is not Op.QUANTIZE:
            raise InputError(
                f"layer {node.inputs[1]}: its input %{source.name} is not quantized; the engine "
                "multiplies INT8 activations (add quantize_activations to the recipe)"
            )
        if node.inputs[1] not in names:
            names.append(node.inputs[1])
    return names


def _shared_splits(graph: Graph) -> dict[str, str]:
    """Return weight -> weight whose row split it must copy: the two linears feeding one
    mul/add (through a single-input activation) are fused row by row (see `lower.py`)."""

    def producer(value: str) -> str | None:
        node = graph.node(value)
        while node.op in ACTIVATIONS and len(node.inputs) == 1:
            node = graph.node(node.inputs[0])
        return node.inputs[1] if node.op is Op.LINEAR else None

    shared = {}
    for node in graph.nodes:
        if node.op in (Op.MUL, Op.ADD) and len(node.inputs) == 2:
            first, second = (producer(i) for i in node.inputs)
            if first and second:
                shared[second] = first
    return shared


def _place_tables(
    graph: Graph,
    hbm: ChannelAllocator,
    kv_keys: int,
    prompt_tokens: int,
    output: WeightPlacement,
) -> None:
    """Allocate norm and value-scale tables, the KV cache and the host I/O areas.

    Every core gets its own copy of the norm tables (weights and biases) and the RoPE table
    on its last channel (the one its weight tiles fill least), so cores never share a
    channel; the KV cache of each head goes to its core's channels (`layout.kv_regions`;
    keys with per-row scales, values with the layer's static scale, of which each core with
    heads holds a table of head_dim f32 copies); the logits of the output linear `output`
    are stored by each core for its rows (`layout.output_block`).
    """
    meta = graph.meta_dict
    hidden = int(meta["hidden_size"])
    head_dim, kv_heads = int(meta["head_dim"]), int(meta["num_kv_heads"])
    cores = hbm.hw.cores
    last = [core_channels(hbm.hw, c)[-1] for c in range(cores)]
    tables = {w for n in graph.nodes if n.op in NORMS for w in n.inputs[1:]}
    for node in graph.nodes_of(Op.WEIGHT):
        if node.name in tables:
            for c in range(cores):
                hbm.take(f"{node.name}@{c}", "table", last[c], node.type.numel() * FP16_BYTES)
    head_cores = sorted({head_core(h, cores) for h in range(kv_heads)})
    for layer in range(int(meta["num_layers"])):
        if f"v.{layer}.scale" in graph:
            for c in head_cores:
                hbm.take(f"v.{layer}.scale@{c}", "table", last[c], head_dim * SCALE_BYTES)
        for kind in ("k", "v"):
            for head in range(kv_heads):
                core = head_core(head, cores)
                slot = 2 * (head // cores) + (kind == "v")
                kv_regions(hbm, f"kv.{kind}.{layer}.{head}", core, slot, kv_keys, head_dim,
                           scales=kind == "k")  # fmt: skip
    for node in graph.nodes_of(Op.EMBEDDING):  # the host looks rows up in its own tables
        hbm.take(f"io.{node.name}", "io", last[0], prompt_tokens * hidden * FP16_BYTES)
    for c in range(cores):
        hbm.take(f"io.rope@{c}", "io", last[c], kv_keys * rope_row_bytes(head_dim))
        rows = sum(padded_rows(t.rows) for t in output.tiles if t.core == c and t.k0 == 0)
        hbm.take(f"io.logits@{c}", "io", last[c], prompt_tokens * max(rows, 1) * FP16_BYTES)


@dataclass(frozen=True)
class _Graph:
    """A graph with what every bucket's lowering reads of it, computed once: its segments
    (with the index of each one's first node), consumers, last readers of each value and the
    SFU values live across each segment boundary (`_boundaries`)."""

    graph: Graph
    segments: list[tuple[int | None, list[Node]]]
    consumers: dict[str, list[Node]]
    starts: list[int]
    last_read: dict[str, int]
    boundaries: list[tuple[str, ...]]

    @classmethod
    def of(cls, graph: Graph) -> _Graph:
        segments = _segments(graph)
        starts = [0]
        for _, nodes in segments:
            starts.append(starts[-1] + len(nodes))
        consumers = consumers_of(graph)
        last = last_reads(graph, consumers)
        return cls(graph, segments, consumers, starts, last,
                   _boundaries(graph, starts, last))  # fmt: skip


SFU_RESIDENT = {Op.EMBEDDING, Op.LINEAR, Op.ROPE, Op.MATMUL, *SFU_OPS}


def _boundaries(graph: Graph, starts: list[int], last: dict[str, int]) -> list[tuple[str, ...]]:
    """Return, for each segment, the SFU values it receives from earlier segments (read at or
    after its first node), in graph order: the same layer-relative order for every layer."""
    index = {node.name: i for i, node in enumerate(graph.nodes)}
    bounds = []
    for start in starts[:-1]:
        live = [
            n.name
            for n in graph.nodes
            if n.op in SFU_RESIDENT and index[n.name] < start and last.get(n.name, -1) >= start
        ]
        bounds.append(tuple(live))
    return [*bounds, ()]


@dataclass
class _Reuse:
    """What the buckets of one program share: lowered segments that never read the KV length
    (`_lower_segments`), and per pass shape the period its layers repeat with (`_Layers`)."""

    segments: dict = field(default_factory=dict)
    periods: dict[tuple, _Period] = field(default_factory=dict)


def _bucket(graph: _Graph, phase, length, hw, engine, plan, layout, weights, reused) -> Bucket:
    """Lower one bucket: a decode step at KV length `length`, or a prompt of `length` tokens
    in passes of the largest chunk whose values fit the SFU buffer (`SfuFull` otherwise)."""
    if phase == "decode":
        return _lower_bucket(graph, [PassShape("decode", 1, length)], hw, engine, plan, layout,
                             weights, reused)  # fmt: skip
    chunks = _prefill_chunks(engine, weights, length)

    def passes(chunk: int) -> list[PassShape]:
        return [PassShape("prefill", chunk, end) for end in range(chunk, length + 1, chunk)]

    for chunk in chunks[:-1]:
        try:
            return _lower_bucket(graph, passes(chunk), hw, engine, plan, layout, weights, reused)
        except SfuFull:
            continue
    return _lower_bucket(graph, passes(chunks[-1]), hw, engine, plan, layout, weights, reused)


def _lower_bucket(graph: _Graph, shapes, hw, engine, plan, layout, weights, reused) -> Bucket:
    """Lower a bucket's passes `shapes` in order, each core's blocks ending with SYS END."""
    blocks: list[list[Block]] = [[] for _ in range(hw.cores)]
    for number, shape in enumerate(shapes):
        more = number + 1 < len(shapes)  # another pass follows: end this one with a barrier
        parts = _lower_segments(graph, shape, hw, engine, plan, layout, weights, reused, more)
        for core, part in enumerate(parts):
            blocks[core] += part
    end = table_of([isa.Sys(op=isa.SysOp.END)])
    streams = tuple(Stream((*b, end)) for b in blocks)
    phase, length = shapes[0].phase, shapes[-1].keys
    return Bucket(phase, length, streams, shapes[0].tokens if phase == "prefill" else 0)


def _prefill_chunks(engine, weights, length: int) -> list[int]:
    """Return the candidate tokens per prefill pass, largest first: even, dividing `length`,
    fitting ACT and OUT, whole HBM words of f32 key scales (8 per word) per pass where the
    length allows. The compiler takes the first whose values fit the SFU buffer."""
    hidden_max = max(int(p.k) for p in weights.values())
    k_steps = -(-hidden_max // engine.k_per_step(16))
    act_pairs = engine.act_depth // k_steps
    out_pairs = (engine.out_depth // 2) // max(
        -(-t.rows // engine.rows_per_tile(p.n)) for p in weights.values() for t in p.tiles
    )
    largest = max(2, 2 * min(act_pairs, out_pairs, length // 2))
    chunks = [
        c
        for c in range(largest, 1, -2)
        if length % c == 0 and not (c % SCALES_PER_WORD and c > SCALES_PER_WORD)
    ]
    return chunks or [largest]


def _segments(graph: Graph) -> list[tuple[int | None, list[Node]]]:
    """Split the nodes into (layer index or None, nodes) runs in graph order."""
    segments: list[tuple[int | None, list[Node]]] = []
    current: int | None = None
    for node in graph.nodes:
        match = LAYER.match(node.name)
        layer = int(match.group(1)) if match else current
        if layer is not None and segments and segments[-1][0] is None and current is not None:
            layer = None  # after the last layer: epilogue
        if not segments or segments[-1][0] != layer:
            segments.append((layer, []))
        segments[-1][1].append(node)
        current = int(match.group(1)) if match else current
    return segments


def _kv_quant(node: Node) -> str | None:
    """Return 'k' or 'v' for a quantizer of new KV-cache rows (decode: `...attn.k_new.q8`;
    prefill: the cache outputs `k.0`, `v.0`), else None."""
    if node.op is not Op.QUANTIZE:
        return None
    if match := re.search(r"\.attn\.(k|v)_new\.q\d+$", node.name):
        return match.group(1)
    if match := re.fullmatch(r"(k|v)\.\d+", node.name):
        return match.group(1)
    return None


def _lower_segments(
    graph: _Graph, shape, hw, engine, plan, layout, weights, reused: _Reuse, more: bool
) -> list[list[Block]]:
    """Lower every segment for one pass in order, each starting from the tiles the one before
    loaded ahead and the SFU spans of the values it passes on; derive the middle layers from
    explicitly lowered ones (`_Layers`). Return each core's blocks, one per segment. With
    `more` (another pass follows) the pass ends with a barrier.

    A segment's lowering depends only on the pass's shape and its carry (tiles loaded ahead,
    SFU spans); one that never read the KV length (`Lowering.keys`, e.g. the epilogue) is
    kept in `reused` and serves every decode bucket, and so does the period the layers of a
    pass shape repeat with (`_Layers`).
    """
    segments = graph.segments
    firsts = [next((n for n in nodes if n.op is Op.LINEAR), None) for _, nodes in segments]

    def lower(index: int, carry: tuple) -> tuple[list[Block], tuple]:
        last = index + 1 == len(segments)
        key = (shape.phase, shape.tokens, index, carry, more and last)
        if key in reused.segments:
            return reused.segments[key]
        ahead = firsts[index + 1] if not last else None
        ring, spans = carry or ((), ())
        lowering = Lowering(
            graph.graph, engine, plan, layout, weights, shape, hw.cores, segments[index][1],
            ring, ahead, graph.consumers, dict(zip(graph.boundaries[index], spans, strict=True)),
            graph.boundaries[index + 1], graph.starts[index], graph.last_read, more and last,
        )  # fmt: skip
        lower_nodes(lowering, _kv_quant)
        done = [e.block() for e in lowering.emitters], lowering.carry()
        if not lowering.keys_read:
            reused.segments[key] = done
        return done

    out, carry = [], ()
    period_key = (shape.phase, shape.tokens, more)
    indices = [i for i, (layer, _) in enumerate(segments) if layer is not None]
    layers = _Layers(indices, lower, reused.periods.get(period_key))
    for index in range(len(segments)):
        if index in layers:
            blocks, carry = layers.get(index, carry)
        else:
            blocks, carry = lower(index, carry)
        out.append(blocks)
    if layers.found is not None:
        reused.periods.setdefault(period_key, layers.found)
    return [[parts[c] for parts in out] for c in range(hw.cores)]


class _Layers:
    """Lower the layer segments, deriving the middle ones by their address step.

    Layers of one shape lower to the same instructions up to HBM addresses, which step by a
    fixed amount per layer, as long as they start from the same tiles loaded ahead (the
    carry). Layer 0 starts from the prologue's carry, and the carry may alternate between
    layers (period 2: a layer's tiles end in the other weight-buffer half). So layers are
    lowered until a period p in (1, 2) shows in layers 1 .. p + 2 (fields and carries); layer
    j of the middle is then layer 1 + (j - 1) % p plus (j - 1) // p steps of (layer 1 + p -
    layer 1), field by field (`columns.Block.shifted`). The last layer is lowered too: its
    lookahead is the epilogue's linear. Without a period every layer is lowered.

    A period `known` from another lowering of the same pass shape (a decode bucket of another
    KV length) holds here too once layers 0 .. p are lowered with the same instructions (up
    to field values) and carries: the layers then start from what they started from there,
    and step by the same addresses. Only the KV length differs, which is the same in every
    layer of a pass. Then layers p + 1 .. are derived with its steps, unchecked.
    """

    def __init__(self, indices: list[int], lower, known: _Period | None = None) -> None:
        self.indices, self.lower, self.known = indices, lower, known
        self.done: dict[int, tuple[list[Block], tuple]] = {}
        self.period: int | None = None
        self.steps: dict[int, list[dict | None]] = {}  # p -> per core: layer 1 + p - layer 1
        self.found: _Period | None = None  # the period this lowering checked

    def __contains__(self, index: int) -> bool:
        return index in self.indices

    def get(self, index: int, carry: tuple) -> tuple[list[Block], tuple]:
        j = self.indices.index(index)
        if self.period is None or j == len(self.indices) - 1:
            self.done[j] = self.lower(index, carry)
            if self.period is None and self.known is not None and j == self.known.p:
                self._adopt(self.known)
            if self.period is None and j in (3, 4):
                self.period = self._check(j - 2)
                if self.period is not None:
                    self.found = self._found(self.period)
            return self.done[j]
        p = self.period
        base = 1 + (j - 1) % p
        blocks = self._derive(base, (j - 1) // p, p)
        for block in blocks:
            check(block.cols, block.changed)  # a field stepped past what its ISA field holds
        return blocks, self.done[base][1]

    def _derive(self, base: int, steps: int, p: int) -> list[Block] | None:
        if p not in self.steps:
            firsts, laters = self.done[1][0], self.done[1 + p][0]
            self.steps[p] = [f.step_to(b) for f, b in zip(firsts, laters, strict=True)]
        pairs = zip(self.done[base][0], self.steps[p], strict=True)
        blocks = [a.shifted(d, steps) for a, d in pairs]
        return None if any(b is None for b in blocks) else blocks

    def _adopt(self, known: _Period) -> None:
        """Take the period `known` if layers 0 .. p lowered as they did where it was found."""
        d, p = self.done, known.p
        same = all(d[i][1] == known.carries[i] for i in range(p + 1)) and all(
            np.array_equal(block.cols["opcode"], opcodes)
            for i in range(1, p + 1)
            for block, opcodes in zip(d[i][0], known.opcodes[i - 1], strict=True)
        )
        if same:
            self.period, self.steps[p] = p, known.steps

    def _found(self, p: int) -> _Period:
        d = self.done
        opcodes = [[b.cols["opcode"] for b in d[i][0]] for i in range(1, p + 1)]
        return _Period(p, self.steps[p], [d[i][1] for i in range(p + 1)], opcodes)

    def _check(self, p: int) -> int | None:
        """Return `p` if layer p + 2 derives from layers 1 .. p + 1 and carries repeat."""
        d, last = self.done, p + 2
        derived = self._derive(1 + (last - 1) % p, (last - 1) // p, p)
        same = derived is not None and all(
            a.same(b) for a, b in zip(derived, d[last][0], strict=True)
        )
        return p if same and all(d[j][1] == d[j + p][1] for j in range(1, last - p + 1)) else None


@dataclass(frozen=True)
class _Period:
    """Layers that repeat with period `p` (`_Layers`): per core the field steps from layer 1
    to layer 1 + p, the carries out of layers 0 .. p and per core the opcodes of layers
    1 .. p, as the lowering that checked it found them."""

    p: int
    steps: list[dict]
    carries: list[tuple]
    opcodes: list[list[np.ndarray]]


@dataclass
class FpgaCompiled:
    """The compiled model: Program plus the graphs its functional runners execute."""

    program: Program
    request: CompileRequest
    files: list[Path] = field(default_factory=list)
    resources: ResourceReport | None = None  # the design's resources, checked to fit

    def write(self, out_dir: Path) -> list[Path]:
        """Write DIR/program (all buckets' words), DIR/program.lst and DIR/rtl/*.sv."""
        from sparseflow.backends.fpga.rtl.generator import params_for_target, write_rtl

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "program").open("wb") as f:
            for bucket in self.program.buckets:
                for stream in bucket.streams:
                    f.write(stream.to_bytes())
        (out / "program.lst").write_text(self.listing())
        rtl = write_rtl(out / "rtl", params_for_target(self.request.hw))
        return [out / "program", out / "program.lst", *rtl]

    def listing(self) -> str:
        """Return a table of every (bucket, core) stream with its byte offset in DIR/program,
        then the full listing of one bucket (the first decode bucket, else the prefill one).

        Listing all buckets would print millions of lines for a 7B model (minutes to write,
        too long to read); the others decode from DIR/program with `isa.decode` at the
        offsets in the table."""
        lines, offset = ["# phase bucket core instructions bytes offset\n"], 0
        for bucket in self.program.buckets:
            for core, stream in enumerate(bucket.streams):
                lines.append(f"# {bucket.phase} {bucket.length} {core} {len(stream)} "
                             f"{stream.nbytes} {offset}\n")  # fmt: skip
                offset += stream.nbytes
        shown = next((b for b in self.program.buckets if b.phase == "decode"), None)
        shown = shown or self.program.buckets[0]
        for core, stream in enumerate(shown.streams):
            lines.append(f"# listing: {shown.phase} bucket {shown.length} core {core}\n")
            lines.append(listing_of(stream.table()))
        return "".join(lines)

    def summary(self) -> dict:
        """Return program counts and sizes per bucket, the layout, and per-length storage."""
        p, r = self.program, self.request
        buckets = [
            {"phase": b.phase, "length": b.length, "instructions": b.n_instructions,
             "bytes": b.nbytes, "chunk_tokens": b.chunk_tokens}
            for b in p.buckets
        ]  # fmt: skip
        per_length = p.per_length_bytes("prefill", range(r.prompt_len, r.prompt_len + 1))
        if r.decode is not None and r.gen_len > 1:
            kv = range(r.prompt_len + 1, r.prompt_len + r.gen_len)
            per_length += p.per_length_bytes("decode", kv)
        return {
            "programs": len(p.buckets),
            "buckets": buckets,
            "instructions": p.n_instructions,
            "program_bytes": p.total_bytes,
            "per_length_program_bytes": per_length,
            "hbm_weight_bytes": p.layout.used_bytes("weight"),
            "hbm_kv_bytes": p.layout.used_bytes("kv"),
            "hbm_bytes": p.layout.used_bytes(),
        }

    def runners(self):
        """Return (prefill, decode) runners executing the program's instructions on the
        instruction-set simulator (`iss`), sharing one device."""
        from sparseflow.backends.fpga.iss.runner import device_runners

        return device_runners(self.program, self.request.prefill, self.request.decode)


@register_backend(Kind.FPGA)
def compile_fpga(request: CompileRequest) -> FpgaCompiled:
    """Compile `request` for its FPGA target; InputError if the design does not fit the part."""
    resources = check_fit(request.hw)
    return FpgaCompiled(compile_program(request), request, resources=resources)
