"""Map a compressed graph onto one FPGA target: engine, buffer plan, weight tiles, HBM regions.

Requires a graph whose linears read `quantize`d INT8 activations and whose linear weights are
INT4 (symmetric, per channel or group-wise) or INT8 (per channel), dense or N:16 (`nmblock`,
or N:M with M = 16) with every N a mode of the target's chains; shape-only weights are
planned from their type (N = density * 16 rounded up to a supported N).
Ensures `LinearSpec`s (one per linear weight) and an `HbmLayout` in which every weight is
split into `WeightTile`s: each core owns a contiguous range of row tiles of every linear
(model parallelism, FlightLLM [P]), in proportion to its HBM channels (`RowSplitter`); a tile
is as many row tiles x one K group as half the weight buffer holds (double buffering), and its
engine words are spread over the core's HBM channels so that one tile streams from all of
them at once. `kv_regions` spreads each KV head's cache over its core's channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import (
    DENSE_N,
    INDEX_BITS,
    ChainParams,
    EngineParams,
)
from sparseflow.backends.fpga.program import (
    BufferPlan,
    HbmLayout,
    HbmRegion,
    WeightPlacement,
    WeightTile,
)
from sparseflow.hw_models.schema import FpgaModel
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import FLIGHTLLM_BLOCK, FLIGHTLLM_N_CHOICES, PackedWeight
from sparseflow.ir.graph import Graph
from sparseflow.ir.types import QuantScheme, SparsePattern

FP16_BYTES = 2  # the SFU datapath, its buffer and host I/O hold FP16 (FlightLLM [P][A])
SFU_WORD_ELEMENTS = 16  # FP16 elements per SFU-buffer word: the SFU's 16 lanes [P][A]
ADDRESS_WORDS = 1 << 16  # 16-bit buffer address fields of the ISA
SCALE_BYTES = 4  # f32 weight scales
SCALES_PER_WORD = isa.HBM_WORD_BYTES // SCALE_BYTES  # f32 per HBM / SFU word


@dataclass(frozen=True)
class LinearSpec:
    """What the engine needs of one linear weight [rows, k]."""

    name: str
    rows: int
    k: int
    n: int  # N:16 mode (16 = dense)
    wbits: int
    k_group: int  # K span of one partial sum
    sparse: bool
    block_n_bytes: int
    bias: bool = False  # the linear adds a bias (kept with the scales, see `const_layout`)

    @property
    def groups(self) -> int:
        return -(-self.k // self.k_group)

    def values_bytes(self) -> int:
        return self.rows * self.k * self.n // DENSE_N * self.wbits // 8

    def indices_bytes(self) -> int:
        return self.rows * self.k * self.n // DENSE_N * INDEX_BITS // 8 if self.sparse else 0


def engine_for(hw: FpgaModel, chain: ChainParams | None = None) -> EngineParams:
    """Return one core's matrix engine: the target's chains, N modes and buffer depths.

    `chain` replaces the target's chain structure (the buffers keep their capacities).
    """
    core = hw.core
    chain = chain or chain_for(hw)
    plan = buffer_plan(hw, chain, core.dsp_chains)
    d = plan.depth_words
    return EngineParams(
        chain,
        core.dsp_chains,
        act_depth=d[isa.Buffer.ACT],
        weight_depth=d[isa.Buffer.WEIGHT],
        bias_depth=d[isa.Buffer.BIAS],
        out_depth=d[isa.Buffer.OUT],
    )


def chain_for(hw: FpgaModel) -> ChainParams:
    """Return the target's chain: DSPs per chain, smallest sparse N, INT8 (and INT4) weights."""
    core = hw.core
    sparse_ns = [n for n in core.nm_supported_n if n != DENSE_N]
    min_n = min(sparse_ns, default=DENSE_N)
    return ChainParams(core.dsps_per_chain, min_n, wbits=8, group_size=core.dsp_group_size)


def buffer_plan(hw: FpgaModel, chain: ChainParams, n_chains: int) -> BufferPlan:
    """Return the buffer words of one core from the hardware model's capacities in bytes.

    Word sizes follow the engine (`engine_model.EngineBuffers`): an activation word is two
    tokens x act_width INT8; a weight word is n_chains x chain_len weights of up to 8 bits,
    with their 4-bit indices in the sparse-meta (NTABLE) buffer at the same address; an
    output word is 2 lanes x n_chains x max_segments int32; a bias word n_chains x
    max_segments int32; an SFU word 16 FP16 lanes. The weight buffer's usable depth is
    bounded by the sparse-meta buffer's, which holds each weight word's indices at its address.
    """
    b = hw.core.buffers
    entries = n_chains * chain.chain_len
    word_bytes = {
        isa.Buffer.ACT: 2 * chain.act_width,
        isa.Buffer.WEIGHT: entries,
        isa.Buffer.NTABLE: entries * INDEX_BITS // 8,
        isa.Buffer.OUT: 2 * n_chains * chain.max_segments * 4,
        isa.Buffer.BIAS: n_chains * chain.max_segments * 4,
        isa.Buffer.SFU: SFU_WORD_ELEMENTS * 2,
    }
    fields = {
        isa.Buffer.ACT: "activation_buffer_bytes",
        isa.Buffer.WEIGHT: "weight_buffer_bytes",
        isa.Buffer.NTABLE: "sparse_meta_buffer_bytes",
        isa.Buffer.OUT: "output_buffer_bytes",
        isa.Buffer.BIAS: "bias_buffer_bytes",
    }
    capacity = {buf: getattr(b, field) for buf, field in fields.items()}
    capacity[isa.Buffer.SFU] = ADDRESS_WORDS * word_bytes[isa.Buffer.SFU]
    depth = {buf: min(capacity[buf] // word_bytes[buf], ADDRESS_WORDS) for buf in word_bytes}
    # A sparse tile's indices sit at its weight words' addresses in the sparse-meta buffer.
    depth[isa.Buffer.WEIGHT] = min(depth[isa.Buffer.WEIGHT], depth[isa.Buffer.NTABLE])
    for buf, words in depth.items():
        if words < 2:
            raise InputError(
                f"{hw.source_file or hw.name}: field 'core.buffers.{fields[buf]}' = "
                f"{capacity[buf]} bytes holds under two {word_bytes[buf]}-byte words of the "
                f"{n_chains} chains x {chain.chain_len} DSPs (double buffering needs two)"
            )
    return BufferPlan(depth, word_bytes, b.double_buffering)


def linear_spec(graph: Graph, name: str, hw: FpgaModel, bias: bool = False) -> LinearSpec:
    """Return the engine view of linear weight `name` (`bias`: its linear adds a bias);
    InputError naming the layer if the target cannot run its sparsity or quantization."""
    t = graph.node(name).type
    rows, k = (int(d) for d in t.shape)
    supported = tuple(hw.core.nm_supported_n)
    value = graph.weights.get(name)
    n, block_n_bytes = _mode(name, t, value, supported)
    if t.quant is None or t.quant.scheme != QuantScheme.INT or t.quant.bits not in (4, 8):
        raise InputError(
            f"layer {name}: weights {t} cannot run on {hw.name}: the engine multiplies INT4 or "
            "INT8 weights (use a recipe with quantize_int4 / quantize_int8, e.g. flightllm)"
        )
    if t.quant.bits == 4 and not t.quant.symmetric:
        raise InputError(f"layer {name}: asymmetric int4 ({t.quant}) needs a zero-point unit "
                         f"the engine lacks; quantize with symmetric: true")  # fmt: skip
    group = t.quant.group_size if t.quant.granularity == "group" else k
    if group < k and group % FLIGHTLLM_BLOCK:
        raise InputError(f"layer {name}: quantization group {group} is not a multiple of 16")
    return LinearSpec(name, rows, k, n, t.quant.bits, group, n != DENSE_N, block_n_bytes, bias)


def _mode(name: str, t, value: object, supported: tuple[int, ...]) -> tuple[int, int]:
    """Return (N:16 mode, bytes of per-block N) of a weight's sparse format."""
    if t.sparse is None:
        return DENSE_N, 0
    pattern = t.sparse.pattern
    if pattern == SparsePattern.NM and t.sparse.m == FLIGHTLLM_BLOCK and t.sparse.n in supported:
        return t.sparse.n, 0
    if pattern != SparsePattern.NM_BLOCK:
        raise InputError(
            f"layer {name}: sparsity {t.sparse} cannot run on the DSP chains, which support "
            f"N:16 with N in {list(supported)} (FlightLLM nmblock or N:M with M = 16)"
        )
    if isinstance(value, PackedWeight):
        block_n = value.arrays["block_n"]
        n = int(block_n.max())
        if n not in supported:
            raise InputError(f"layer {name}: block N {n} is not among the chain's {supported}")
        return n, int(block_n.nbytes)
    # Shape-only: the blocks need at least the smallest N the pass chooses for this density.
    needed = min(n for n in FLIGHTLLM_N_CHOICES if n >= t.sparse.density * DENSE_N - 1e-9)
    if needed not in supported:
        raise InputError(
            f"layer {name}: density {t.sparse.density:g} needs blocks of N {needed}, not among "
            f"the chain's core.nm_supported_n {list(supported)}"
        )
    rows, k = (int(d) for d in t.shape)
    return needed, -(-rows // FLIGHTLLM_BLOCK) * -(-k // FLIGHTLLM_BLOCK)


class ChannelAllocator:
    """Bump-allocate 32-byte words on each HBM channel."""

    def __init__(self, hw: FpgaModel) -> None:
        self.hw = hw
        self.top = np.zeros(hw.hbm.channels, np.int64)
        self.regions: list[HbmRegion] = []

    def take(self, name: str, kind: str, channel: int, nbytes: int) -> HbmRegion:
        words = max(1, -(-nbytes // isa.HBM_WORD_BYTES))
        region = HbmRegion(name, kind, channel, int(self.top[channel]), words)
        self.top[channel] += words
        self.regions.append(region)
        return region

    def check_capacity(self) -> None:
        need = int(self.top.sum()) * isa.HBM_WORD_BYTES
        hbm = self.hw.hbm
        if need > hbm.capacity_bytes or self.top.max() * isa.HBM_WORD_BYTES > hbm.bytes_per_channel:
            raise InputError(
                f"{self.hw.name}: the program needs {need} bytes of HBM (weights, KV cache, "
                f"I/O), more than hbm.channels x hbm.bytes_per_channel = {hbm.capacity_bytes} "
                f"({hbm.bytes_per_channel} per channel)"
            )


def core_channels(hw: FpgaModel, core: int) -> list[int]:
    """Return the HBM channels whose weights core `core` streams (channels dealt round robin)."""
    return list(range(core, hw.hbm.channels, hw.cores))


def head_core(kv_head: int, cores: int) -> int:
    """Return the core that stores KV head `kv_head` and runs the query heads that read it."""
    return kv_head % cores


class RowSplitter:
    """Split each weight's row tiles over the cores in proportion to their HBM channels.

    A decode step streams every weight once, so a core's time is its bytes over its channels'
    bandwidth: shares follow channel counts. Rounding per weight would give the same core the
    extra row tile of every small weight; the splitter carries each core's deficit from weight
    to weight within a layer (reset at each layer, so layers split alike) and hands each tile
    to the core furthest behind its share. `share_with` makes a weight copy another's split
    (a fused op reading both outputs row by row needs the same rows on the same core).
    """

    def __init__(self, hw: FpgaModel) -> None:
        counts = np.array([len(core_channels(hw, c)) for c in range(hw.cores)], float)
        self.fraction = counts / counts.sum()
        self.splits: dict[str, list[int]] = {}
        self.scope: str | None = None
        self.deficit = np.zeros(hw.cores)

    def split(self, name: str, row_tiles: int, share_with: str | None = None) -> list[int]:
        """Return the row tiles of each core for weight `name`."""
        scope = _layer_scope(name)
        if scope != self.scope:
            self.scope, self.deficit = scope, np.zeros(len(self.fraction))
        if share_with in self.splits:
            counts = list(self.splits[share_with])
        else:
            counts = [0] * len(self.fraction)
            want = self.deficit + row_tiles * self.fraction
            for _ in range(row_tiles):
                core = int(np.argmax(want - counts))
                counts[core] += 1
        self.deficit += row_tiles * self.fraction - np.array(counts)
        self.splits[name] = counts
        return counts


def _layer_scope(name: str) -> str | None:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "layers" and len(parts) > 1 else None


def place_weight(
    spec: LinearSpec,
    hw: FpgaModel,
    engine: EngineParams,
    plan: BufferPlan,
    hbm: ChannelAllocator,
    counts: list[int] | None = None,
) -> WeightPlacement:
    """Tile weight `spec` by the weight buffer and place its tiles on the cores' channels.

    `counts` gives each core's row tiles (`RowSplitter`); by default they split evenly.
    """
    rpt = engine.rows_per_tile(spec.n)
    k_steps = -(-spec.k_group // engine.k_per_step(spec.n))
    half = plan.weight_half_words()
    word_bytes = engine.n_chains * engine.chain.chain_len * _stored_bits(spec) // 8
    align = isa.HBM_WORD_BYTES // math.gcd(isa.HBM_WORD_BYTES, word_bytes)
    if k_steps > half:
        raise InputError(
            f"layer {spec.name}: one row tile of K group {spec.k_group} needs {k_steps} weight "
            f"words, more than half the weight buffer ({half}; core.buffers.weight_buffer_bytes)"
        )
    max_rt = half // k_steps
    row_tiles = -(-spec.rows // rpt)
    if counts is None:
        counts = np.diff(np.linspace(0, row_tiles, hw.cores + 1).round().astype(int)).tolist()
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    tiles = []
    for core in range(hw.cores):
        channels = core_channels(hw, core)
        for rt0 in range(int(bounds[core]), int(bounds[core + 1]), max_rt):
            rt = min(max_rt, int(bounds[core + 1]) - rt0)
            row0, rows = rt0 * rpt, min(rt * rpt, spec.rows - rt0 * rpt)
            if row0 % SFU_WORD_ELEMENTS:
                raise InputError(
                    f"layer {spec.name}: a tile starts at row {row0}, not on an SFU word of "
                    f"{SFU_WORD_ELEMENTS} FP16 (core.dsp_chains x rows per chain must be a "
                    f"multiple of {SFU_WORD_ELEMENTS})"
                )
            for k0 in range(0, spec.k, spec.k_group):
                words = rt * k_steps
                parts = [w * align for w in _split(-(-words // align), len(channels)) if w]
                parts[-1] -= sum(parts) - words  # whole HBM words in every part but the last
                label = f"{spec.name}[{row0}:{row0 + rows},{k0}]"
                regions = tuple(
                    hbm.take(label, "weight", ch, w * word_bytes)
                    for ch, w in zip(channels, parts, strict=False)
                )
                k = min(spec.k_group, spec.k - k0)
                tiles.append(WeightTile(core, row0, rows, k0, k, words, tuple(parts), regions))
    scales_bytes = spec.rows * spec.groups * SCALE_BYTES
    consts = []
    for core in sorted({t.core for t in tiles}):
        _, words = const_layout([t for t in tiles if t.core == core], spec.bias)
        channel = core_channels(hw, core)[-1]
        consts.append(hbm.take(f"{spec.name}.consts@{core}", "weight", channel, words * 32))
    return WeightPlacement(
        spec.name, spec.rows, spec.k, spec.n, spec.wbits, spec.k_group, spec.values_bytes(),
        spec.indices_bytes(), spec.block_n_bytes, scales_bytes, tuple(tiles), tuple(consts),
        spec.bias,
    )  # fmt: skip


def const_layout(tiles: list[WeightTile], bias: bool) -> tuple[list[int], int]:
    """Return the word offset of each tile's constants in its core's block, and the block's
    words: per tile in order, the f32 scales of its rows for its K group (8 per word), then
    for a first-K-group tile of a linear with a bias the FP16 bias of its rows (16 per word).
    One LOAD brings a core's block into the SFU buffer; DEQUANT reads a tile's scales at its
    offset and DEQUANT_BIAS the bias right after them."""
    offsets, top = [], 0
    for t in tiles:
        offsets.append(top)
        top += -(-t.rows // SCALES_PER_WORD)
        if bias and t.k0 == 0:
            top += -(-t.rows // SFU_WORD_ELEMENTS)
    return offsets, top


def rope_row_bytes(head_dim: int) -> int:
    """Return the bytes of one position's RoPE table row: f32 cos, then f32 sin, of the
    rotate-half angles of each of head_dim features (f32, as the reference computes them:
    FP16 angles would move q and k by up to half an FP16 step)."""
    return 2 * head_dim * SCALE_BYTES


def padded_rows(rows: int) -> int:
    """Return `rows` rounded up to whole SFU words (a block of FP16 rows in host I/O)."""
    return -(-rows // SFU_WORD_ELEMENTS) * SFU_WORD_ELEMENTS


def output_block(placement: WeightPlacement, tile: WeightTile, tokens: int) -> int:
    """Return the FP16 element where `tile`'s block starts in its core's output region.

    The region holds, for each first-K-group tile of the core in row order, a block of
    [tokens, padded_rows(tile.rows)] FP16 (the logits of the tile's rows)."""
    mine = [t for t in placement.tiles if t.core == tile.core and t.k0 == 0]
    return sum(padded_rows(t.rows) for t in mine if t.row0 < tile.row0) * tokens


def kv_parts(head_dim: int, channels: int) -> list[int]:
    """Return the row bytes of each part of a KV head's INT8 rows over `channels` channels:
    whole 32-byte words (the HBM word), one part per channel but one; a row narrower than a
    word stays in one part. InputError unless rows pack into whole words (head_dim a multiple
    of 32, or 16: two rows per word)."""
    if head_dim % isa.HBM_WORD_BYTES and (head_dim != SFU_WORD_ELEMENTS):
        raise InputError(
            f"head_dim {head_dim}: KV-cache rows must fill whole {isa.HBM_WORD_BYTES}-byte HBM "
            f"words (a multiple of {isa.HBM_WORD_BYTES}, or {SFU_WORD_ELEMENTS})"
        )
    words = max(1, head_dim // isa.HBM_WORD_BYTES)
    n_parts = min(words, channels - 1) if channels > 1 else 1
    sizes = [w * isa.HBM_WORD_BYTES for w in _split(words, n_parts)]
    sizes[-1] += head_dim - sum(sizes)
    return sizes


def kv_regions(
    hbm: ChannelAllocator,
    name: str,
    core: int,
    slot: int,
    keys: int,
    head_dim: int,
    scales: bool = True,
) -> None:
    """Allocate one KV head's cache for `keys` rows, spread over the channels of `core`.

    Each INT8 row is split column-wise into parts (`kv_parts`), one part per channel, and
    with `scales` (per-row quantization) the rows' f32 scales form one more part, so a head's
    keys (or values) stream from several channels at once instead of one (a single channel's
    port would bound a step's attention). `slot` (the region's index among its core's KV
    regions of a layer) rotates the channels so that heads spread evenly. Parts are named
    `name.p`; each holds its rows packed, row r at byte r x row bytes.
    """
    channels = core_channels(hbm.hw, core)
    sizes = kv_parts(head_dim, len(channels))
    n_parts = len(sizes)
    for p, row_bytes in enumerate([*sizes, SCALE_BYTES] if scales else sizes):
        channel = channels[(slot * (n_parts + 1) + p) % len(channels)]
        hbm.take(f"{name}.{p}", "kv", channel, keys * row_bytes)


def _stored_bits(spec: LinearSpec) -> int:
    return spec.wbits + (INDEX_BITS if spec.sparse else 0)


def stored_word_bytes(engine: EngineParams, placement: WeightPlacement) -> int:
    """Return the HBM bytes of one stored engine word of `placement` (values and indices)."""
    bits = placement.wbits + (INDEX_BITS if placement.n != DENSE_N else 0)
    return engine.n_chains * engine.chain.chain_len * bits // 8


def tile_span_words(engine: EngineParams, placement: WeightPlacement, tile: WeightTile) -> int:
    """Return the weight-buffer words the loads of `tile` write: its engine words, plus any
    whole zero words in the last part's padding to a whole HBM word."""
    word_bytes = stored_word_bytes(engine, placement)
    last = tile.parts[-1].words * isa.HBM_WORD_BYTES // word_bytes
    return sum(tile.part_words[:-1]) + last


def _split(words: int, parts: int) -> list[int]:
    """Return `words` split into `parts` near-equal shares (largest first)."""
    base, extra = divmod(words, parts)
    return [base + (i < extra) for i in range(parts)]


def hbm_layout(
    hw: FpgaModel, hbm: ChannelAllocator, weights: list[WeightPlacement], kv_keys: int
) -> HbmLayout:
    """Return the checked layout of everything `hbm` allocated."""
    hbm.check_capacity()
    layout = HbmLayout(
        hw.hbm.channels, hw.hbm.bytes_per_channel, tuple(weights), tuple(hbm.regions), kv_keys
    )
    layout.check()
    return layout
