"""The SFU ops (`isa.Sfu` docstring) on the device-wide SFU buffer, at the SFU's precision.

Operands are rows of words of the SFU buffer (`_rows`): FP16 values are read as FP16 and
computed on in f32, with the numpy references of the graph ops (the specification the
graph runs on) where an op is one; results are rounded to FP16 once and written as whole
words (lanes past a row's length are zero).
"""

from __future__ import annotations

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.engine_model import N_CODES, dequantize
from sparseflow.backends.fpga.iss.memory import Access
from sparseflow.ir.ops import Op
from sparseflow.passes.quantize import symmetric_quantize

S = isa.SfuOp
WORD = isa.HBM_WORD_BYTES
F16, F32, I8 = np.dtype("<f2"), np.dtype("<f4"), np.dtype(np.int8)
MODES = {code: n for n, code in N_CODES.items()}
UNARY = {S.SILU: Op.SILU, S.RELU: Op.RELU, S.GELU: Op.GELU, S.SOFTMAX: Op.SOFTMAX}
BINARY = {S.ADD: Op.ADD, S.MUL: Op.MUL}
QMAX = 127


def _words(m, access: Access, addr: int, rows: int, row_words: int, stride: int) -> np.ndarray:
    """Return the SFU word indices [rows, row_words] of rows `stride` words apart."""
    stride = stride or row_words
    index = addr + np.add.outer(np.arange(rows) * stride, np.arange(row_words))
    if rows and (index.min() < 0 or index.max() >= len(m.sfu)):
        raise access.error(f"SFU buffer words [{index.min()}, {index.max() + 1}) are outside "
                           f"its {len(m.sfu)} words")  # fmt: skip
    return index


def _rows(m, access: Access, addr: int, rows: int, length: int, dtype: np.dtype,
          stride: int = 0) -> np.ndarray:  # fmt: skip
    """Return [rows, length] elements of `dtype` read from the SFU buffer (checked), as f32
    for floats."""
    per_word = WORD // dtype.itemsize
    index = _words(m, access, addr, rows, -(-length // per_word), stride)
    m.sfu_track.read(index.ravel(), access)
    values = m.sfu[index].view(dtype).reshape(rows, -1)[:, :length]
    return values.astype(np.float32) if dtype.kind == "f" else values


def _write(m, access: Access, addr: int, values: np.ndarray, dtype: np.dtype,
           stride: int = 0) -> None:  # fmt: skip
    """Write [rows, length] values as `dtype` (rounded once) in whole SFU words."""
    rows, length = values.shape
    per_word = WORD // dtype.itemsize
    row_words = -(-length // per_word)
    index = _words(m, access, addr, rows, row_words, stride)
    m.sfu_track.write(index.ravel(), access)
    padded = np.zeros((rows, row_words * per_word), dtype)
    with np.errstate(over="ignore"):  # beyond the FP16 range is +-inf, as in the SFU
        padded[:, :length] = values
    m.sfu[index] = padded.view(np.uint8).reshape(rows, row_words, WORD)


def _fp16(bits: int) -> np.float32:
    return np.float32(np.array(bits, np.uint16).view(np.float16))


def run_sfu(m, core: int, insn: isa.Sfu, access: Access) -> None:
    """Execute one SFU instruction (see the module docstring)."""
    op = S(insn.op)
    if op in (S.DEQUANT, S.DEQUANT_BIAS):
        _dequant(m, core, insn, access)
    elif op == S.QUANTIZE:
        _quantize(m, core, insn, access)
    elif op == S.PACK8:
        _pack8(m, insn, access)
    else:
        out, stride = _elementwise(m, insn, op, access)
        _write(m, access, insn.out_addr, out, F16, stride)


def _elementwise(m, insn: isa.Sfu, op: S, access: Access) -> tuple[np.ndarray, int]:
    """Return (FP16-bound result rows, output stride) of the ops reading FP16 rows."""
    rows, length = insn.rows, insn.length
    stride = insn.imm & 0x7FFF if op in (*UNARY, *BINARY) and op != S.SOFTMAX else 0
    x = _rows(m, access, insn.in_addr, rows, length, F16, stride)
    if op in BINARY:
        y = _rows(m, access, insn.in2_addr, rows, length, F16, stride)
        return BINARY[op].reference([x, y], {}), stride
    if op in UNARY:
        attrs = {"approximate": "tanh" if insn.imm >> 15 else "none", "axis": -1}
        return UNARY[op].reference([x], attrs), stride
    if op in (S.RMSNORM, S.LAYERNORM):
        params = [_rows(m, access, insn.in2_addr, 1, length, F16)[0]]
        if op == S.LAYERNORM:
            params.append(_rows(m, access, insn.aux_addr, 1, length, F16)[0])
        norm = Op.RMSNORM if op == S.RMSNORM else Op.LAYERNORM
        return norm.reference([x, *params], {"eps": _fp16(insn.imm)}), 0
    if op in (S.SCALE, S.MASK):
        scaled = (x * _fp16(insn.imm)).astype(F16).astype(np.float32)
        if op == S.MASK:
            hidden = np.arange(length)[None, :] > insn.aux_addr + np.arange(rows)[:, None]
            scaled[hidden] = -np.inf
        return scaled, 0
    if op == S.ROPE:
        return _rope(m, insn, access), 0
    raise access.error(f"SFU op code {int(op)} has no definition here")


def _rope(m, insn: isa.Sfu, access: Access) -> np.ndarray:
    rows, length = insn.rows, insn.length
    x = _rows(m, access, insn.in_addr, rows, length, F16, insn.imm)
    table = _rows(m, access, insn.in2_addr, rows, 2 * length, F32)
    cos, sin = table[:, :length], table[:, length:]
    half = length // 2
    rotated = np.concatenate([-x[:, half:], x[:, :half]], axis=-1)
    return x * cos + rotated * sin


def _quantize(m, core: int, insn: isa.Sfu, access: Access) -> None:
    """FP16 rows -> INT8 ACT words (token pairs x k steps, per K group) and f32 scales."""
    rows, length = insn.rows, insn.length
    codes, scales = symmetric_quantize(_rows(m, access, insn.in_addr, rows, length, F16,
                                             insn.imm & 0xFFF), 8)  # fmt: skip
    e, c = m.engine, m.cores[core]
    step = e.chain.chain_len if insn.imm >> 12 & 1 else 16
    steps = -(-length // step)
    group = insn.in2_addr or steps
    if steps % group or step > e.chain.act_width:
        raise access.error(f"{steps} k steps of {step} do not split into groups of {group}")
    pairs = -(-rows // 2)
    padded = np.zeros((2 * pairs, steps * step), np.int8)
    padded[:rows, :length] = codes
    words = padded.reshape(pairs, 2, steps // group, group, step).transpose(2, 0, 3, 1, 4)
    act = np.zeros((*words.shape[:4], e.chain.act_width), np.int8)
    act[..., :step] = words
    index = np.arange(insn.out_addr, insn.out_addr + act.size // (2 * e.chain.act_width))
    if index[-1] >= e.act_depth:
        raise access.error(f"ACT buffer words up to {index[-1]} are outside its {e.act_depth}")
    c.act.write(index, access)
    c.buf.act[index] = act.reshape(-1, 2, e.chain.act_width)
    _write(m, access, insn.aux_addr, scales[None, :], F32)


def _pack8(m, insn: isa.Sfu, access: Access) -> None:
    """FP16 rows -> INT8 codes packed row after row (static scale at in2, or per row)."""
    rows, length = insn.rows, insn.length
    x = _rows(m, access, insn.in_addr, rows, length, F16, insn.imm & 0xFFF)
    if insn.imm >> 15:
        scale = _rows(m, access, insn.in2_addr, 1, 1, F32)[0, 0]
        codes = np.clip(np.round(x / scale), -QMAX, QMAX).astype(np.int8)
    else:
        codes, scales = symmetric_quantize(x, 8)
        _write(m, access, insn.aux_addr, scales[None, :], F32)
    _write(m, access, insn.out_addr, codes.reshape(1, -1), I8)


def _dequant(m, core: int, insn: isa.Sfu, access: Access) -> None:
    """int32 OUT words x token scales x row scales (+ bias, + old) -> FP16 rows."""
    rows, length = insn.rows, insn.length
    e, c = m.engine, m.cores[core]
    n = MODES[insn.imm >> 14]
    per_tile, segs = e.rows_per_tile(n), e.chain.segments(n)
    tiles, pairs = -(-length // per_tile), -(-rows // 2)
    words = np.arange(insn.in_addr, insn.in_addr + pairs * tiles)
    if words[-1] >= e.out_depth:
        raise access.error(f"OUT buffer words up to {words[-1]} are outside its {e.out_depth}")
    c.out.read(words, access)
    acc = c.buf.out[words, :, :, :segs].reshape(pairs, tiles, 2, e.n_chains, segs)
    acc = acc.transpose(0, 2, 1, 3, 4).reshape(2 * pairs, -1)[:rows, :length]
    token = _rows(m, access, insn.aux_addr, 1, rows, F32)[0]
    row = _rows(m, access, insn.in2_addr, 1, length, F32)[0]
    y = dequantize(acc, token[:, None] * row[None, :])
    if S(insn.op) == S.DEQUANT_BIAS:
        bias_addr = insn.in2_addr + -(-length // (WORD // 4))
        y = _rows(m, access, bias_addr, 1, length, F16)[0][None, :] + y
    stride = insn.imm & 0x1FFF
    if insn.imm >> 13 & 1:
        y = y + _rows(m, access, insn.out_addr, rows, length, F16, stride)
    _write(m, access, insn.out_addr, y, F16, stride)
