"""Pack engine buffers (engine_model.EngineBuffers) into the RTL's bit vectors and back.

Layouts are those stated in sf_matrix_engine.sv: element i of a packed vector sits at bits
[(i + 1) * bits - 1 : i * bits], two's complement.
"""

from __future__ import annotations

import numpy as np

from sparseflow.backends.fpga.engine_model import ACC_BITS, ACT_BITS, INDEX_BITS, EngineParams


def pack(values: np.ndarray, bits: int) -> int:
    """Return the flattened signed/unsigned `values` packed `bits` each, element 0 lowest."""
    mask = (1 << bits) - 1
    word = 0
    for i, v in enumerate(np.asarray(values).ravel().tolist()):
        word |= (int(v) & mask) << (i * bits)
    return word


def unpack_signed(word: int, count: int, bits: int) -> np.ndarray:
    """Return `count` signed `bits`-wide elements of `word`, element 0 lowest."""
    mask, half = (1 << bits) - 1, 1 << (bits - 1)
    vals = [(word >> (i * bits)) & mask for i in range(count)]
    return np.array([v - (1 << bits) if v >= half else v for v in vals], dtype=np.int64)


def act_word(act_row: np.ndarray) -> int:
    """Return one activation word: lane 0's elements, then lane 1's (INT8)."""
    return pack(act_row, ACT_BITS)


def weight_word(engine: EngineParams, weight_row: np.ndarray, index_row: np.ndarray) -> int:
    """Return one weight word: all weights (chain-major), then all 4-bit indices."""
    n_weights = engine.n_chains * engine.chain.chain_len
    weights = pack(weight_row, engine.chain.wbits)
    return weights | pack(index_row, INDEX_BITS) << (n_weights * engine.chain.wbits)


def bias_word(bias_row: np.ndarray) -> int:
    """Return one bias word: int32 per (chain, segment)."""
    return pack(bias_row, ACC_BITS)


def out_row(engine: EngineParams, word: int) -> np.ndarray:
    """Return one output word as int32 [2 lanes, n_chains, max_segments]."""
    shape = (2, engine.n_chains, engine.chain.max_segments)
    return unpack_signed(word, int(np.prod(shape)), ACC_BITS).reshape(shape)
