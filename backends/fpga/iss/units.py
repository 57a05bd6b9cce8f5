"""What LOAD, STORE and MM/MV do to the machine state (`isa` module docstring).

Every access goes through the memories' checks (`memory.Tracked`, `hbm.HbmImage`) before
data moves; the arithmetic of MM/MV is `engine_model.run_matrix` (the result of the
bit-accurate `execute_matrix`, vectorised).
"""

from __future__ import annotations

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import check_matrix_op, run_matrix
from sparseflow.backends.fpga.iss.memory import Access, span
from sparseflow.ir.errors import InputError

WORD = isa.HBM_WORD_BYTES
B = isa.Buffer
L = isa.LoadLayout
WEIGHT_BITS = {L.W8: (8, False), L.W4: (4, False), L.W8I: (8, True), L.W4I: (4, True)}


def word_bytes(m, buffer: isa.Buffer) -> int:
    """Return the bytes of one word of `buffer` (buffers a LOAD/STORE copies words of)."""
    e = m.engine
    segs = e.chain.max_segments
    return {B.ACT: 2 * e.chain.act_width, B.SFU: WORD, B.BIAS: e.n_chains * segs * 4,
            B.OUT: 2 * e.n_chains * segs * 4}[buffer]  # fmt: skip


def word_view(m, core: int, buffer: isa.Buffer):
    """Return (array of words, its Tracked, numpy dtype of its elements) of `buffer`."""
    c = m.cores[core]
    return {B.ACT: (c.buf.act, c.act, np.int8), B.SFU: (m.sfu, m.sfu_track, np.uint8),
            B.BIAS: (c.buf.bias, c.bias, np.dtype("<i4")),
            B.OUT: (c.buf.out, c.out, np.dtype("<i4"))}[buffer]  # fmt: skip


def load(m, core: int, insn: isa.Load, access: Access) -> None:
    """Copy HBM -> buffer, transfer by transfer, placed as `insn.layout` says."""
    for o in range(insn.outer_count):
        for i in range(insn.inner_count):
            addr = insn.hbm_addr + o * insn.hbm_stride_outer + i * insn.hbm_stride_inner
            data = m.hbm.read(insn.channel, addr, insn.length, access)
            dest = insn.buf_addr + o * insn.buf_stride_outer + i * insn.buf_stride_inner
            _place(m, core, insn, data, dest, access)


def _place(m, core: int, insn: isa.Load, data: np.ndarray, dest: int, access: Access) -> None:
    layout = isa.LoadLayout(insn.layout)
    if (insn.buffer == B.WEIGHT) != (layout != L.WORDS):
        raise access.error(f"layout {layout.name.lower()} does not load the "
                           f"{isa.Buffer(insn.buffer).name} buffer")  # fmt: skip
    if layout in (L.ROWS, L.COLS) and insn.outer_count * insn.inner_count != 1:
        raise access.error("ROWS and COLS loads are single transfers")
    if layout == L.WORDS:
        _place_words(m, core, insn.buffer, data, dest, access)
    elif layout in WEIGHT_BITS:
        _place_weights(m, core, *WEIGHT_BITS[layout], data, dest, access)
    elif layout == L.ROWS:
        _place_rows(m, core, insn, data, dest, access)
    else:
        _place_cols(m, core, insn, data, dest, access)


def _place_words(m, core: int, buffer: int, data: np.ndarray, dest: int,
                 access: Access) -> None:  # fmt: skip
    if buffer == B.NTABLE:
        raise access.error("the NTABLE buffer is loaded with its weight words (indexed layouts)")
    size = word_bytes(m, buffer)
    if len(data) % size:
        raise access.error(f"{len(data)} bytes are not whole {size}-byte words of the "
                           f"{isa.Buffer(buffer).name} buffer")  # fmt: skip
    array, tracked, dtype = word_view(m, core, buffer)
    words = span(dest, len(data) // size, len(array), access, f"{isa.Buffer(buffer).name} buffer")
    tracked.write(words, access)
    array[words] = data.view(dtype).reshape(len(words), *array.shape[1:])


def _place_weights(m, core: int, bits: int, indexed: bool, data: np.ndarray, dest: int,
                   access: Access) -> None:  # fmt: skip
    c, e = m.cores[core], m.engine
    entries = e.n_chains * e.chain.chain_len
    size = entries * (bits + 4 * indexed) // 8
    if len(data) % size:
        raise access.error(f"{len(data)} bytes are not whole {size}-byte stored weight words")
    n = len(data) // size
    stored = data.reshape(n, size)
    values = _unpack(stored[:, : entries * bits // 8], bits)
    shape = (n, e.n_chains, e.chain.chain_len)
    indices = _unpack(stored[:, entries * bits // 8 :], 4, signed=False) if indexed else 0
    words = span(dest, n, e.weight_depth, access, "WEIGHT buffer")
    _write_weight(c, words, values.reshape(shape), np.reshape(indices, shape) if indexed else 0,
                  access)  # fmt: skip
    c.weight_init[words] = True


def _unpack(data: np.ndarray, bits: int, signed: bool = True) -> np.ndarray:
    """Return the `bits`-wide elements of byte rows (lowest bits first), sign-extended."""
    if bits == 8:
        return data.view(np.int8) if signed else data
    low, high = data & 0xF, data >> 4
    nibbles = np.stack([low, high], axis=-1).reshape(data.shape[0], -1).astype(np.int16)
    return np.where(nibbles >= 8, nibbles - 16, nibbles) if signed else nibbles


def _write_weight(c, words: np.ndarray, values, indices, access: Access) -> None:
    c.weight.write(words, access)
    c.buf.weight[words] = values
    c.buf.index[words] = indices


def _place_rows(m, core: int, insn: isa.Load, data: np.ndarray, dest: int,
                access: Access) -> None:  # fmt: skip
    """ROWS: row r, byte b -> word dest + (r // chains) x buf_stride_outer + b // chain_len."""
    c, e = m.cores[core], m.engine
    width, chains, length = insn.row_bytes, e.n_chains, e.chain.chain_len
    if width == 0 or width % length:
        raise access.error(f"row_bytes {width} is not whole k steps of {length}")
    rows = len(data) // width
    tiles, steps = -(-rows // chains), width // length
    matrix = np.zeros((tiles * chains, width), np.int8)
    matrix[:rows] = data[: rows * width].view(np.int8).reshape(rows, width)
    values = matrix.reshape(tiles, chains, steps, length).transpose(0, 2, 1, 3)
    words = dest + np.add.outer(np.arange(tiles) * insn.buf_stride_outer, np.arange(steps))
    span(int(words.min()), int(words.max() - words.min()) + 1, e.weight_depth, access,
         "WEIGHT buffer")  # fmt: skip
    _write_weight(c, words.ravel(), values.reshape(-1, chains, length), 0, access)
    c.weight_init[words.ravel()] = True


def _place_cols(m, core: int, insn: isa.Load, data: np.ndarray, dest: int,
                access: Access) -> None:  # fmt: skip
    """COLS: row r, byte b -> weight row R = buf_stride_inner + b, word dest + (R // chains)
    x buf_stride_outer + r // chain_len; entries of rows >= buf_stride_inner are written."""
    c, e = m.cores[core], m.engine
    width, chains, length = insn.row_bytes, e.n_chains, e.chain.chain_len
    if width == 0:
        raise access.error("row_bytes 0 in a COLS load")
    keys, first = len(data) // width, insn.buf_stride_inner
    t0, t1 = first // chains, (first + width - 1) // chains
    steps = -(-keys // length)
    block = np.zeros(((t1 - t0 + 1) * chains, steps * length), np.int8)
    rows = slice(first - t0 * chains, first - t0 * chains + width)
    block[rows, :keys] = data[: keys * width].view(np.int8).reshape(keys, width).T
    new = block.reshape(t1 - t0 + 1, chains, steps, length).transpose(0, 2, 1, 3)
    tiles = np.arange(t0, t1 + 1)
    words = dest + np.add.outer(tiles * insn.buf_stride_outer, np.arange(steps))
    span(int(words.min()), int(words.max() - words.min()) + 1, e.weight_depth, access,
         "WEIGHT buffer")  # fmt: skip
    mine = (tiles[:, None] * chains + np.arange(chains)[None, :]) >= first  # [tiles, chains]
    mask = np.broadcast_to(mine[:, None, :, None], new.shape)
    old, old_index = c.buf.weight[words], c.buf.index[words]
    values = np.where(mask, new, old)
    indices = np.where(mask, 0, old_index)
    _write_weight(c, words.ravel(), values.reshape(-1, chains, length),
                  indices.reshape(-1, chains, length), access)  # fmt: skip
    c.weight_init[words] |= mine[:, None, :]


def store(m, core: int, insn: isa.Store, access: Access) -> None:
    """Copy buffer -> HBM: `count` runs of `length` words (or one partial word each)."""
    array, tracked, _ = word_view_checked(m, core, insn.buffer, access)
    size = word_bytes(m, insn.buffer)
    partial = insn.byte_count > 0
    if partial and (insn.length != 1 or insn.byte_offset + insn.byte_count > WORD):
        raise access.error("a partial-word STORE writes bytes of one word (length 1, "
                           f"byte_offset + byte_count <= {WORD})")  # fmt: skip
    if (insn.length * WORD) % size:
        raise access.error(f"{insn.length} HBM words are not whole {size}-byte buffer words")
    per_run = insn.length * WORD // size
    what = f"{isa.Buffer(insn.buffer).name} buffer"
    for run in range(insn.count):
        words = span(insn.buf_addr + run * insn.buf_stride, per_run, len(array), access, what)
        tracked.read(words, access)
        data = np.ascontiguousarray(array[words]).view(np.uint8).ravel()
        if partial:
            data = data[: insn.byte_count]
        m.hbm.write(insn.channel, insn.hbm_addr + run * insn.hbm_stride, data,
                    insn.byte_offset if partial else 0, access)  # fmt: skip


def word_view_checked(m, core: int, buffer: int, access: Access):
    if buffer in (B.WEIGHT, B.NTABLE):
        raise access.error(f"STORE from the {isa.Buffer(buffer).name} buffer")
    return word_view(m, core, buffer)


def matrix(m, core: int, insn: isa.MM, access: Access) -> None:
    """Run one MM/MV on the core's engine buffers after checking what it reads and writes."""
    c, e = m.cores[core], m.engine
    try:
        check_matrix_op(insn, e)
    except InputError as err:
        raise access.error(str(err)) from None
    pairs, tiles, steps = insn.tok_pairs, insn.row_tiles, insn.k_steps
    c.act.read(np.arange(insn.act_base, insn.act_base + pairs * steps), access)
    weights = np.arange(insn.w_base, insn.w_base + tiles * steps)
    c.weight.read(weights, access)
    if not c.weight_init[weights].all():
        word = int(weights[np.argmin(c.weight_init[weights].all(axis=1))])
        raise access.error(f"reads WEIGHT buffer word {word}, of which some chains were "
                           "never loaded (uninitialised)")  # fmt: skip
    if insn.bias:
        c.bias.read(np.arange(insn.bias_base, insn.bias_base + tiles), access)
    out = np.arange(insn.out_base, insn.out_base + pairs * tiles)
    if insn.accumulate:
        c.out.read(out, access)
    c.out.write(out, access)
    run_matrix(insn, e, c.buf)
