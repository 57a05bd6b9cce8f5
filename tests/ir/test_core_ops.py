"""Every registered op has type inference, cost and a reference that agree with each other,
and the references match independent formulations on random data."""

import math

import numpy as np
import pytest

from sparseflow.ir.dims import eval_dim
from sparseflow.ir.dtypes import DType, symmetric_scale
from sparseflow.ir.errors import GraphError, InputError
from sparseflow.ir.ops import Op, all_ops, get_op, storage_bytes
from sparseflow.ir.types import (
    QuantParams,
    QuantScheme,
    SparseFormat,
    SparsePattern,
    TensorType,
)

F32, I64 = DType.F32, DType.I64


def t(*shape, dtype=F32):
    return TensorType(tuple(shape), dtype)


# One sample call per non-source op: (input types, attrs). Adding an op without a sample fails
# test_every_op_has_a_sample, so no op escapes the three-way check below.
SAMPLES = {
    "add": ([t(2, 3, 4), t(4)], {}),
    "mul": ([t(2, 3, 4), t(2, 3, 4)], {}),
    "scale": ([t(3, 5)], {"factor": 0.5}),
    "relu": ([t(3, 5)], {}),
    "silu": ([t(3, 5)], {}),
    "gelu": ([t(3, 5)], {"approximate": "tanh"}),
    "softmax": ([t(2, 3, 7)], {"axis": -1}),
    "layernorm": ([t(2, 3, 8), t(8), t(8)], {"eps": 1e-5}),
    "rmsnorm": ([t(2, 3, 8), t(8)], {"eps": 1e-6}),
    "quantize": ([t(3, 16)], {"bits": 8}),
    "cast": ([t(3, 16)], {"dtype": "f16"}),
    "embedding": ([t(2, 3, dtype=I64), t(11, 8)], {"offset": 0}),
    "linear": ([t(2, 3, 8), t(5, 8), t(5)], {}),
    "matmul": ([t(2, 3, 4, 8), t(2, 3, 6, 8)], {"transpose_b": True}),
    "rope": ([t(1, 2, 5, 8), t(5, dtype=I64)], {"theta": 10000.0}),
    "causal_mask": ([t(1, 2, 5, 5), t(5, dtype=I64)], {}),
    "reshape": ([t(2, 3, 8)], {"shape": [2, 3, 2, 4]}),
    "transpose": ([t(2, 3, 4)], {"perm": [2, 0, 1]}),
    "slice": ([t(2, 9, 4)], {"axis": 1, "start": 2, "stop": 7}),
    "concat": ([t(2, 3, 4), t(2, 5, 4)], {"axis": 1}),
    "kv_append": ([t(1, 2, 6, 4), t(1, 2, 1, 4)], {}),
    "repeat_kv": ([t(1, 2, 6, 4)], {"n_rep": 3}),
    "decode_attention": (
        [t(1, 4, 1, 8), t(1, 2, 6, 8), t(1, 2, 6, 8), t(1, dtype=I64)],
        {"n_rep": 2, "scale": 0.35},
    ),
    "sliding_window_mask": ([t(1, 2, 5, 5), t(5, dtype=I64)], {"window": 3}),
    "topk_gate": ([t(2, 3, 4)], {"k": 2, "normalize": True}),
    "expert_dispatch": ([t(2, 3, 8), t(2, 3, 4)], {"expert": 1}),
    "expert_combine": ([t(2, 3, 2), t("R0", 8), t("R1", 8)], {}),
    "all_reduce": ([t(2, 3, 8)], {"devices": 1}),
    "all_gather": ([t(2, 3, 8)], {"devices": 1, "axis": -1}),
}
# Symbolic sizes of the samples: random gates are never 0, so every expert gets all 6 tokens.
BINDINGS = {"R0": 6, "R1": 6}


def random_input(tensor_type, rng):
    shape = tuple(eval_dim(d, BINDINGS) for d in tensor_type.shape)
    if tensor_type.dtype is I64:
        return np.sort(rng.integers(0, min(shape[-1], 10), size=shape))
    return rng.standard_normal(shape).astype(np.float32)


def test_every_op_has_a_sample():
    names = {op.value for op in all_ops() if not op.is_source}
    assert names == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_infer_cost_reference_agree(name):
    op = get_op(name)
    ins, attrs = SAMPLES[name]
    out = op.infer_type(ins, tuple(attrs.items()), "n")
    cost = op.cost(ins, out, attrs, BINDINGS)
    assert cost.flops >= 0 and cost.bytes_written >= 0 and len(cost.bytes_read) == len(ins)
    rng = np.random.default_rng(0)
    result = op.reference([random_input(x, rng) for x in ins], attrs)
    assert result.shape == tuple(eval_dim(d, BINDINGS) for d in out.shape)
    assert np.isfinite(result).any()


def test_unknown_op_lists_known_ones():
    with pytest.raises(InputError, match="known: .*linear"):
        get_op("conv7d")


def test_type_errors_name_the_node():
    with pytest.raises(GraphError, match="%bad .*linear"):
        Op.LINEAR.infer_type([t(2, 8), t(5, 7)], (), "bad")
    with pytest.raises(GraphError, match="%r .*cannot reshape"):
        Op.RESHAPE.infer_type([t(2, 8)], (("shape", (3, 5)),), "r")


def run(name, *xs, **attrs):
    return get_op(name).reference(list(xs), attrs)


def test_softmax_layernorm_rmsnorm_match_formulas():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 9)).astype(np.float32) * 5
    p = run("softmax", x, axis=-1)
    np.testing.assert_allclose(p.sum(-1), 1, rtol=1e-6)
    np.testing.assert_allclose(p, np.exp(x) / np.exp(x).sum(-1, keepdims=True), rtol=1e-5)
    w, b = rng.standard_normal(9).astype(np.float32), rng.standard_normal(9).astype(np.float32)
    ln = run("layernorm", x, w, b, eps=1e-5)
    expect = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(ln, expect, rtol=1e-4, atol=1e-5)
    rms = run("rmsnorm", x, w, eps=1e-6)
    np.testing.assert_allclose(rms, x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * w, 1e-5)


def test_softmax_of_a_row_ignores_masked_padding():
    """A decode bucket's SFU softmax runs over the bucket's keys (the masked ones -inf), the
    reference over the position's: the probabilities must not depend on the padding (a
    float32 row sum changed in 4 of 10 rows with 26 zeros appended)."""
    rng = np.random.default_rng(2)
    for keys in (3, 100, 166, 300):
        x = rng.standard_normal((20, keys)).astype(np.float32) * 4
        padded = np.concatenate([x, np.full((20, 26), -np.inf, np.float32)], axis=1)
        assert np.array_equal(run("softmax", padded, axis=-1)[:, :keys], run("softmax", x, axis=-1))


def test_symmetric_scales_have_eleven_significant_bits():
    rng = np.random.default_rng(3)
    absmax = np.abs(rng.standard_normal(4000) * 10.0 ** rng.integers(-4, 4, 4000))
    absmax = absmax.astype(np.float32)
    scale = symmetric_scale(absmax, 127)
    mantissa, exponent = np.frexp(np.maximum(absmax, np.float32(1e-5)) / np.float32(127))
    expected = np.ldexp(np.round(mantissa * 2**11) / 2**11, exponent).astype(np.float32)
    assert scale.dtype == np.float32 and np.array_equal(scale, expected)
    assert np.all(np.abs(scale / (absmax / 127) - 1)[absmax > 1e-5] <= 2.0**-11)
    # what 11 bits buy: code x scale and scale x scale are exact in float32
    codes = rng.integers(-127, 128, 4000)
    exact = codes.astype(np.float64) * scale.astype(np.float64)
    assert np.array_equal((codes * scale).astype(np.float64), exact)
    square = scale.astype(np.float64) * scale[::-1].astype(np.float64)
    assert np.array_equal((scale * scale[::-1]).astype(np.float64), square)
    # ... which a float32 scale does not give
    plain = (absmax / np.float32(127)).astype(np.float32)
    plain_square = plain.astype(np.float64) * plain[::-1].astype(np.float64)
    assert not np.array_equal((plain * plain[::-1]).astype(np.float64), plain_square)


def test_gelu_matches_math_erf():
    x = np.linspace(-6, 6, 101).astype(np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(float)])
    np.testing.assert_allclose(run("gelu", x, approximate="none"), exact, atol=2e-6)
    tanh = run("gelu", x, approximate="tanh")
    np.testing.assert_allclose(tanh, exact, atol=2e-3)


def test_rope_equals_complex_rotation():
    """Rotate-half RoPE is a rotation of pairs (i, i + D/2) by angle pos * theta^(-2i/D)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 6, 8)).astype(np.float32)
    pos = np.array([0, 1, 2, 7, 8, 30])
    out = run("rope", x, pos, theta=10000.0)
    half = 4
    z = x[..., :half] + 1j * x[..., half:]
    freq = 10000.0 ** (-np.arange(half) * 2 / 8)
    rotated = z * np.exp(1j * pos[:, None] * freq[None, :])
    np.testing.assert_allclose(out[..., :half], rotated.real, atol=1e-5)
    np.testing.assert_allclose(out[..., half:], rotated.imag, atol=1e-5)


def test_causal_mask_hides_future_keys_only():
    scores = np.random.default_rng(3).standard_normal((1, 1, 3, 5)).astype(np.float32)
    pos = np.array([2, 3, 4])
    masked = run("causal_mask", scores, pos)
    for q, p in enumerate(pos):
        np.testing.assert_array_equal(masked[0, 0, q, : p + 1], scores[0, 0, q, : p + 1])
        assert (masked[0, 0, q, p + 1 :] == np.finfo(np.float32).min).all()


def test_repeat_kv_shares_heads_in_groups():
    x = np.random.default_rng(4).standard_normal((1, 2, 3, 4)).astype(np.float32)
    y = run("repeat_kv", x, n_rep=3)
    for head in range(6):
        np.testing.assert_array_equal(y[0, head], x[0, head // 3])


def test_quantize_is_within_half_a_step_per_token():
    x = np.random.default_rng(5).standard_normal((6, 32)).astype(np.float32) * 3
    q = run("quantize", x, bits=8)
    step = np.abs(x).max(-1, keepdims=True) / 127
    assert (np.abs(q - x) <= step / 2 + 1e-6).all()
    assert len(np.unique(np.round(q[0] / step[0]))) > 10


def test_static_quantize_uses_the_given_scale_and_clips():
    x = np.array([[0.26, -0.5, 3.0]], np.float32)
    q = run("quantize", x, np.array([0.01], np.float32), bits=8)
    np.testing.assert_allclose(q, [[0.26, -0.5, 1.27]], rtol=1e-6)


@pytest.mark.parametrize("dtype, bits", [("f16", 10), ("bf16", 7)])
def test_cast_rounds_to_the_mantissa_of_the_dtype(dtype, bits):
    x = np.random.default_rng(6).standard_normal(1000).astype(np.float32)
    y = run("cast", x, dtype=dtype)
    rel = np.abs(y - x) / np.abs(x)
    assert rel.max() <= 2.0 ** -(bits + 1) and rel.mean() > 0
    np.testing.assert_array_equal(run("cast", y, dtype=dtype), y)  # idempotent
    if dtype == "f16":
        np.testing.assert_array_equal(y, x.astype(np.float16).astype(np.float32))


def test_embedding_rejects_ids_out_of_range():
    with pytest.raises(InputError, match="out of range"):
        run("embedding", np.array([[0, 11]]), np.zeros((11, 2), np.float32))


def test_linear_reference_rounds_the_exact_sums_once():
    """INT8 activations x INT4 weights, each code times a float32 scale: every output is the
    exact sum of the products rounded once to float32, independent of summation order (a
    float32 BLAS misses some of these sums by a few ulps)."""
    rng = np.random.default_rng(0)
    x = rng.integers(-127, 128, (8, 768)) * np.float32(0.0317)
    w = rng.integers(-7, 8, (64, 768)) * rng.uniform(0.01, 0.1, (64, 1)).astype(np.float32)
    x, w = x.astype(np.float32), w.astype(np.float32)
    exact = [[math.fsum(np.float64(row) * col) for col in w.astype(np.float64)] for row in x]
    assert np.array_equal(run("linear", x, w), np.float32(exact))


def test_linear_cost_counts_sparse_flops_and_packed_bytes():
    x = t(1, 128, 4096)
    dense = t(4096, 4096)
    nm = dense.with_(
        sparse=SparseFormat(SparsePattern.NM, 0.5, n=8, m=16),
        quant=QuantParams(QuantScheme.INT, 4, "group", 128, symmetric=False),
    )
    op = Op.LINEAR
    out = op.infer_type([x, nm], (), "l")
    assert op.cost([x, dense], out, {}, {}).flops == 2 * 128 * 4096 * 4096
    assert op.cost([x, nm], out, {}, {}).flops == 128 * 4096 * 4096
    # values 4 bits + a u8 offset per kept weight, f32 scale + u8 zero per 128 weights
    elements = 4096 * 4096
    expect = elements * 0.5 * 12 / 8 + elements / 128 * 5
    assert storage_bytes(nm) == math.ceil(expect)


@pytest.mark.parametrize("window", [1, 2, 4, 9])
def test_sliding_window_mask_keeps_the_last_window_keys(window):
    scores = np.random.default_rng(7).standard_normal((2, 1, 4, 9)).astype(np.float32)
    pos = np.array([0, 3, 5, 8])
    masked = run("sliding_window_mask", scores, pos, window=window)
    for q, p in enumerate(pos):
        visible = [j for j in range(9) if p - window < j <= p]
        hidden = np.ones(9, bool)
        hidden[visible] = False
        np.testing.assert_array_equal(masked[:, 0, q, visible], scores[:, 0, q, visible])
        assert (masked[:, 0, q, hidden] == np.finfo(np.float32).min).all()
    if window >= 9:
        np.testing.assert_array_equal(masked, run("causal_mask", scores, pos))


def test_sliding_window_must_be_positive():
    with pytest.raises(GraphError, match="window"):
        Op.SLIDING_WINDOW_MASK.infer_type([t(1, 1, 2, 2), t(2, dtype=I64)], (("window", 0),), "w")


@pytest.mark.parametrize("experts, k, normalize", [(8, 2, True), (4, 1, True), (5, 3, False)])
def test_topk_gate_keeps_the_k_largest_probabilities(experts, k, normalize):
    logits = np.random.default_rng(8).standard_normal((3, 7, experts)).astype(np.float32) * 2
    gates = run("topk_gate", logits, k=k, normalize=normalize)
    for row, out in zip(logits.reshape(-1, experts), gates.reshape(-1, experts), strict=True):
        probs = np.exp(row.astype(np.float64)) / np.exp(row.astype(np.float64)).sum()
        top = sorted(range(experts), key=lambda e: -probs[e])[:k]
        expect = np.zeros(experts)
        expect[top] = probs[top] / (probs[top].sum() if normalize else 1)
        np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("tokens, experts, k", [(1, 8, 2), (6, 4, 2), (9, 3, 1)])
def test_dispatch_then_combine_equals_dense_weighted_sum(tokens, experts, k):
    """combine(gates, f_e(dispatch_e(x))) = sum_e gates[:, e] * f_e(x), f_e linear."""
    rng = np.random.default_rng(tokens)
    x = rng.standard_normal((1, tokens, 5)).astype(np.float32)
    gates = run("topk_gate", rng.standard_normal((1, tokens, experts)).astype(np.float32), k=k)
    maps = [rng.standard_normal((5, 5)).astype(np.float32) for _ in range(experts)]
    outputs = [run("expert_dispatch", x, gates, expert=e) @ maps[e] for e in range(experts)]
    assert sum(len(y) for y in outputs) == tokens * k
    assert any(len(y) == 0 for y in outputs) == (tokens * k < experts)
    combined = run("expert_combine", gates, *outputs)
    dense = sum(gates[..., e, None] * (x @ maps[e]) for e in range(experts))
    np.testing.assert_allclose(combined, dense, rtol=1e-5, atol=1e-6)


def test_expert_costs_count_routed_rows_only():
    x, gates = t(1, 4, 16), t(1, 4, 8)
    rows = Op.EXPERT_DISPATCH.infer_type([x, gates], (("expert", 3),), "d")
    assert rows.shape == ("R3", 16)
    assert Op.EXPERT_DISPATCH.cost([x, gates], rows, {"expert": 3}, {"R3": 0}).bytes_total == 0
    cost = Op.EXPERT_DISPATCH.cost([x, gates], rows, {"expert": 3}, {"R3": 2})
    assert cost.bytes_total == 2 * 2 * 16 * 4
    outs = [t(f"R{e}", 16) for e in range(8)]
    combined = Op.EXPERT_COMBINE.infer_type([gates, *outs], (), "c")
    routed = {f"R{e}": 1 if e < 2 else 0 for e in range(8)}
    assert Op.EXPERT_COMBINE.cost([gates, *outs], combined, {}, routed).flops == 2 * 2 * 16


def test_combine_needs_one_output_per_expert():
    with pytest.raises(GraphError, match="3 expert outputs for 4 gates"):
        Op.EXPERT_COMBINE.infer_type([t(1, 2, 4), *[t("R0", 8)] * 3], (), "c")


def test_collectives_sum_and_concatenate_every_device():
    rng = np.random.default_rng(9)
    parts = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3)]
    np.testing.assert_allclose(run("all_reduce", *parts, devices=3), parts[0] + parts[1] + parts[2])
    gathered = run("all_gather", *parts, devices=3, axis=-1)
    np.testing.assert_array_equal(gathered, np.concatenate(parts, axis=-1))
    assert Op.ALL_GATHER.infer_type([t(2, 3)], (("devices", 3),), "g").shape == (2, 9)
    with pytest.raises(InputError, match="every device"):
        run("all_reduce", parts[0], devices=3)
