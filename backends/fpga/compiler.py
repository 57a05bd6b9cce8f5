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
from sparseflow.backends.fpga.layout import (
    ChannelAllocator,
    buffer_plan,
    engine_for,
    hbm_layout,
    linear_spec,
    place_weight,
)
from sparseflow.backends.fpga.lower import Lowering, PassShape, lower_nodes
from sparseflow.backends.fpga.program import Bucket, Program, Stream
from sparseflow.backends.registry import CompileRequest, register_backend
from sparseflow.hw_models.schema import FpgaModel, Kind
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node

PREFILL_STEP = 128  # prefill lengths round up to 128: FlightLLM length-adaptive compilation [P]
DECODE_STEP = 16  # decode KV lengths round up to 16 [P]
LAYER = re.compile(r"layers\.(\d+)\.")
FP16_BYTES = 2


@dataclass(frozen=True)
class CompileOptions:
    """Bucket steps of length-adaptive compilation."""

    prefill_step: int = PREFILL_STEP
    decode_step: int = DECODE_STEP


def compile_program(request: CompileRequest, options: CompileOptions | None = None) -> Program:
    """Return the Program for `request`; InputError names the layer and limit at fault."""
    options = options or CompileOptions()
    hw = request.hw
    if not isinstance(hw, FpgaModel):
        raise InputError(f"target {hw.name} is not an FPGA model")
    engine = engine_for(hw)
    plan = buffer_plan(hw, engine.chain, engine.n_chains)
    graph = request.prefill
    meta = graph.meta_dict
    hbm = ChannelAllocator(hw)
    names = _linear_weights(graph)
    placements = [place_weight(linear_spec(graph, n, hw), hw, engine, plan, hbm) for n in names]
    max_keys = request.prompt_len + request.gen_len
    _place_tables(graph, hbm, max_keys, options)
    layout = hbm_layout(hw, hbm, placements)
    weights = {p.name: p for p in placements}
    prefill_len = -(-request.prompt_len // options.prefill_step) * options.prefill_step
    buckets = [_bucket(graph, "prefill", prefill_len, hw, engine, plan, layout, weights)]
    if request.decode is not None:
        kv_lengths = range(request.prompt_len + 1, request.prompt_len + request.gen_len)
        for length in sorted(
            {-(-n // options.decode_step) * options.decode_step for n in kv_lengths}
        ):
            buckets.append(
                _bucket(request.decode, "decode", length, hw, engine, plan, layout, weights)
            )
    program_meta = {"sfu_precision": hw.core.sfu.precision, "vocab_size": meta.get("vocab_size")}
    return Program(hw.name, hw.cores, engine, layout, plan, tuple(buckets),
                   options.prefill_step, options.decode_step, program_meta)  # fmt: skip


def _linear_weights(graph: Graph) -> list[str]:
    names = []
    for node in graph.nodes_of("linear"):
        source = graph.node(node.inputs[0])
        if source.op.name != "quantize":
            raise InputError(
                f"layer {node.inputs[1]}: its input %{source.name} is not quantized; the engine "
                "multiplies INT8 activations (add quantize_activations to the recipe)"
            )
        if node.inputs[1] not in names:
            names.append(node.inputs[1])
    return names


def _place_tables(
    graph: Graph, hbm: ChannelAllocator, max_keys: int, options: CompileOptions
) -> None:
    """Allocate norm weights, the KV cache and the host I/O areas."""
    meta = graph.meta_dict
    hidden, vocab = int(meta["hidden_size"]), int(meta["vocab_size"])
    head_dim, kv_heads = int(meta["head_dim"]), int(meta["num_kv_heads"])
    last = hbm.hw.hbm.channels - 1  # small tables and host I/O share the last channel
    for node in graph.nodes_of("weight"):
        if node.attr("role") in ("norm", "bias"):
            hbm.take(node.name, "table", last, node.type.numel() * FP16_BYTES)
    keys = -(-max_keys // options.decode_step) * options.decode_step
    for layer in range(int(meta["num_layers"])):
        for kind, head in ((kind, h) for kind in ("k", "v") for h in range(kv_heads)):
            channel = (2 * head + (kind == "v")) % hbm.hw.hbm.channels  # spread heads
            nbytes = keys * (head_dim + 4)  # INT8 rows + an f32 scale per row
            hbm.take(f"kv.{kind}.{layer}.{head}", "kv", channel, nbytes)
    tokens = -(-max_keys // options.prefill_step) * options.prefill_step
    hbm.take("io.hidden", "io", last, tokens * hidden * FP16_BYTES)
    hbm.take("io.rope", "io", last, tokens * head_dim * 2 * FP16_BYTES)
    hbm.take("io.logits", "io", last, tokens * vocab * FP16_BYTES)


def _bucket(graph, phase, length, hw, engine, plan, layout, weights) -> Bucket:  # noqa: ANN001
    """Lower one bucket: a decode step at KV length `length`, or a prompt of `length` tokens."""
    if phase == "decode":
        shapes = [PassShape("decode", 1, length)]
    else:
        chunk = _prefill_chunk(graph, engine, plan, weights, length)
        shapes = [PassShape("prefill", chunk, end) for end in range(chunk, length + 1, chunk)]
    segments = _segments(graph)
    streams = [[] for _ in range(hw.cores)]
    for shape in shapes:
        parts = _lower_segments(graph, segments, shape, hw, engine, plan, layout, weights)
        for core, part in enumerate(parts):
            streams[core].append(part)
    end = Stream.from_instructions([isa.Sys(op=isa.SysOp.END)])
    done = tuple(_concat([*s, end]) for s in streams)
    return Bucket(phase, length, done, shapes[0].tokens if phase == "prefill" else 0)


def _prefill_chunk(graph, engine, plan, weights, length: int) -> int:  # noqa: ANN001
    """Return the tokens per prefill pass: even, dividing `length`, fitting ACT and OUT."""
    hidden_max = max(int(p.k) for p in weights.values())
    k_steps = -(-hidden_max // engine.k_per_step(16))
    act_pairs = engine.act_depth // k_steps
    out_pairs = (engine.out_depth // 2) // max(
        -(-t.rows // engine.rows_per_tile(p.n)) for p in weights.values() for t in p.tiles
    )
    chunk = max(2, 2 * min(act_pairs, out_pairs, length // 2))
    while length % chunk:
        chunk -= 2
    return chunk


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
    if node.op.name == "quantize" and re.search(r"\.attn\.(k|v)_new\.q\d+$", node.name):
        return node.name.split(".attn.")[1][0]
    return None


def _lower_segments(graph, segments, shape, hw, engine, plan, layout, weights) -> list[Stream]:  # noqa: ANN001
    """Lower every segment for one pass; derive repeated layers from layers 0 and 1."""
    lowered: dict[int, list[Stream]] = {}

    def lower(nodes: list[Node]) -> list[Stream]:
        lowering = Lowering(graph, engine, plan, layout, weights, shape, hw.cores)
        lower_nodes(lowering, nodes, _kv_quant)
        return [Stream.from_instructions(e.instructions()) for e in lowering.emitters]

    layers = [(i, nodes) for i, nodes in segments if i is not None]
    out = [lower(nodes) for i, nodes in segments if i is None and nodes is segments[0][1]]
    for index, (layer, nodes) in enumerate(layers):
        if index < 2 or not _affine(lowered, layers, lower):
            lowered[layer] = lower(nodes)
        else:
            lowered[layer] = _shifted(lowered[layers[0][0]], lowered[layers[1][0]], index)
        out.append(lowered[layer])
    out += [lower(nodes) for i, nodes in segments[1:] if i is None]
    return [_concat([parts[c] for parts in out]) for c in range(hw.cores)]


def _affine(lowered: dict, layers: list, lower) -> bool:  # noqa: ANN001
    """Return whether layer 2 equals layer 0 plus twice the step from layer 0 to layer 1."""
    if "affine" not in lowered:
        (i0, _), (i1, _), (i2, nodes2) = layers[:3]
        actual = lower(nodes2)
        lowered[i2] = actual
        derived = _shifted(lowered[i0], lowered[i1], 2)
        lowered["affine"] = derived is not None and all(
            np.array_equal(a.words, d.words) for a, d in zip(actual, derived, strict=True)
        )
    return lowered["affine"]


def _shifted(first: list[Stream], second: list[Stream], index: int) -> list[Stream] | None:
    """Return layer `index` = first + index * (second - first), word by word (mod 2**32);
    None when the two layers differ in length."""
    out = []
    for a, b in zip(first, second, strict=True):
        if len(a.words) != len(b.words):
            return None
        step = b.words.astype(np.int64) - a.words.astype(np.int64)
        words = (a.words.astype(np.int64) + index * step) & 0xFFFFFFFF
        out.append(Stream(words.astype(np.uint32), a.offsets))
    return out


def _concat(parts: list[Stream]) -> Stream:
    sizes = np.cumsum([0] + [len(p.words) for p in parts])
    words = np.concatenate([p.words for p in parts]).astype(np.uint32)
    offsets = np.concatenate([p.offsets + base for p, base in zip(parts, sizes, strict=False)])
    return Stream(words, offsets.astype(np.int64))


@dataclass
class FpgaCompiled:
    """The compiled model: Program plus the graphs its functional runners execute."""

    program: Program
    request: CompileRequest
    files: list[Path] = field(default_factory=list)

    def write(self, out_dir: Path) -> list[Path]:
        """Write DIR/program (all buckets' words), DIR/program.lst and DIR/rtl/*.sv."""
        from sparseflow.backends.fpga.rtl.generator import generate_rtl

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        data = b"".join(s.to_bytes() for b in self.program.buckets for s in b.streams)
        (out / "program").write_bytes(data)
        (out / "program.lst").write_text(self.listing())
        chain, engine = self.program.engine.chain, self.program.engine
        nm = None if chain.min_n == 16 else (chain.min_n, 16)
        rtl = generate_rtl(out / "rtl", chain.chain_len, nm, chain.wbits, n_chains=engine.n_chains)
        return [out / "program", out / "program.lst", *rtl]

    def listing(self) -> str:
        """Return each bucket's streams: a header line per (bucket, core), then the listing."""
        lines = []
        for bucket in self.program.buckets:
            for core, stream in enumerate(bucket.streams):
                lines.append(f"# {bucket.phase} bucket {bucket.length} core {core}: "
                             f"{len(stream)} instructions, {stream.nbytes} bytes\n")  # fmt: skip
                lines.append(isa.listing(stream.instructions()))
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

    def runners(self):  # noqa: ANN201
        """Return (prefill, decode) runners executing the program on the functional model."""
        from sparseflow.backends.fpga.functional import FunctionalRunner

        r = self.request
        decode = None if r.decode is None else FunctionalRunner(self.program, r.decode, "decode")
        return FunctionalRunner(self.program, r.prefill, "prefill"), decode


@register_backend(Kind.FPGA)
def compile_fpga(request: CompileRequest) -> FpgaCompiled:
    """Compile `request` for its FPGA target."""
    return FpgaCompiled(compile_program(request), request)
