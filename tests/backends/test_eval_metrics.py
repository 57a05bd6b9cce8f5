"""Accuracy metrics against independent computations on random data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparseflow.backends.eval_metrics import (
    NextTokenScore,
    RelativeError,
    embedding_agreement,
    log_softmax,
    sliding_windows,
)


@pytest.mark.parametrize(
    "n_tokens, window, stride", [(10, 10, 5), (11, 4, 2), (100, 16, 15), (37, 8, 3), (50, 12, 1)]
)
def test_every_token_after_the_first_is_scored_once_with_enough_context(n_tokens, window, stride):
    targets = []
    for start, first in sliding_windows(n_tokens, window, stride):
        assert 0 <= start <= n_tokens - window and 0 <= first <= window - 1
        scored = range(start + first + 1, start + window)
        assert start == 0 or first + 1 >= window - stride  # context of the first new target
        targets += list(scored)
    assert targets == list(range(1, n_tokens))


def test_window_larger_than_text_is_refused():
    with pytest.raises(ValueError, match="window 9 <= tokens 8"):
        sliding_windows(8, 9, 4)


def test_next_token_score_matches_torch_cross_entropy():
    rng = np.random.default_rng(0)
    score = NextTokenScore()
    chunks = []
    for positions in (5, 9, 1):
        dense = rng.normal(size=(positions, 50)).astype(np.float32) * 3
        compressed = dense + rng.normal(size=dense.shape).astype(np.float32)
        targets = rng.integers(0, 50, positions)
        score.add(dense, compressed, targets)
        chunks.append((dense, compressed, targets))
    dense, compressed, targets = (np.concatenate(c) for c in zip(*chunks, strict=True))
    result = score.result()

    def perplexity(logits):
        loss = torch.nn.functional.cross_entropy(
            torch.from_numpy(logits).double(), torch.from_numpy(targets)
        )
        return float(torch.exp(loss))

    assert result["scored_tokens"] == 15
    assert result["perplexity_dense"] == pytest.approx(perplexity(dense), rel=1e-9)
    assert result["perplexity"] == pytest.approx(perplexity(compressed), rel=1e-9)
    agree = np.mean(dense.argmax(1) == compressed.argmax(1))
    assert result["top1_agreement"] == pytest.approx(agree)
    assert result["top1_accuracy"] == pytest.approx(np.mean(compressed.argmax(1) == targets))


def test_log_softmax_is_stable_for_large_logits():
    logits = np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32)
    np.testing.assert_allclose(np.exp(log_softmax(logits)).sum(), 1.0)
    assert log_softmax(logits)[0, 0] == pytest.approx(0.0)


def test_embedding_agreement_by_brute_force():
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(12, 6))
    compressed = dense + 0.3 * rng.normal(size=dense.shape)
    result = embedding_agreement(dense, 5 * compressed)  # cosine ignores scale

    def cos(a, b):
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    cosines = [cos(d, c) for d, c in zip(dense, compressed, strict=True)]
    assert result["cosine_mean"] == pytest.approx(np.mean(cosines))
    assert result["cosine_min"] == pytest.approx(np.min(cosines))

    def nearest(x, i):
        return max((j for j in range(len(x)) if j != i), key=lambda j: cos(x[i], x[j]))

    same = [nearest(dense, i) == nearest(compressed, i) for i in range(len(dense))]
    assert result["retrieval_agreement"] == pytest.approx(np.mean(same))
    assert embedding_agreement(dense, dense)["retrieval_agreement"] == 1.0


def test_relative_error_accumulates_over_runs():
    rng = np.random.default_rng(2)
    a = [rng.normal(size=(3, 4)) for _ in range(3)]
    b = [x + 0.1 * rng.normal(size=x.shape) for x in a]
    errors = RelativeError()
    for x, y in zip(a, b, strict=True):
        errors.add({"v": x}, {"v": y})
    expected = np.linalg.norm(np.concatenate(a) - np.concatenate(b)) / np.linalg.norm(
        np.concatenate(b)
    )
    assert errors.result()["v"] == pytest.approx(expected)


def test_windows_must_overlap():
    with pytest.raises(ValueError, match="stride 8 < window 8"):
        sliding_windows(20, 8, 8)
