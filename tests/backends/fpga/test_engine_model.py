"""Check the DSP-chain / matrix-engine model against plain numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from sparseflow.backends.fpga import engine_model as em
from sparseflow.ir.dtypes import symmetric_scale
from sparseflow.ir.errors import InputError
from sparseflow.ir.ops_linear import exact_dot

CHAIN_CASES = [(2, 2, 8), (4, 4, 4), (6, 16, 8), (8, 2, 8), (16, 4, 4), (32, 8, 8)]


def random_nm_weights(rng: np.random.Generator, rows: int, k: int, n: int, wbits: int):
    """Return [rows, k] weights with at most n non-zeros per 16-block (all kept if n=16)."""
    lo, hi = -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1
    w = rng.integers(lo, hi + 1, size=(rows, k))
    if n < 16:
        keep = rng.random((rows, k // 16, 16)).argsort(axis=-1) < n
        keep &= rng.random(keep.shape) < 0.9  # some blocks hold fewer than n
        w = w * keep.reshape(rows, k)
    return w


def reference_chain(ch: em.ChainParams, n: int, w, idx, act0, act1) -> np.ndarray:
    """Return the per-segment dot products, computed directly in int64."""
    seg = ch.segments(n)
    sel = np.arange(ch.chain_len)[None] if n == 16 else idx
    out = np.zeros((w.shape[0], 2, seg), np.int64)
    for lane, act in enumerate((act0, act1)):
        picked = np.take_along_axis(act.astype(np.int64), np.broadcast_to(sel, w.shape), 1)
        prods = picked * w
        out[:, lane] = prods.reshape(w.shape[0], seg, -1).sum(-1)
    return out


@pytest.mark.parametrize(("chain_len", "min_n", "wbits"), CHAIN_CASES)
def test_chain_matches_dot_products(chain_len: int, min_n: int, wbits: int) -> None:
    ch = em.ChainParams(chain_len, min_n, wbits)
    rng = np.random.default_rng(chain_len * 100 + min_n)
    steps = 200
    for n in [m for m in (2, 4, 8, 16) if ch.supports(m)]:
        lim = 1 << (wbits - 1)
        w = rng.integers(-lim, lim, size=(steps, chain_len))
        idx = rng.integers(0, 16, size=(steps, chain_len))
        act0 = rng.integers(-128, 128, size=(steps, ch.act_width))
        act1 = rng.integers(-128, 128, size=(steps, ch.act_width))
        got = em.chain_steps(ch, n, w, idx, act0, act1)
        np.testing.assert_array_equal(got, reference_chain(ch, n, w, idx, act0, act1))


@pytest.mark.parametrize("a_lo", [-128, -1, 0, 1, 127])
def test_chain_lane_split_corners(a_lo: int) -> None:
    """Exercise the WP486 sign correction at the extreme INT8 values."""
    ch = em.ChainParams(4, 2, 8)
    for a_hi in (-128, -1, 0, 127):
        for w_val in (-128, -1, 1, 127):
            w = np.full((1, 4), w_val)
            act0 = np.full((1, 16), a_lo)
            act1 = np.full((1, 16), a_hi)
            got = em.chain_steps(ch, 16, w, np.zeros((1, 4), int), act0, act1)
            assert got[0, 0, 0] == 4 * a_lo * w_val
            assert got[0, 1, 0] == 4 * a_hi * w_val


LINEAR_CASES = [
    # chain_len, min_n, wbits, n_chains, n, tokens, rows, k
    (8, 2, 8, 2, 16, 3, 5, 20),
    (8, 2, 8, 2, 2, 5, 19, 48),
    (8, 2, 4, 1, 4, 1, 7, 32),
    (16, 8, 4, 3, 8, 4, 13, 64),
    (6, 16, 8, 2, 16, 2, 3, 13),
]


@pytest.mark.parametrize("case", LINEAR_CASES)
def test_linear_matches_matmul(case: tuple[int, ...]) -> None:
    chain_len, min_n, wbits, n_chains, n, tokens, rows, k = case
    engine = em.EngineParams(em.ChainParams(chain_len, min_n, wbits), n_chains)
    rng = np.random.default_rng(sum(case))
    x = rng.integers(-128, 128, size=(tokens, k))
    w = random_nm_weights(rng, rows, k, n, wbits)
    bias = rng.integers(-(1 << 20), 1 << 20, size=rows)
    op = em.plan_linear(engine, n, tokens, rows, k, w_base=3, out_base=5, bias_base=1, bias=True)
    buf = em.EngineBuffers.zeros(engine)
    em.load_linear(engine, buf, op, x, w, bias)
    em.execute_matrix(op, engine, buf)
    expected = x.astype(np.int64) @ w.T.astype(np.int64) + bias
    np.testing.assert_array_equal(em.read_linear(engine, buf, op, tokens, rows), expected)


def test_int32_wraps_and_accumulate_and_relu() -> None:
    engine = em.EngineParams(em.ChainParams(4, 4, 8), 1)
    x = np.full((2, 16), 127)
    w = np.full((2, 16), 127)
    w[1] = -127
    bias = np.array([2**31 - 1, -(2**31)])
    op = em.plan_linear(engine, 16, 2, 2, 16, bias=True)
    buf = em.EngineBuffers.zeros(engine)
    em.load_linear(engine, buf, op, x, w, bias)
    em.execute_matrix(op, engine, buf)
    dot = 16 * 127 * 127
    wrapped = [(2**31 - 1 + dot) - 2**32, -(2**31) - dot + 2**32]
    assert em.read_linear(engine, buf, op, 2, 2).tolist() == [wrapped, wrapped]
    acc = em.MatrixOp(**{**op.__dict__, "bias": False, "accumulate": True, "act": "relu"})
    em.execute_matrix(acc, engine, buf)
    twice = [max(0, v + dot) if i == 0 else max(0, v - dot) for i, v in enumerate(wrapped)]
    assert em.read_linear(engine, buf, op, 2, 2).tolist() == [twice, twice]


def test_cycles_count_every_stage() -> None:
    engine = em.EngineParams(em.ChainParams(8, 2, 8), 2)
    assert engine.chain.latency_cycles == 3 + 1 + 1 + 2  # slice regs, cascade, RN, 2 levels
    op = em.MatrixOp(n=2, tok_pairs=2, row_tiles=3, k_steps=4)
    assert em.matrix_cycles(op, engine) == 2 * 3 * 4 + 1 + 7 + 1
    bigger = em.MatrixOp(n=2, tok_pairs=2, row_tiles=3, k_steps=5)
    assert em.matrix_cycles(bigger, engine) - em.matrix_cycles(op, engine) == 6
    assert em.ChainParams(2).latency_cycles == 5  # one group: no tree level


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"chain_len": 3}, "chain_len=3"),
        ({"chain_len": 0}, "chain_len=0"),
        ({"chain_len": 8, "min_n": 3}, "N=3"),
        ({"chain_len": 6, "min_n": 4}, "chain_len=6"),
        ({"chain_len": 8, "wbits": 6}, "wbits=6"),
    ],
)
def test_bad_chain_params(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError, match=field):
        em.ChainParams(**kwargs)


def test_bad_ops_are_rejected() -> None:
    engine = em.EngineParams(em.ChainParams(8, 4, 8), 1, act_depth=8)
    with pytest.raises(InputError, match="2:16"):
        em.matrix_cycles(em.MatrixOp(n=2, tok_pairs=1, row_tiles=1, k_steps=1), engine)
    with pytest.raises(InputError, match="act_base"):
        op = em.MatrixOp(n=4, tok_pairs=2, row_tiles=1, k_steps=5)
        em.execute_matrix(op, engine, em.EngineBuffers.zeros(engine))
    with pytest.raises(InputError, match="silu"):
        op = em.MatrixOp(n=4, tok_pairs=1, row_tiles=1, k_steps=1, act="silu")
        em.execute_matrix(op, engine, em.EngineBuffers.zeros(engine))
    op = em.plan_linear(engine, 4, 1, 2, 16)
    dense_w = np.ones((2, 16), int)
    with pytest.raises(InputError, match="more than N=4"):
        em.load_linear(engine, em.EngineBuffers.zeros(engine), op, np.ones((1, 16)), dense_w)
    with pytest.raises(InputError, match="k=20"):
        em.plan_linear(engine, 4, 1, 2, 20)


def test_dequantized_sums_equal_the_exact_dot_of_dequantized_operands() -> None:
    """DEQUANT multiplies the int32 sum once by (token scale x row scale): with 11-bit scales
    that is the exact dot product of the dequantized operands rounded once, which the
    reference computes (`exact_dot`); with float32 scales, two roundings apart it is not."""
    rng = np.random.default_rng(4)
    x = rng.integers(-127, 128, (16, 768))
    w = rng.integers(-7, 8, (512, 768))
    absmax_x = rng.random(16).astype(np.float32) * 8 + 0.01
    absmax_w = rng.random(512).astype(np.float32) * 0.2 + 0.001
    sums = x @ w.T
    for scale, equal in ((symmetric_scale, True), (lambda a, q: (a / q).astype(np.float32), False)):
        sx, sw = scale(absmax_x, 127), scale(absmax_w, 7)
        expected = exact_dot(x * sx[:, None], w * sw[:, None])
        got = em.dequantize(sums, sx[:, None] * sw[None, :])
        assert np.array_equal(got, expected) == equal
