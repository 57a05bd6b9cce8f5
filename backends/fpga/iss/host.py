"""The host's side of a run: the HBM image, host I/O and the decode relocation.

The host writes, before any program, every region the compiler laid out: each weight tile's
stored engine words (`layout.stored_word_bytes`: values, then in-block indices) split over
its channel parts, each core's constants (row scales and bias, `layout.const_layout`), the
norm and value-scale tables, the RoPE table (f32 cos and sin of every position) and a
zeroed KV cache. Before each program it writes the pass's embedding rows (looked up in its
own full-precision tables) into `io.<embedding>`; after it, it reads the logits from the
cores' `io.logits` regions (`layout.output_block`).

A decode bucket's program is compiled for the bucket's last position; for a step at
position p the host moves it there (`relocate`): the STOREs of new KV rows, the LOADs of
RoPE-table rows and the causal mask's first position shift by p - (bucket length - 1) rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import DENSE_N, plan_linear, weight_words
from sparseflow.backends.fpga.iss.hbm import HbmImage
from sparseflow.backends.fpga.iss.memory import ExecutionError
from sparseflow.backends.fpga.layout import (
    FP16_BYTES,
    SCALES_PER_WORD,
    const_layout,
    output_block,
    padded_rows,
    rope_row_bytes,
)
from sparseflow.backends.fpga.program import Program, WeightPlacement
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import FLIGHTLLM_BLOCK, PackedWeight, pack_nibbles
from sparseflow.ir.graph import Graph
from sparseflow.ir.ops import Op
from sparseflow.ir.ops_linear import rope_tables

WORD = isa.HBM_WORD_BYTES


def build_image(program: Program, graph: Graph, queues: int) -> HbmImage:
    """Return the HBM image of `program` for the compressed prefill `graph` (its weights)."""
    image = HbmImage(program.layout, queues)
    for node in graph.nodes_of(Op.LINEAR):
        placement = program.layout.weight(node.inputs[1])
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        write_weight(image, program, graph, placement, bias)
    for region in program.layout.regions:
        if region.kind == "table":
            write_table(image, graph, region)
        elif region.kind == "kv":
            image.host_write(region, 0, np.zeros(region.nbytes, np.uint8))
    write_rope(image, program, graph)
    return image


def weight_codes(graph: Graph, placement: WeightPlacement) -> tuple[np.ndarray, np.ndarray]:
    """Return the integer weight codes [rows, k] and f32 scales [rows, groups]."""
    packed = graph.weights[placement.name]
    if not isinstance(packed, PackedWeight):
        raise InputError(f"layer {placement.name}: the FPGA runs quantized (packed) weights")
    scales = packed.arrays.get("scales", packed.arrays.get("scale"))
    scales = np.asarray(scales, np.float32).reshape(placement.rows, -1)
    per_k = np.repeat(scales, placement.k_group, axis=1)[:, : placement.k]
    codes = np.rint(packed.to_dense() / np.where(per_k == 0, 1, per_k)).astype(np.int64)
    return codes, scales


def write_weight(image: HbmImage, program: Program, graph: Graph, placement: WeightPlacement,
                 bias: str | None) -> None:  # fmt: skip
    """Write a weight's tiles (stored engine words, split over their parts) and constants."""
    codes, scales = weight_codes(graph, placement)
    engine = program.engine
    for tile in placement.tiles:
        k = -(-tile.k // FLIGHTLLM_BLOCK) * FLIGHTLLM_BLOCK
        op = plan_linear(engine, placement.n, 2, tile.rows, k)
        block = codes[tile.row0 : tile.row0 + tile.rows, tile.k0 : tile.k0 + tile.k]
        values, indices = weight_words(engine, op, block)
        stored = _stored_words(values, indices, placement.wbits, placement.n != DENSE_N)
        first = 0
        for region, words in zip(tile.parts, tile.part_words, strict=True):
            image.host_write(region, 0, stored[first : first + words].ravel())
            first += words
    bias_values = None if bias is None else graph.weights.dense(bias)
    for region in placement.consts:
        core = int(region.name.rsplit("@", 1)[1])
        tiles = [t for t in placement.tiles if t.core == core]
        offsets, words = const_layout(tiles, placement.bias)
        block = np.zeros(words * WORD, np.uint8)
        for tile, offset in zip(tiles, offsets, strict=True):
            rows = slice(tile.row0, tile.row0 + tile.rows)
            group = tile.k0 // placement.k_group
            at = offset * WORD
            block[at : at + tile.rows * 4] = scales[rows, group].view(np.uint8)
            if bias_values is not None and tile.k0 == 0:
                at += -(-tile.rows // SCALES_PER_WORD) * WORD
                fp16 = np.asarray(bias_values[rows], np.float16)
                block[at : at + tile.rows * FP16_BYTES] = fp16.view(np.uint8)
        image.host_write(region, 0, block)


def _stored_words(values: np.ndarray, indices: np.ndarray, wbits: int, indexed: bool):
    """Return [words, bytes] of stored engine words: values at `wbits`, then indices."""
    n = values.shape[0]
    flat = values.reshape(n, -1)
    parts = [flat.astype(np.int8).view(np.uint8) if wbits == 8 else pack_nibbles(flat & 0xF)]
    if indexed:
        parts.append(pack_nibbles(indices.reshape(n, -1)))
    return np.concatenate(parts, axis=1)


def write_table(image: HbmImage, graph: Graph, region) -> None:
    """Write a table region `<weight>@<core>`: FP16 norm weights or biases, or head_dim f32
    copies of a value cache's static scale."""
    weight = region.name.rsplit("@", 1)[0]
    values = graph.weights.dense(weight)
    if graph.node(weight).attr("role") == "scale":
        head_dim = int(graph.meta_dict["head_dim"])
        data = np.full(head_dim, np.float32(values.reshape(())), np.float32).view(np.uint8)
    else:
        data = np.asarray(values, np.float16).ravel().view(np.uint8)
    image.host_write(region, 0, data)


def write_rope(image: HbmImage, program: Program, graph: Graph) -> None:
    """Write each core's RoPE table: for every cache position, f32 cos then sin."""
    rope = next(iter(graph.nodes_of(Op.ROPE)), None)
    head_dim = int(graph.meta_dict["head_dim"])
    keys = program.layout.kv_keys
    if rope is None:
        table = np.zeros((keys, 2 * head_dim), np.float32)
    else:
        cos, sin = rope_tables(np.arange(keys), head_dim, float(rope.attr("theta")))
        table = np.concatenate([cos, sin], axis=1).astype(np.float32)
    for core in range(program.cores):
        region = image.region(f"io.rope@{core}")
        image.host_write(region, 0, table.view(np.uint8).ravel()[: region.nbytes])


def write_embeddings(image: HbmImage, graph: Graph, inputs: dict, first_row: int = 0) -> None:
    """Write the pass's rows of every embedding lookup (FP16) into its `io.<node>` region."""
    for node in graph.nodes_of(Op.EMBEDDING):
        source = node.inputs[0]
        if source not in inputs:
            raise InputError(f"node %{node.name}: the host looks up embeddings of graph "
                             f"inputs, not of %{source}")  # fmt: skip
        table = graph.weights.dense(node.inputs[1])
        rows = node.op.reference([inputs[source], table], node.attr_dict)
        data = np.asarray(rows, np.float16).reshape(-1, table.shape[1]).view(np.uint8)
        region = image.region(f"io.{node.name}")
        image.host_write(region, first_row * data.shape[1], data.ravel())


def read_logits(image: HbmImage, program: Program, placement: WeightPlacement,
                rows: range) -> np.ndarray:  # fmt: skip
    """Return the logits [len(rows), placement.rows] the cores stored for token rows `rows`
    of their `io.logits` regions."""
    out = np.zeros((len(rows), placement.rows), np.float32)
    for core in range(program.cores):
        mine = [t for t in placement.tiles if t.core == core and t.k0 == 0]
        if not mine:
            continue
        region = image.region(f"io.logits@{core}")
        tokens = region.nbytes // (FP16_BYTES * sum(padded_rows(t.rows) for t in mine))
        for tile in mine:
            width = padded_rows(tile.rows)
            start = (output_block(placement, tile, tokens) + rows.start * width) * FP16_BYTES
            data = image.host_read(region, start, len(rows) * width * FP16_BYTES)
            block = data.view(np.float16).reshape(len(rows), width)[:, : tile.rows]
            out[:, tile.row0 : tile.row0 + tile.rows] = block
    return out


def relocate(streams: list[list[isa.Instruction]], image: HbmImage,
             delta: int) -> list[list[isa.Instruction]]:  # fmt: skip
    """Return a decode bucket's streams moved by `delta` positions (the module docstring):
    STOREs into the KV cache, LOADs of RoPE rows and MASK positions."""
    if delta == 0:
        return streams
    return [[_moved(insn, image, delta) for insn in stream] for stream in streams]


def _moved(insn: isa.Instruction, image: HbmImage, delta: int) -> isa.Instruction:
    if isinstance(insn, isa.Sfu) and insn.op == isa.SfuOp.MASK:
        return dataclasses.replace(insn, aux_addr=insn.aux_addr + delta)
    if isinstance(insn, isa.Store | isa.Load):
        region = image.region_at(insn.channel, insn.hbm_addr)
        if region is None:
            return insn  # the program's own LOAD/STORE check reports it
        if isinstance(insn, isa.Store) and region.kind == "kv":
            row_bytes = region.nbytes // image.layout.kv_keys
            return _moved_bytes(insn, row_bytes * delta)
        if isinstance(insn, isa.Load) and region.name.startswith("io.rope@"):
            words = rope_row_bytes(_head_dim(image, region)) // WORD
            return dataclasses.replace(insn, hbm_addr=insn.hbm_addr + words * delta)
    return insn


def _head_dim(image: HbmImage, region) -> int:
    return region.nbytes // image.layout.kv_keys // rope_row_bytes(1)


def _moved_bytes(insn: isa.Store, nbytes: int) -> isa.Store:
    """Return a STORE moved by `nbytes` in HBM (a partial-word STORE may change word)."""
    start = insn.hbm_addr * WORD + insn.byte_offset + nbytes
    if insn.byte_count:
        return dataclasses.replace(insn, hbm_addr=start // WORD, byte_offset=start % WORD)
    if start % WORD:
        raise ExecutionError(f"a KV STORE moved by {nbytes} bytes leaves whole words: "
                             f"{insn.listing()}")  # fmt: skip
    return dataclasses.replace(insn, hbm_addr=start // WORD)
