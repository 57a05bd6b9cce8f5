"""Define the accelerator's instruction set: formats, binary encoding and listing.

Programs are sequences of 32-bit little-endian words; an instruction is 1 to 7 words, its
length fixed by its opcode (as in the FlightLLM artifact's ISA). Word 0 of every instruction:

    [31:28] opcode   [27:24] wait mask   [23:20] release mask   [19:0] instruction fields

Synchronisation (token semaphores, FlightLLM artifact): a dispatcher reads the program in
order and appends each instruction to its unit's in-order queue (LOAD -> load, STORE ->
store, MM/MV -> matrix, SFU -> sfu; SYS is executed by the dispatcher itself). A counter
`sem[src][dst]` exists for each ordered pair of queues. Before an instruction of queue q
starts, for each bit j of its wait mask it waits until `sem[j][q] > 0` and decrements it;
when it completes, for each bit j of its release mask it increments `sem[q][j]`. A mask bit
naming the instruction's own queue is rejected. SYS BARRIER stops dispatch until every queue
is empty; SYS END ends the program.

Units: HBM addresses and strides count 32-byte words (the 256-bit AXI port of an HBM
pseudo-channel, AMD PG276); buffer addresses count words of the target buffer. Matrix shape
fields are the engine's tile counts (see `engine_model.plan_linear`).

What each instruction does to the machine state (the instruction-set simulator in `iss/`
executes exactly this; docs/fpga_compiler.md describes the state):
- LOAD copies HBM words into a buffer. Transfer (o, i), for o < outer_count and i <
  inner_count, reads `length` words from hbm_addr + o * hbm_stride_outer + i *
  hbm_stride_inner; its `layout` says where the bytes go (`LoadLayout`).
- STORE copies `count` runs of `length` buffer words (run c from buf_addr + c * buf_stride)
  to HBM (from hbm_addr + c * hbm_stride). With byte_count > 0 each run is one word of which
  only bytes [0, byte_count) are written, at bytes [byte_offset, byte_offset + byte_count)
  of the HBM word (AXI write strobes): rows narrower than a word (a KV row of 16 INT8, an
  f32 scale) are written without touching their neighbours.
- MM/MV run `engine_model.execute_matrix` on the core's ACT, WEIGHT (with its indices, the
  NTABLE plane at the same addresses), BIAS and OUT buffers.
- SFU reads and writes the SFU buffer (and the OUT or ACT buffer for DEQUANT and
  QUANTIZE), row by row: see `Sfu`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar

from sparseflow.ir.errors import InputError


class Opcode(IntEnum):
    LOAD = 1
    STORE = 2
    MM = 3
    MV = 4
    SFU = 5
    SYS = 6


class Queue(IntEnum):
    """Bit positions of the units in wait/release masks."""

    LOAD = 0
    STORE = 1
    MATRIX = 2
    SFU = 3


class Buffer(IntEnum):
    ACT = 0
    WEIGHT = 1
    BIAS = 2
    OUT = 3
    NTABLE = 4
    SFU = 5


class LoadLayout(IntEnum):
    """How a LOAD places the HBM bytes of one transfer in its buffer.

    - WORDS: consecutive buffer words from the transfer's buffer address, in the buffer's own
      word format (ACT: 2 lanes x act_width INT8; SFU: 32 bytes; BIAS, OUT: int32).
    - W8, W4, W8I, W4I (WEIGHT): stored engine words, each n_chains x chain_len values of 8
      or 4 bits (two's complement, entry c * chain_len + j at the lowest bits first), then
      for the indexed layouts (I) their 4-bit in-block indices in the same order. Each becomes
      one weight word (values as INT8) and its index word at the same address; a transfer
      is whole stored words.
    - ROWS (WEIGHT): the transfer is an INT8 matrix of rows of `row_bytes` bytes, packed;
      byte b of row r is weight entry (chain r % n_chains, slice b % chain_len) of word
      buf_addr + (r // n_chains) * buf_stride_outer + b // chain_len. Rows past the last one
      in a word it touches are zero (the keys of a KV cache as weight rows).
    - COLS (WEIGHT): the transpose: byte b of row r goes to weight row R = buf_stride_inner +
      b, entry (chain R % n_chains, slice r % chain_len) of word buf_addr + (R // n_chains) *
      buf_stride_outer + r // chain_len; every entry of a word it touches in a weight row >=
      buf_stride_inner is written (zero where no byte maps to it). (The values of a KV cache:
      each part of their rows, from the first, fills its own weight rows.)
    ROWS and COLS transfers must be single (outer_count = inner_count = 1).
    """

    WORDS = 0
    W8 = 1
    W4 = 2
    W8I = 3
    W4I = 4
    ROWS = 5
    COLS = 6


class SfuOp(IntEnum):
    SOFTMAX = 0
    LAYERNORM = 1
    RMSNORM = 2
    SILU = 3
    GELU = 4
    ADD = 5
    MUL = 6
    ROPE = 7
    DEQUANT = 8  # int32 OUT words x token scale x row scale -> FP16 (accumulate: imm bit 13)
    QUANTIZE = 9  # FP16 rows -> per-row symmetric INT8 ACT words, scales to aux_addr
    MASK = 10  # scale scores and hide keys beyond each query's position (in2_addr)
    RELU = 11
    DEQUANT_BIAS = 12  # DEQUANT plus the FP16 bias of the rows after their scales, rounded once
    PACK8 = 13  # FP16 rows -> INT8 codes packed row after row in the SFU buffer
    SCALE = 14  # multiply by the FP16 constant in imm


class SysOp(IntEnum):
    BARRIER = 0
    END = 1


QUEUE_LETTERS = "LSMF"  # load, store, matrix, sfu (F: special-function unit)
WORD_BYTES = 4  # programs are 32-bit words
HBM_WORD_BYTES = 32  # one beat of a pseudo-channel's 256-bit AXI port (AMD PG276)


@dataclass(frozen=True)
class Field:
    """Place one instruction field at bits [lsb + width - 1 : lsb] of word `word`."""

    name: str
    word: int
    lsb: int
    width: int
    values: tuple | None = None  # allowed values, encoded as their position
    lo: int = 0
    hi: int | None = None

    def encode(self, insn: str, value: object) -> int:
        if self.values is not None:
            if value not in self.values:
                raise InputError(f"{insn}.{self.name}={value!r}: must be one of {self.values}")
            return self.values.index(value)
        hi = (1 << self.width) - 1 if self.hi is None else self.hi
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= hi:
            raise InputError(f"{insn}.{self.name}={value!r}: must be an integer in {self.lo}..{hi}")
        return value

    def decode(self, insn: str, code: int) -> object:
        if self.values is None:
            self.encode(insn, code)  # range check
            return code
        if code >= len(self.values):
            raise InputError(f"{insn}.{self.name}: code {code} is not defined")
        return self.values[code]


BOOL = (False, True)
HEADER = (Field("wait", 0, 24, 4), Field("release", 0, 20, 4))
U16 = 16


def _u16(name: str, word: int, lsb: int, lo: int = 0, hi: int | None = None) -> Field:
    return Field(name, word, lsb, U16, lo=lo, hi=hi)


def _matrix_fields(max_tok_pairs: int) -> tuple[Field, ...]:
    return (
        Field("n", 0, 18, 2, (2, 4, 8, 16)),
        Field("wbits", 0, 17, 1, (8, 4)),
        Field("bias", 0, 16, 1, BOOL),
        Field("accumulate", 0, 15, 1, BOOL),
        Field("act", 0, 13, 2, ("none", "relu", "silu", "gelu")),
        Field("per_block_n", 0, 12, 1, BOOL),
        _u16("k_steps", 1, 16, lo=1),
        _u16("row_tiles", 1, 0, lo=1),
        _u16("tok_pairs", 2, 16, lo=1, hi=max_tok_pairs),
        _u16("act_base", 2, 0),
        _u16("w_base", 3, 16),
        _u16("out_base", 3, 0),
        _u16("bias_base", 4, 16),
        _u16("ntable_addr", 4, 0),
    )


def _transfer_fields() -> tuple[Field, ...]:
    return (
        Field("buffer", 0, 17, 3, tuple(Buffer)),
        Field("channel", 0, 12, 5),  # 32 HBM pseudo-channels
        Field("hbm_addr", 1, 0, 32),
        _u16("buf_addr", 2, 16),
        _u16("length", 2, 0, lo=1),
    )


MAX_ROW_BYTES = (1 << 9) - 1  # ROWS/COLS loads: 9-bit row size


class Instruction:
    """Base of all instructions: encode/decode through the class's FIELDS table."""

    OPCODE: ClassVar[Opcode]
    QUEUE: ClassVar[Queue | None]
    FIELDS: ClassVar[tuple[Field, ...]]
    wait: int
    release: int

    def __post_init__(self) -> None:
        self.encode()  # validates every field
        for name in ("wait", "release"):
            if self.QUEUE is not None and getattr(self, name) >> self.QUEUE & 1:
                raise InputError(f"{self.mnemonic}.{name}: names the instruction's own queue")

    @property
    def mnemonic(self) -> str:
        return self.OPCODE.name

    @classmethod
    def n_words(cls) -> int:
        return 1 + max(f.word for f in cls.FIELDS)

    def encode(self) -> list[int]:
        """Return this instruction's 32-bit words."""
        words = [0] * self.n_words()
        words[0] = int(self.OPCODE) << 28
        mnemonic = self.mnemonic
        for f in HEADER + self.FIELDS:
            words[f.word] |= f.encode(mnemonic, getattr(self, f.name)) << f.lsb
        return words

    @classmethod
    def decode(cls, words: list[int]) -> Instruction:
        """Return the instruction held in `words` (reserved bits must be zero)."""
        values, used = {}, [0] * cls.n_words()
        used[0] = 0xF << 28
        for f in HEADER + cls.FIELDS:
            mask = ((1 << f.width) - 1) << f.lsb
            used[f.word] |= mask
            values[f.name] = f.decode(cls.OPCODE.name, (words[f.word] & mask) >> f.lsb)
        for i, (word, mask) in enumerate(zip(words, used, strict=True)):
            if word & ~mask & 0xFFFFFFFF:
                raise InputError(f"{cls.OPCODE.name} word {i}: reserved bits set ({word:#010x})")
        return cls(**values)

    def listing(self) -> str:
        """Return one readable line: mnemonic, fields, then the token masks."""
        parts = [f"{self.mnemonic:<5}"]
        for f in self.FIELDS:
            value = getattr(self, f.name)
            text = value.name.lower() if isinstance(value, IntEnum) else value
            if f.name == "n":
                text = f"{value}:16"
            parts.append(f"{f.name}={text}")
        parts.append(f"wait={mask_letters(self.wait)} release={mask_letters(self.release)}")
        return " ".join(str(p) for p in parts)


def mask_letters(mask: int) -> str:
    """Return a token mask as queue letters (L load, S store, M matrix, F sfu) or '-'."""
    return "".join(c for i, c in enumerate(QUEUE_LETTERS) if mask >> i & 1) or "-"


@dataclass(frozen=True, kw_only=True)
class Load(Instruction):
    """Copy HBM -> buffer: outer_count x inner_count transfers of `length` words each, placed
    as `layout` says (`LoadLayout`)."""

    OPCODE = Opcode.LOAD
    QUEUE = Queue.LOAD
    FIELDS = _transfer_fields() + (
        Field("layout", 0, 9, 3, tuple(LoadLayout)),
        Field("row_bytes", 0, 0, 9),  # ROWS/COLS: bytes per matrix row (see LoadLayout)
        _u16("outer_count", 3, 16, lo=1),
        _u16("inner_count", 3, 0, lo=1),
        Field("hbm_stride_inner", 4, 0, 32),
        Field("hbm_stride_outer", 5, 0, 32),
        _u16("buf_stride_inner", 6, 16),
        _u16("buf_stride_outer", 6, 0),
    )
    buffer: Buffer = Buffer.ACT
    channel: int = 0
    hbm_addr: int = 0
    buf_addr: int = 0
    length: int = 1
    layout: LoadLayout = LoadLayout.WORDS
    row_bytes: int = 0
    outer_count: int = 1
    inner_count: int = 1
    hbm_stride_inner: int = 0
    hbm_stride_outer: int = 0
    buf_stride_inner: int = 0
    buf_stride_outer: int = 0
    wait: int = 0
    release: int = 0

    @property
    def nbytes(self) -> int:
        """Return the HBM bytes this load reads."""
        return self.length * self.inner_count * self.outer_count * HBM_WORD_BYTES


@dataclass(frozen=True, kw_only=True)
class Store(Instruction):
    """Copy buffer -> HBM: `count` transfers of `length` words each (of one partial word each
    when byte_count > 0: see the module docstring)."""

    OPCODE = Opcode.STORE
    QUEUE = Queue.STORE
    FIELDS = _transfer_fields() + (
        Field("byte_offset", 0, 6, 5),  # partial-word runs: first byte written in the word
        Field("byte_count", 0, 0, 6, hi=HBM_WORD_BYTES),  # 0: whole words
        _u16("count", 3, 16, lo=1),
        _u16("buf_stride", 3, 0),
        Field("hbm_stride", 4, 0, 32),
    )
    buffer: Buffer = Buffer.OUT
    channel: int = 0
    hbm_addr: int = 0
    buf_addr: int = 0
    length: int = 1
    byte_offset: int = 0
    byte_count: int = 0
    count: int = 1
    buf_stride: int = 0
    hbm_stride: int = 0
    wait: int = 0
    release: int = 0

    @property
    def nbytes(self) -> int:
        """Return the HBM bytes this store writes."""
        return self.length * self.count * HBM_WORD_BYTES


@dataclass(frozen=True, kw_only=True)
class MM(Instruction):
    """Matrix-matrix (prefill): out[tokens, rows] = act @ weight.T (+ bias), tiled."""

    OPCODE = Opcode.MM
    QUEUE = Queue.MATRIX
    FIELDS = _matrix_fields(max_tok_pairs=0xFFFF)
    n: int = 16
    wbits: int = 8
    bias: bool = False
    accumulate: bool = False
    act: str = "none"
    per_block_n: bool = False
    k_steps: int = 1
    row_tiles: int = 1
    tok_pairs: int = 1
    act_base: int = 0
    w_base: int = 0
    out_base: int = 0
    bias_base: int = 0
    ntable_addr: int = 0
    wait: int = 0
    release: int = 0


@dataclass(frozen=True, kw_only=True)
class MV(MM):
    """Matrix-vector (decode): MM restricted to one pair of vectors (tok_pairs = 1)."""

    OPCODE = Opcode.MV
    FIELDS = _matrix_fields(max_tok_pairs=1)


@dataclass(frozen=True, kw_only=True)
class Sfu(Instruction):
    """Run a special function over `rows` rows of `length` elements.

    Operands live in the device-wide SFU buffer, whose 32-byte words hold 16 FP16, 8 f32 or
    32 INT8 values; addresses count its words, except DEQUANT's `in_addr` (an OUT-buffer
    word of the core) and QUANTIZE's `out_addr` (an ACT-buffer word). Row t of an operand
    starts `t x stride` words after its address; a stride of 0 means the row's own words
    (rows back to back). FP16 inputs are read as FP16, arithmetic is f32, FP16 results are
    rounded once. By op (imm is op-specific):
    - SOFTMAX in -> out. RMSNORM: in2 = weights (FP16 [length]); LAYERNORM: in2 = weights,
      aux = bias; imm = FP16 bits of eps.
    - SILU, RELU (in -> out), ADD, MUL (in, in2 -> out): imm = the stride of all operands;
      GELU: imm[15] = tanh approximation, imm[14:0] the stride.
    - SCALE in -> out: imm = FP16 bits of the factor. MASK: the same, then key j of row t
      becomes -inf when j > aux_addr + t (aux_addr: the first row's position).
    - ROPE: in (stride imm) x the table rows at in2 (f32 [rows, 2 x length]: cos, then sin)
      -> out: x cos + rotate_half(x) sin.
    - QUANTIZE: FP16 rows (stride imm[11:0]) -> per-row symmetric INT8 in ACT words from
      out_addr (row t in lane t % 2 of words out_addr + (t // 2) x k_steps + s, k step s
      holding elements [s x step, (s + 1) x step), zero beyond `length`; step = chain_len
      if imm[12] else 16), f32 scales to aux [rows].
    - PACK8: FP16 rows (stride imm[11:0]) -> INT8 codes packed row after row from byte 0 of
      out; imm[15]: one static f32 scale at in2 (codes clipped to +-127), else per-row
      scales to aux [rows].
    - DEQUANT: int32 results from OUT words in_addr + (t // 2) x row_tiles + r //
      rows_per_tile (lane t % 2; row_tiles = ceil(length / rows_per_tile) in mode imm[15:14],
      the N:16 code of MM.n) x token scale aux[t] x row scale in2[r] (f32) -> FP16 out
      (stride imm[12:0]); imm[13] accumulate: add the FP16 already at out. DEQUANT_BIAS also
      adds the FP16 bias of the rows, stored in the words right after their scales.
    """

    OPCODE = Opcode.SFU
    QUEUE = Queue.SFU
    FIELDS = (
        Field("op", 0, 16, 4, tuple(SfuOp)),
        _u16("in_addr", 1, 16),
        _u16("out_addr", 1, 0),
        _u16("in2_addr", 2, 16),
        _u16("length", 2, 0, lo=1),
        _u16("rows", 3, 16, lo=1),
        _u16("aux_addr", 3, 0),
        _u16("imm", 0, 0),
    )
    op: SfuOp = SfuOp.SOFTMAX
    in_addr: int = 0
    out_addr: int = 0
    in2_addr: int = 0
    length: int = 1
    rows: int = 1
    aux_addr: int = 0
    imm: int = 0
    wait: int = 0
    release: int = 0

    @property
    def elements(self) -> int:
        """Return the FP16 elements this instruction processes."""
        return self.rows * self.length


@dataclass(frozen=True, kw_only=True)
class Sys(Instruction):
    """Synchronise the dispatcher (BARRIER) or end the program (END)."""

    OPCODE = Opcode.SYS
    QUEUE = None
    FIELDS = (Field("op", 0, 16, 4, tuple(SysOp)),)
    op: SysOp = SysOp.END
    wait: int = 0
    release: int = 0


INSTRUCTIONS: dict[Opcode, type[Instruction]] = {
    cls.OPCODE: cls for cls in (Load, Store, MM, MV, Sfu, Sys)
}
MatrixInstr = MM  # MV is a subclass


def encode(program: list[Instruction]) -> bytes:
    """Return the program as little-endian 32-bit words."""
    words = [w for insn in program for w in insn.encode()]
    return struct.pack(f"<{len(words)}I", *words)


def decode(data: bytes) -> list[Instruction]:
    """Return the instructions encoded in `data`; raise InputError naming the bad word."""
    if len(data) % WORD_BYTES:
        raise InputError(f"program: {len(data)} bytes is not a whole number of 32-bit words")
    words = list(struct.unpack(f"<{len(data) // WORD_BYTES}I", data))
    program, pos = [], 0
    while pos < len(words):
        opcode = words[pos] >> 28
        if opcode not in INSTRUCTIONS:
            raise InputError(f"program word {pos}: unknown opcode {opcode}")
        cls = INSTRUCTIONS[Opcode(opcode)]
        if pos + cls.n_words() > len(words):
            raise InputError(f"program word {pos}: {cls.OPCODE.name} truncated")
        try:
            program.append(cls.decode(words[pos : pos + cls.n_words()]))
        except InputError as err:
            raise InputError(f"program word {pos}: {err}") from None
        pos += cls.n_words()
    return program


def listing(program: list[Instruction]) -> str:
    """Return one line per instruction, prefixed by its word offset."""
    lines, pos = [], 0
    for insn in program:
        lines.append(f"{pos:06d}  {insn.listing()}")
        pos += insn.n_words()
    return "".join(line + "\n" for line in lines)


def field_names(cls: type[Instruction]) -> list[str]:
    """Return the dataclass field names of an instruction class."""
    return [f.name for f in fields(cls)]
