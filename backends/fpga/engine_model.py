"""Model the sparse DSP chain and the matrix engine bit for bit and cycle for cycle.

Dataflow (the generated RTL in `sparseflow.backends.fpga.rtl` implements exactly this):

- A chain is `chain_len` DSP48E2-like slices in groups of two (FlightLLM CSD-chain figure).
  Every slice computes two INT8 MACs that share one weight (Xilinx WP486 packing): the
  pre-adder forms `(a1 << 18) + a0`, the 27x18 multiplier multiplies it by the weight.
  Inside a group the second slice adds the first slice's P through the 48-bit cascade.
- At each group end a reduction node (RN) splits P into the two lanes with the WP486 sign
  correction: `lo = signed(P[17:0])`, `hi = (P >>> 18) + P[17]`. A group sums two
  products of at most 2**14 each, so `|lo| <= 2**15 < 2**17`: the split is always exact and
  no overflow-adjust unit is needed.
- The RNs feed a registered binary tree that can break the cascade: in dense mode (N = 16)
  the whole chain is one segment (one output per lane per cycle, `chain_len` K elements);
  in N:16 mode (N in 2, 4, 8) segments of N slices each reduce one 16-wide K block for a
  different output row, so the chain emits `chain_len / N` outputs per lane per cycle and
  every slice stays busy. A sparse mux in front of each slice picks the activation of its
  weight's 4-bit in-block index (dense mode picks element `j` for slice `j`).
- The matrix engine runs `n_chains` chains in lock step. One K step per cycle: every chain
  gets one weight word (its slices' weights and indices) and all chains share one
  activation word (two tokens, the two lanes). Loops: token pair, row tile, K step
  (innermost). Results accumulate in int32 (wrapping modulo 2**32, two's complement, as a
  32-bit register does); the final value adds the bias and/or the previous output
  (accumulate flag), wraps, then applies ReLU if asked, and is written to the output buffer.

Cycle model (pipeline registers of the RTL, counted one by one):
  chain latency = 1 (input/pre-adder reg) + 1 (M reg) + 1 (P of slice 0) + 1 (P of slice 1,
  cascade) + 1 (RN split) + ceil(log2(groups)) (tree levels)
  matrix instruction = tok_pairs * row_tiles * k_steps (one issue per cycle, no bubbles)
  + 1 (buffer read) + chain latency + 1 (bias/output add and write).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import FLIGHTLLM_BLOCK

# DSP48 slices per group: FlightLLM (FPGA'24) CSD-chain figure; the generated RTL builds groups
# of two, so hardware models must give this value (`core.dsp_group_size`, checked on loading).
GROUP_SIZE_DSP = 2
SPARSE_NS = (2, 4, 8)  # N of N:16 in sparse mode: FlightLLM [P]; N = 16 is dense
DENSE_N = FLIGHTLLM_BLOCK
N_CODES = {2: 0, 4: 1, 8: 2, 16: 3}  # 2-bit field of the MM/MV instruction
INDEX_BITS = 4  # in-block index of a non-zero weight: FlightLLM [A]
WBITS_SUPPORTED = (4, 8)  # INT4 / INT8 weights: FlightLLM [A]
ACT_BITS = 8  # INT8 activations: FlightLLM [A]
LANE_SHIFT = 18  # WP486: the upper activation sits at bit 18 of the 27-bit AD port
P_BITS = 48  # DSP48E2 P register and cascade width: AMD UG579
ACC_BITS = 32  # int32 accumulation (FlightLLM INT32 bias buffer [A])
SLICE_PIPE_REGS = 3  # AD/B, M and P registers of one slice (AREG=BREG=MREG=PREG=1)
RN_REGS = 1  # lane split register of the reduction node
READ_CYCLES = 1  # synchronous buffer read before the chain
FINISH_CYCLES = 1  # bias / previous-output add, ReLU and output-buffer write
FETCH_LATENCY_CYCLES = 1  # controller: synchronous instruction-memory read
EXECUTE_CYCLES = 1  # controller: decode and issue (starts the engine for MM/MV)
MAX_CHAINS = 1024  # chains in lock step: beyond the hardware models' 128 per core


def wrap_int32(values: np.ndarray) -> np.ndarray:
    """Return `values` wrapped modulo 2**32 into int32 (two's complement)."""
    v = np.asarray(values, dtype=np.int64) & 0xFFFFFFFF
    return np.where(v >= 1 << 31, v - (1 << 32), v).astype(np.int32)


def dequantize(sums: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Return int32 `sums` x f32 `scales` (broadcast) rounded once to f32, as the DEQUANT
    unit's int-by-float multiplier does: a token scale x row scale product is exact in f32
    (11-bit significands, `ir.dtypes.symmetric_scale`), so this equals the exact dot
    product of the dequantized operands rounded once, what the reference computes."""
    return (np.asarray(sums, np.float64) * np.asarray(scales, np.float64)).astype(np.float32)


@dataclass(frozen=True)
class ChainParams:
    """Describe one sparse DSP chain; reject impossible configurations with InputError."""

    chain_len: int  # DSP48 slices
    min_n: int = DENSE_N  # smallest N:16 mode built in (16 = dense only)
    wbits: int = 8
    group_size: int = GROUP_SIZE_DSP  # slices per DSP group (`core.dsp_group_size`)

    def __post_init__(self) -> None:
        if self.chain_len < self.group_size or self.chain_len % self.group_size:
            raise InputError(
                f"chain_len={self.chain_len}: must be a positive multiple of the DSP group "
                f"size {self.group_size}"
            )
        if self.min_n not in N_CODES:
            raise InputError(f"nm N={self.min_n}: must be one of 2, 4, 8, 16 (N:16)")
        if self.min_n != DENSE_N and self.chain_len % self.min_n:
            raise InputError(f"chain_len={self.chain_len}: must be a multiple of N={self.min_n}")
        if self.wbits not in WBITS_SUPPORTED:
            raise InputError(f"wbits={self.wbits}: must be 4 or 8")

    @property
    def groups(self) -> int:
        return self.chain_len // self.group_size

    @property
    def act_width(self) -> int:
        """Return activations per lane in one activation word (a K chunk or a 16-block)."""
        return max(self.chain_len, FLIGHTLLM_BLOCK)

    @property
    def max_segments(self) -> int:
        return 1 if self.min_n == DENSE_N else self.chain_len // self.min_n

    @property
    def tree_levels(self) -> int:
        return math.ceil(math.log2(self.groups)) if self.groups > 1 else 0

    @property
    def latency_cycles(self) -> int:
        """Return cycles from a chain input to its output (see the module docstring)."""
        cascade_regs = self.group_size - 1  # each later slice of a group waits one P register
        return SLICE_PIPE_REGS + cascade_regs + RN_REGS + self.tree_levels

    def supports(self, n: int) -> bool:
        """Return whether mode N:16 runs on this chain (16 = dense always does)."""
        if n == DENSE_N:
            return True
        return n in SPARSE_NS and n >= self.min_n and self.chain_len % n == 0

    def segments(self, n: int) -> int:
        """Return outputs per lane per cycle in mode N:16."""
        self.check_mode(n)
        return 1 if n == DENSE_N else self.chain_len // n

    def check_mode(self, n: int) -> None:
        if not self.supports(n):
            raise InputError(
                f"sparse mode {n}:16 not supported by a chain of {self.chain_len} DSPs built "
                f"for N >= {self.min_n}"
            )


@dataclass(frozen=True)
class EngineParams:
    """Describe the matrix engine: chains in lock step plus its four on-chip buffers."""

    chain: ChainParams
    n_chains: int = 1
    act_depth: int = 256  # activation words (two tokens x act_width INT8 each)
    weight_depth: int = 256  # weight words (n_chains x chain_len weights and indices)
    bias_depth: int = 64  # bias words (n_chains x max_segments int32)
    out_depth: int = 256  # output words (2 lanes x n_chains x max_segments int32)

    def __post_init__(self) -> None:
        if not 1 <= self.n_chains <= MAX_CHAINS:
            raise InputError(f"n_chains={self.n_chains}: must be 1..{MAX_CHAINS}")
        for name in ("act_depth", "weight_depth", "bias_depth", "out_depth"):
            depth = getattr(self, name)
            if not 1 <= depth <= 1 << 16:
                raise InputError(f"{name}={depth}: must be 1..65536 (16-bit buffer address)")

    def rows_per_tile(self, n: int) -> int:
        return self.n_chains * self.chain.segments(n)

    def k_per_step(self, n: int) -> int:
        return self.chain.chain_len if n == DENSE_N else FLIGHTLLM_BLOCK


class MatrixFields(Protocol):
    """Fields of an MM/MV instruction the engine reads (`isa.MatrixInstr` has them)."""

    n: int
    tok_pairs: int
    row_tiles: int
    k_steps: int
    act_base: int
    w_base: int
    bias_base: int
    out_base: int
    bias: bool
    accumulate: bool
    act: str


def matrix_cycles(op: MatrixFields, engine: EngineParams) -> int:
    """Return the engine's busy cycles for one MM/MV instruction (pure, exact)."""
    engine.chain.check_mode(op.n)
    issue_cycles = op.tok_pairs * op.row_tiles * op.k_steps
    return issue_cycles + READ_CYCLES + engine.chain.latency_cycles + FINISH_CYCLES


def controller_cycles(program: list, engine: EngineParams) -> int:
    """Return the RTL controller's cycles for a program (isa instructions) up to SYS END.

    Each instruction costs its words + FETCH_LATENCY_CYCLES + EXECUTE_CYCLES; MM/MV add
    `matrix_cycles` (the controller waits for the engine; the other units are not modelled
    in the RTL slice, so LOAD/STORE/SFU/SYS BARRIER retire at once).
    """
    from sparseflow.backends.fpga import isa

    total = 0
    for insn in program:
        total += insn.n_words() + FETCH_LATENCY_CYCLES + EXECUTE_CYCLES
        if isinstance(insn, isa.MM):
            total += matrix_cycles(insn, engine)
        if isinstance(insn, isa.Sys) and insn.op == isa.SysOp.END:
            break
    return total


def chain_steps(
    chain: ChainParams,
    n: int,
    weights: np.ndarray,
    indices: np.ndarray,
    act0: np.ndarray,
    act1: np.ndarray,
) -> np.ndarray:
    """Return chain outputs [T, 2 lanes, segments] for T steps, emulating the DSP arithmetic.

    weights, indices: [T, chain_len]; act0, act1: [T, act_width] INT8 (lane 0, lane 1).
    """
    segments = chain.segments(n)
    t_steps = weights.shape[0]
    slot = np.arange(chain.chain_len)
    sel = np.broadcast_to(slot, weights.shape) if n == DENSE_N else indices.astype(np.int64)
    a0 = np.take_along_axis(act0.astype(np.int64), sel, axis=1)
    a1 = np.take_along_axis(act1.astype(np.int64), sel, axis=1)
    product = ((a1 << LANE_SHIFT) + a0) * weights.astype(np.int64)  # 27x18 multiply
    p_group = product.reshape(t_steps, chain.groups, chain.group_size).sum(axis=2)
    p_group = _wrap_signed(p_group, P_BITS)
    lo = _wrap_signed(p_group, LANE_SHIFT)
    hi = (p_group >> LANE_SHIFT) + ((p_group >> (LANE_SHIFT - 1)) & 1)
    lanes = np.stack([lo, hi], axis=1)  # [T, 2, groups]
    return lanes.reshape(t_steps, 2, segments, chain.groups // segments).sum(axis=3)


def _wrap_signed(values: np.ndarray, bits: int) -> np.ndarray:
    v = values & ((1 << bits) - 1)
    return np.where(v >= 1 << (bits - 1), v - (1 << bits), v)


@dataclass
class EngineBuffers:
    """Hold the engine's on-chip buffers as typed numpy arrays (not bit-packed)."""

    act: np.ndarray  # [act_depth, 2, act_width] int8
    weight: np.ndarray  # [weight_depth, n_chains, chain_len] int8 (INT4 values in -8..7)
    index: np.ndarray  # [weight_depth, n_chains, chain_len] uint8 (0..15)
    bias: np.ndarray  # [bias_depth, n_chains, max_segments] int32
    out: np.ndarray  # [out_depth, 2, n_chains, max_segments] int32

    @classmethod
    def zeros(cls, engine: EngineParams) -> EngineBuffers:
        """Return all-zero buffers shaped for `engine`."""
        c, ch, s = engine.n_chains, engine.chain, engine.chain.max_segments
        return cls(
            act=np.zeros((engine.act_depth, 2, ch.act_width), np.int8),
            weight=np.zeros((engine.weight_depth, c, ch.chain_len), np.int8),
            index=np.zeros((engine.weight_depth, c, ch.chain_len), np.uint8),
            bias=np.zeros((engine.bias_depth, c, s), np.int32),
            out=np.zeros((engine.out_depth, 2, c, s), np.int32),
        )


def execute_matrix(op: MatrixFields, engine: EngineParams, buf: EngineBuffers) -> None:
    """Execute one MM/MV instruction on `buf` in place, bit-accurately."""
    check_matrix_op(op, engine)
    ch, seg = engine.chain, engine.chain.segments(op.n)
    for tp in range(op.tok_pairs):
        act_rows = op.act_base + tp * op.k_steps + np.arange(op.k_steps)
        for rt in range(op.row_tiles):
            w_rows = op.w_base + rt * op.k_steps + np.arange(op.k_steps)
            acc = np.zeros((2, engine.n_chains, seg), np.int64)
            for c in range(engine.n_chains):
                outs = chain_steps(
                    ch,
                    op.n,
                    buf.weight[w_rows, c],
                    buf.index[w_rows, c],
                    buf.act[act_rows, 0],
                    buf.act[act_rows, 1],
                )
                acc[:, c] = outs.sum(axis=0)
            addr = op.out_base + tp * op.row_tiles + rt
            if op.bias:
                acc += buf.bias[op.bias_base + rt, :, :seg][None].astype(np.int64)
            if op.accumulate:
                acc += buf.out[addr, :, :, :seg].astype(np.int64)
            result = wrap_int32(acc)
            if op.act == "relu":
                result = np.maximum(result, 0)
            buf.out[addr, :, :, :seg] = result


def run_matrix(op: MatrixFields, engine: EngineParams, buf: EngineBuffers) -> None:
    """Execute one MM/MV on `buf` in place, with the result of `execute_matrix`, vectorised.

    The chain arithmetic is exact (the module docstring: no P or lane overflow for INT8 x
    INT8), so every output word is wrap32 of integer dot products, computed here as one
    float matrix product: exact, since every partial sum is an integer below 2**24 (float32,
    when K x 128 x the largest |weight| is) or 2**53 (float64).
    """
    check_matrix_op(op, engine)
    seg, step = engine.chain.segments(op.n), engine.k_per_step(op.n)
    pairs, tiles = op.tok_pairs, op.row_tiles
    act = buf.act[op.act_base : op.act_base + pairs * op.k_steps, :, :step]
    x = act.reshape(pairs, op.k_steps, 2, step).transpose(0, 2, 1, 3).reshape(2 * pairs, -1)
    words = slice(op.w_base, op.w_base + tiles * op.k_steps)
    values = buf.weight[words]
    largest = int(np.abs(values.astype(np.int16)).max(initial=1))
    exact32 = x.shape[1] * 128 * largest < 1 << 24
    w = dense_weights(engine, op, values, buf.index[words], np.float32 if exact32 else np.float64)
    acc = np.rint(x.astype(w.dtype) @ w.T).astype(np.int64)
    acc = acc.reshape(pairs, 2, tiles, engine.n_chains, seg).transpose(0, 2, 1, 3, 4)
    acc = acc.reshape(pairs * tiles, 2, engine.n_chains, seg)
    addrs = op.out_base + np.arange(pairs * tiles)
    if op.bias:
        acc += buf.bias[op.bias_base + np.arange(pairs * tiles) % tiles, None, :, :seg]
    if op.accumulate:
        acc += buf.out[addrs, :, :, :seg]
    result = wrap_int32(acc)
    buf.out[addrs, :, :, :seg] = np.maximum(result, 0) if op.act == "relu" else result


def dense_weights(
    engine: EngineParams,
    op: MatrixFields,
    values: np.ndarray,
    indices: np.ndarray,
    dtype: type = np.float64,
) -> np.ndarray:
    """Return the `dtype` matrix [row_tiles x rows_per_tile, k_steps x k step] that weight
    words [row_tiles x k_steps, n_chains, chain_len] multiply (a sparse slot adds its value
    at its index in its 16-block; a row is chain c, segment s of row tile rt)."""
    seg, step = engine.chain.segments(op.n), engine.k_per_step(op.n)
    chains, per_seg = engine.n_chains, engine.chain.chain_len // seg
    tiles, steps = op.row_tiles, op.k_steps
    shape = (tiles, steps, chains, seg, per_seg)
    if op.n == DENSE_N:  # slot j of a segment is column j of its k step
        dense = values.reshape(shape).transpose(0, 2, 3, 1, 4).astype(dtype)
        return dense.reshape(tiles * chains * seg, steps * step)
    flat = _block_starts(tiles, steps, chains, seg, step) + indices.reshape(shape)
    size = tiles * chains * seg * steps * step
    dense = np.bincount(flat.ravel(), values.reshape(-1), minlength=size).astype(dtype)
    return dense.reshape(tiles * chains * seg, steps * step)


@lru_cache(maxsize=64)
def _block_starts(tiles: int, steps: int, chains: int, seg: int, step: int) -> np.ndarray:
    """Return, per (row tile, k step, chain, segment), the flat index of its k-step block in
    the dense [rows, k] matrix (as [tiles, steps, chains, seg, 1] int64)."""
    rt, ks, c, s = np.ix_(range(tiles), range(steps), range(chains), range(seg))
    row = (rt * chains + c) * seg + s
    return (row[..., None] * steps + ks[..., None]) * step


def check_matrix_op(op: MatrixFields, engine: EngineParams) -> None:
    """Raise InputError when `op` does not fit `engine` (mode, activation, buffer bounds)."""
    engine.chain.check_mode(op.n)
    if op.act not in ("none", "relu"):
        raise InputError(f"matrix act={op.act}: the matrix engine fuses only relu")
    if getattr(op, "per_block_n", False):
        raise InputError("matrix per_block_n: the engine runs one N per instruction")
    if getattr(op, "wbits", engine.chain.wbits) > engine.chain.wbits:
        raise InputError(f"matrix wbits={op.wbits}: engine built for {engine.chain.wbits}")
    words = matrix_words(op)
    spans = {
        "act_base": (words["act"], engine.act_depth),
        "w_base": (words["weight"], engine.weight_depth),
        "out_base": (words["out"], engine.out_depth),
    }
    if op.bias:
        spans["bias_base"] = (words["bias"], engine.bias_depth)
    for field, (span, depth) in spans.items():
        if span.stop > depth:
            raise InputError(f"matrix {field}: span ends at word {span.stop}, buffer depth {depth}")


def matrix_words(op: MatrixFields) -> dict[str, range]:
    """Return the words of each buffer one MM/MV reads (act, weight, bias: empty without the
    bias flag) and writes (out)."""
    return {
        "act": range(op.act_base, op.act_base + op.tok_pairs * op.k_steps),
        "weight": range(op.w_base, op.w_base + op.row_tiles * op.k_steps),
        "bias": range(op.bias_base, op.bias_base + (op.row_tiles if op.bias else 0)),
        "out": range(op.out_base, op.out_base + op.tok_pairs * op.row_tiles),
    }


@dataclass(frozen=True)
class MatrixOp:
    """Carry the engine-level fields of one MM/MV instruction (see `MatrixFields`)."""

    n: int
    tok_pairs: int
    row_tiles: int
    k_steps: int
    act_base: int = 0
    w_base: int = 0
    bias_base: int = 0
    out_base: int = 0
    bias: bool = False
    accumulate: bool = False
    act: str = "none"


def plan_linear(
    engine: EngineParams, n: int, tokens: int, rows: int, k: int, **fields: object
) -> MatrixOp:
    """Return the MatrixOp computing y[tokens, rows] = x[tokens, k] @ w[rows, k].T (+ bias)."""
    engine.chain.check_mode(n)
    if n != DENSE_N and k % FLIGHTLLM_BLOCK:
        raise InputError(f"linear k={k}: must be a multiple of {FLIGHTLLM_BLOCK} in {n}:16 mode")
    return MatrixOp(
        n=n,
        tok_pairs=-(-tokens // 2),
        row_tiles=-(-rows // engine.rows_per_tile(n)),
        k_steps=-(-k // engine.k_per_step(n)),
        **fields,
    )


def weight_words(engine: EngineParams, op: MatrixFields, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return (values, indices) [row_tiles x k_steps, n_chains, chain_len] of the weight words
    that `op` multiplies for w [rows, k] (N:16 sparse in mode op.n; rows padded to whole row
    tiles, k to whole k steps): word rt x k_steps + s holds row tile rt, k step s."""
    ch, seg = engine.chain, engine.chain.segments(op.n)
    kstep = engine.k_per_step(op.n)
    rows_pad = op.row_tiles * engine.rows_per_tile(op.n)
    w_pad = _pad2(w, rows_pad, op.k_steps * kstep)
    if op.n == DENSE_N:
        vals, idx = w_pad.reshape(rows_pad, op.k_steps, kstep), np.zeros((1,), np.int64)
    else:
        vals, idx = _nm_compress(w_pad, op.n)
    shape = (op.row_tiles, engine.n_chains, seg, op.k_steps, ch.chain_len // seg)

    def tile(a: np.ndarray) -> np.ndarray:
        t = np.broadcast_to(a, vals.shape).reshape(shape).transpose(0, 3, 1, 2, 4)
        return t.reshape(op.row_tiles * op.k_steps, engine.n_chains, ch.chain_len)

    return tile(vals).astype(np.int8), tile(idx).astype(np.uint8)


def load_linear(
    engine: EngineParams,
    buf: EngineBuffers,
    op: MatrixOp,
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
) -> None:
    """Write x (INT8 [tokens, k]), w ([rows, k], N:16 sparse) and bias into `buf` for `op`."""
    seg = engine.chain.segments(op.n)
    kstep = engine.k_per_step(op.n)
    w_rows = slice(op.w_base, op.w_base + op.row_tiles * op.k_steps)
    buf.weight[w_rows], buf.index[w_rows] = weight_words(engine, op, w)
    x_pad = _pad2(x, op.tok_pairs * 2, op.k_steps * kstep)
    words = x_pad.reshape(op.tok_pairs, 2, op.k_steps, kstep).transpose(0, 2, 1, 3)
    a_rows = slice(op.act_base, op.act_base + op.tok_pairs * op.k_steps)
    buf.act[a_rows] = 0
    buf.act[a_rows, :, :kstep] = words.reshape(-1, 2, kstep)
    if bias is not None:
        b = np.zeros(op.row_tiles * engine.rows_per_tile(op.n), np.int64)
        b[: len(bias)] = bias
        b_rows = slice(op.bias_base, op.bias_base + op.row_tiles)
        buf.bias[b_rows, :, :seg] = b.reshape(op.row_tiles, engine.n_chains, seg)


def read_linear(
    engine: EngineParams, buf: EngineBuffers, op: MatrixOp, tokens: int, rows: int
) -> np.ndarray:
    """Return the int32 result [tokens, rows] that `op` left in the output buffer."""
    seg = engine.chain.segments(op.n)
    words = buf.out[op.out_base : op.out_base + op.tok_pairs * op.row_tiles, :, :, :seg]
    y = words.reshape(op.tok_pairs, op.row_tiles, 2, engine.n_chains, seg)
    y = y.transpose(0, 2, 1, 3, 4).reshape(op.tok_pairs * 2, -1)
    return y[:tokens, :rows]


def _pad2(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    out = np.zeros((rows, cols), np.int64)
    out[: a.shape[0], : a.shape[1]] = a
    return out


def _nm_compress(w_pad: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (values, indices) [rows, blocks, n] of the non-zeros of each 16-block."""
    blocks = w_pad.reshape(w_pad.shape[0], -1, FLIGHTLLM_BLOCK)
    nnz = (blocks != 0).sum(axis=-1)
    if (nnz > n).any():
        raise InputError(f"weights: a 16-block holds {nnz.max()} non-zeros, more than N={n}")
    order = np.argsort(blocks == 0, axis=-1, kind="stable")[..., :n]
    vals = np.take_along_axis(blocks, order, axis=-1)
    return vals, np.where(vals != 0, order, 0)
