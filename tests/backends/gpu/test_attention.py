"""Check flash-decoding attention (split KV, online-softmax merge, GQA) against numpy."""

import numpy as np
import pytest

from sparseflow.backends.gpu.attention import decode_attention
from sparseflow.ir.errors import InputError


def _reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    batch, heads, dim = q.shape
    group = heads // k.shape[1]
    out = np.zeros((batch, heads, dim))
    for b in range(batch):
        for h in range(heads):
            keys = k[b, h // group, : lengths[b]].astype(np.float64)
            values = v[b, h // group, : lengths[b]].astype(np.float64)
            scores = keys @ q[b, h].astype(np.float64) / np.sqrt(dim)
            p = np.exp(scores - scores.max())
            out[b, h] = (p / p.sum()) @ values
    return out


def _case(seed: int, batch: int, heads: int, kv_heads: int, capacity: int, dim: int) -> tuple:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((batch, heads, dim)).astype(np.float32)
    k = rng.standard_normal((batch, kv_heads, capacity, dim)).astype(np.float32)
    v = rng.standard_normal((batch, kv_heads, capacity, dim)).astype(np.float32)
    lengths = rng.integers(1, capacity + 1, size=batch)
    lengths[0] = capacity
    return q, k, v, lengths


@pytest.mark.parametrize(
    ("batch", "heads", "kv_heads", "capacity", "dim", "chunk"),
    [
        (2, 4, 2, 37, 8, 8),  # GQA, ragged last split, second sequence shorter
        (1, 1, 1, 1, 1, 4),  # n = 1 everywhere
        (3, 4, 1, 20, 5, 4),  # MQA, odd head dim, many splits
        (1, 3, 3, 70, 6, 16),  # MHA, long cache relative to the chunk
    ],
)
def test_decode_attention_matches_numpy(
    batch: int, heads: int, kv_heads: int, capacity: int, dim: int, chunk: int
) -> None:
    q, k, v, lengths = _case(capacity + dim, batch, heads, kv_heads, capacity, dim)
    y = decode_attention(q, k, v, lengths, chunk=chunk, threads=4)
    np.testing.assert_allclose(y, _reference(q, k, v, lengths), rtol=1e-5, atol=1e-5)


def test_decode_attention_split_size_does_not_change_result() -> None:
    q, k, v, lengths = _case(5, 2, 2, 1, 33, 4)
    lengths[1] = 3  # the second sequence leaves most splits empty
    one_split = decode_attention(q, k, v, lengths, chunk=64, threads=2)
    many = decode_attention(q, k, v, lengths, chunk=4, threads=2)
    np.testing.assert_allclose(many, one_split, rtol=1e-5, atol=1e-6)


def test_decode_attention_fp16_cache_and_explicit_scale() -> None:
    q, k, v, lengths = _case(9, 1, 2, 2, 12, 4)
    q16, k16, v16 = (a.astype(np.float16) for a in (q, k, v))
    y = decode_attention(q16, k16, v16, lengths, scale=0.25, chunk=4, threads=2)
    # The reference divides by sqrt(D) = 2, so halving q gives the requested scale 0.25.
    expected = _reference(q16 * np.float16(0.5), k16, v16, lengths)
    np.testing.assert_allclose(y, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("index", "bad", "message"),
    [
        (1, np.ones((1, 3, 5, 2), np.float32), "3 KV heads do not divide 4"),
        (3, np.array([6]), r"lengths: values must lie in \[1, 5\]"),
        (3, np.array([0]), r"lengths: values must lie in \[1, 5\]"),
        (2, np.ones((1, 2, 4, 2), np.float32), r"v_cache: shape \(1, 2, 4, 2\)"),
        (0, np.ones((1, 4, 3), np.float32), r"k_cache: shape \(1, 2, 5, 2\), expected"),
    ],
)
def test_decode_attention_rejects_bad_input(index: int, bad: np.ndarray, message: str) -> None:
    args = [
        np.ones((1, 4, 2), np.float32),
        np.ones((1, 2, 5, 2), np.float32),
        np.ones((1, 2, 5, 2), np.float32),
        np.array([5]),
    ]
    args[index] = bad
    with pytest.raises(InputError, match=message):
        decode_attention(*args)
