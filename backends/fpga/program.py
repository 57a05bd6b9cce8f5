"""Hold a compiled FPGA program: per-bucket instruction streams, HBM layout, buffer plan.

A `Program` is what `compiler.compile_program` produces and what the functional model
(`functional.py`) and the event simulator execute. It is plain frozen data:

- `buckets`: one `Bucket` per (phase, length bucket). Length-adaptive compilation (FlightLLM
  [P][A]) emits one program per bucket and reuses it for every length inside: prefill lengths
  round up to a multiple of `prefill_step` (default 128), decode KV lengths (the cache length
  *after* appending the step's token) to a multiple of `decode_step` (default 16). A bucket
  of length Lb serves every length in (Lb - step, Lb]; attention spans the whole bucket and
  masks the keys beyond the real length (the host sets the mask, see `functional.py`).
- each bucket holds one `Stream` per core: blocks of instruction field columns
  (`columns.Block`). `Stream.table()` gives every field of every instruction as numpy
  columns (what a simulator wants: opcode, wait/release masks, HBM channel and bytes moved
  for LOAD/STORE, tile counts for MM/MV, op and element count for SFU); `Stream.words` packs
  them into 32-bit instruction words (`isa.encode` format) when a program is written, and
  `Stream.instructions()` decodes those to `isa.Instruction` objects.
- `layout`: where everything lives in HBM (`HbmRegion`s: weights, their scales, the KV cache,
  the host I/O areas), in 32-byte words per pseudo-channel (`isa.HBM_WORD_BYTES`). Each
  weight's `WeightPlacement` lists its regions and the bytes of values, indices, per-block
  N and scales it stores.
- `buffers`: the on-chip buffer plan (`BufferPlan`): words and bytes per word of each
  `isa.Buffer`, and the two halves used for double buffering.

Multi-core execution: every core runs its own stream; cores exchange vectors only through
the device-wide SFU buffer, and `SYS BARRIER` is a device-wide barrier (every core's stream
reaches its n-th barrier before any core passes it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.columns import COLUMNS, N_WORDS, Block, concat, pack, table_of
from sparseflow.backends.fpga.engine_model import EngineParams
from sparseflow.ir.errors import InputError

PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class HbmRegion:
    """A contiguous span of one HBM pseudo-channel: `words` 32-byte words from `addr`."""

    name: str  # e.g. "layers.0.attn.q_proj", "kv.k.0", "io.hidden"
    kind: str  # "weight", "kv", "io" or "table"
    channel: int
    addr: int
    words: int

    @property
    def end(self) -> int:
        return self.addr + self.words

    @property
    def nbytes(self) -> int:
        return self.words * isa.HBM_WORD_BYTES


@dataclass(frozen=True)
class WeightTile:
    """One weight tile: rows [row0, row0 + rows) x K [k0, k0 + k) computed by one MM/MV.

    Its engine words (`words`, `isa.Buffer.WEIGHT` format) are split over `parts`, one HBM
    region per channel of its core, loaded by one LOAD each in that order.
    """

    core: int
    row0: int
    rows: int
    k0: int
    k: int
    words: int
    part_words: tuple[int, ...]  # engine words of each part
    parts: tuple[HbmRegion, ...]


@dataclass(frozen=True)
class WeightPlacement:
    """Where one linear weight lives in HBM and what it stores (bytes before word padding).

    `n` is the N:16 mode its tiles run in (16 = dense): the largest per-block N of the
    weight, smaller blocks padded with zero weights. `wbits` is the stored weight width and
    `k_group` the K span of one int32 partial sum (the quantization group, or K for
    per-channel scales). `consts` holds, per core with tiles (in core order), the f32 scales
    of its tiles' rows and, with `bias`, their FP16 bias (`layout.const_layout`).
    """

    name: str
    rows: int
    k: int
    n: int
    wbits: int
    k_group: int
    values_bytes: int
    indices_bytes: int
    block_n_bytes: int
    scales_bytes: int
    tiles: tuple[WeightTile, ...]
    consts: tuple[HbmRegion, ...]
    bias: bool = False

    @property
    def nbytes(self) -> int:
        """Return the bytes this weight occupies in HBM (tiles padded to whole words)."""
        return sum(p.nbytes for t in self.tiles for p in t.parts) + sum(
            c.nbytes for c in self.consts
        )

    @property
    def packed_bytes(self) -> int:
        """Return values + indices + per-block N + scales, before tiling and padding."""
        return self.values_bytes + self.indices_bytes + self.block_n_bytes + self.scales_bytes

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(sorted({p.channel for t in self.tiles for p in t.parts}))


@dataclass(frozen=True, eq=False)
class HbmLayout:
    """Every HBM region of the program; `check()` proves no overlap and no overflow."""

    channels: int
    bytes_per_channel: int
    weights: tuple[WeightPlacement, ...]
    regions: tuple[HbmRegion, ...]  # all regions: weight tiles, KV cache, I/O, tables
    kv_keys: int = 0  # KV rows each cache region holds (longest KV length, rounded up)

    def weight(self, name: str) -> WeightPlacement:
        for placement in self.weights:
            if placement.name == name:
                return placement
        raise KeyError(name)

    def region(self, name: str) -> HbmRegion:
        """Return the region called `name` (weight tiles share their weight's label)."""
        return self._by_name[name]

    def parts(self, name: str) -> list[HbmRegion]:
        """Return the regions `name.0`, `name.1`, ... of a value split over channels."""
        return self._parts.get(name, [])

    @cached_property
    def _parts(self) -> dict[str, list[HbmRegion]]:
        split: dict[str, list[HbmRegion]] = {}
        for name, region in self._by_name.items():
            base, _, index = name.rpartition(".")
            if index.isdigit():
                split.setdefault(base, []).append(region)
        found = {}
        for base, regions in split.items():
            by_index = {int(r.name.rpartition(".")[2]): r for r in regions}
            count = next(i for i in range(len(by_index) + 1) if i not in by_index)
            found[base] = [by_index[i] for i in range(count)]
        return found

    @cached_property
    def _by_name(self) -> dict[str, HbmRegion]:
        return {r.name: r for r in reversed(self.regions)}

    @property
    def words_per_channel(self) -> int:
        return self.bytes_per_channel // isa.HBM_WORD_BYTES

    def used_bytes(self, kind: str | None = None) -> int:
        """Return the bytes of all regions (or of one kind)."""
        return sum(r.nbytes for r in self.regions if kind is None or r.kind == kind)

    def channel_bytes(self) -> np.ndarray:
        """Return the bytes used on each channel."""
        used = np.zeros(self.channels, np.int64)
        for r in self.regions:
            used[r.channel] += r.nbytes
        return used

    def check(self) -> None:
        """Raise InputError when regions overlap or run past a channel's capacity."""
        by_channel: dict[int, list[tuple[int, int, str]]] = {}
        for r in self.regions:
            by_channel.setdefault(r.channel, []).append((r.addr, r.end, r.name))
        for channel in range(self.channels):
            spans = sorted(by_channel.get(channel, []))
            for (_, end, name), (start, _, other) in zip(spans, spans[1:], strict=False):
                if start < end:
                    raise InputError(f"HBM channel {channel}: {name} overlaps {other}")
            if spans and spans[-1][1] > self.words_per_channel:
                raise InputError(
                    f"HBM channel {channel}: {spans[-1][2]} ends at byte "
                    f"{spans[-1][1] * isa.HBM_WORD_BYTES}, beyond hbm.bytes_per_channel "
                    f"{self.bytes_per_channel}"
                )


@dataclass(frozen=True)
class BufferPlan:
    """On-chip buffers of one core: depth in words and bytes per word of each buffer.

    With double buffering the weight buffer is used in two halves: tile i loads into half
    i % 2 while the matrix engine reads half (i - 1) % 2.
    """

    depth_words: Mapping[isa.Buffer, int]
    word_bytes: Mapping[isa.Buffer, int]
    double_buffered: bool

    def capacity_bytes(self, buffer: isa.Buffer) -> int:
        return self.depth_words[buffer] * self.word_bytes[buffer]

    def weight_half_words(self) -> int:
        """Return the words one weight tile may use (half the buffer when double-buffered)."""
        depth = self.depth_words[isa.Buffer.WEIGHT]
        return depth // 2 if self.double_buffered else depth


@dataclass(frozen=True, eq=False)
class Stream:
    """One core's instruction stream: consecutive `columns.Block`s of field columns.

    The compiler builds a stream from blocks (one per lowered segment, shared or derived
    between layers); `table()` gives the columns, `words` the 32-bit encoding, computed on
    first use only (an estimate never needs it).
    """

    blocks: tuple[Block, ...]

    @classmethod
    def from_instructions(cls, program: list[isa.Instruction]) -> Stream:
        return cls((table_of(program),))

    def __len__(self) -> int:
        return sum(len(b) for b in self.blocks)

    @property
    def nbytes(self) -> int:
        return isa.WORD_BYTES * sum(b.n_words for b in self.blocks)

    @property
    def words(self) -> np.ndarray:
        """Return the stream's uint32 words (`isa.encode` format), packed on each call."""
        return pack(self.table())

    def to_bytes(self) -> bytes:
        return self.words.astype("<u4").tobytes()

    def instructions(self) -> list[isa.Instruction]:
        """Return the decoded instructions (slow for large streams: see `table`)."""
        return isa.decode(self.to_bytes())

    @property
    def opcodes(self) -> np.ndarray:
        return np.concatenate([b.cols["opcode"] for b in self.blocks] or [np.zeros(0, np.int64)])

    def table(self) -> dict[str, np.ndarray]:
        """Return every instruction's fields as numpy columns (`columns` module docstring),
        plus `offset`, each instruction's word offset in the stream."""
        cols = concat(self.blocks) if self.blocks else {c: np.zeros(0, np.int64) for c in COLUMNS}
        lengths = N_WORDS[cols["opcode"]]
        cols["offset"] = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cols


@dataclass(frozen=True, eq=False)
class Bucket:
    """The program of one length bucket: one stream per core."""

    phase: str  # "prefill" or "decode"
    length: int  # prompt tokens (prefill) or KV length after the step (decode), rounded up
    streams: tuple[Stream, ...]
    chunk_tokens: int = 0  # prefill: tokens per pass through the model (0 in decode)

    @property
    def key(self) -> tuple[str, int]:
        return self.phase, self.length

    @property
    def n_instructions(self) -> int:
        return sum(len(s) for s in self.streams)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.streams)


@dataclass(frozen=True, eq=False)
class Program:
    """A compiled model for one FPGA target: buckets, HBM layout and buffer plan."""

    target: str
    cores: int
    engine: EngineParams
    layout: HbmLayout
    buffers: BufferPlan
    buckets: tuple[Bucket, ...]
    prefill_step: int = 128
    decode_step: int = 16
    meta: Mapping[str, object] = field(default_factory=dict)  # graph facts the runners need
    lazy_keys: tuple[tuple[str, int], ...] = ()  # buckets `lower` builds on request
    lower: Callable[[str, int], Bucket] | None = None

    def bucket_length(self, phase: str, length: int) -> int:
        """Return the bucket length serving `length` (prompt or KV length) in `phase`."""
        if phase not in PHASES:
            raise InputError(f"phase must be one of {PHASES}, not {phase!r}")
        if length < 1:
            raise InputError(f"{phase} length must be at least 1, got {length}")
        step = self.prefill_step if phase == "prefill" else self.decode_step
        return -(-length // step) * step

    def bucket_for(self, phase: str, length: int) -> Bucket:
        """Return the bucket whose program runs `length`; InputError if none was compiled.

        A lazy program (`compiler.compile_program(..., lazy=True)`) lowers the bucket anew on
        every call and keeps none of them.
        """
        want = self.bucket_length(phase, length)
        for bucket in self.buckets:
            if bucket.key == (phase, want):
                return bucket
        if self.lower is not None and (phase, want) in self.lazy_keys:
            return self.lower(phase, want)
        keys = [b.key for b in self.buckets] + list(self.lazy_keys)
        have = sorted(n for p, n in keys if p == phase)
        raise InputError(f"no {phase} bucket for length {length} (compiled buckets: {have})")

    @property
    def total_bytes(self) -> int:
        """Return the instruction bytes of all buckets."""
        return sum(b.nbytes for b in self.buckets)

    @property
    def n_instructions(self) -> int:
        return sum(b.n_instructions for b in self.buckets)

    def per_length_bytes(self, phase: str, lengths: range) -> int:
        """Return the instruction bytes that one program per length (no buckets) would need.

        A length's program is its bucket's program with attention sized to the length, so
        its size is estimated from the bucket's size (exact for the non-attention part).
        """
        return sum(self.bucket_for(phase, n).nbytes for n in lengths)
