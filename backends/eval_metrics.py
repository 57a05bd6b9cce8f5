"""Accuracy metrics of `sparseflow eval`: pure functions and accumulators over numpy arrays.

Decoders: perplexity over a sliding window. Windows of `window` tokens start every `stride`
tokens (stride < window, so windows overlap); the last one ends at the last token. Each token
after the first is predicted exactly once, in the first window that covers it as a target, so
every prediction but those of the first window sees at least `window - stride` tokens of
context (Hugging Face's "perplexity of fixed-length models" recipe). Perplexity = exp(mean
negative log-likelihood of the targets). Top-1 agreement: the fraction of targets where the
compressed model's most likely next token is the uncompressed model's.

Encoders: cosine similarity of each sentence's embedding (compressed vs uncompressed), and
nearest-neighbour agreement: the fraction of sentences whose most similar other sentence
(cosine) is the same under both models.

Per-layer error: ||a - b|| / ||b|| of a layer's output over all evaluated tokens.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def sliding_windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Return (start, first scored position) per window over `n_tokens` tokens; a window's
    logits at positions first..window-2 predict the tokens that follow them."""
    if not 0 < stride < window <= n_tokens:
        raise ValueError(f"need 0 < stride {stride} < window {window} <= tokens {n_tokens}")
    starts = list(range(0, n_tokens - window + 1, stride))
    if starts[-1] != n_tokens - window:
        starts.append(n_tokens - window)
    windows, scored_until = [], 0  # token index of the last target scored so far
    for start in starts:
        windows.append((start, scored_until - start))
        scored_until = start + window - 1
    return windows


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Return log-probabilities over the last axis (float64)."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class NextTokenScore:
    """Accumulate next-token statistics of a dense and a compressed model over windows."""

    def __init__(self) -> None:
        self.targets = 0
        self.nll = {"dense": 0.0, "compressed": 0.0}
        self.correct = {"dense": 0, "compressed": 0}
        self.agree = 0

    def add(self, dense: np.ndarray, compressed: np.ndarray, targets: np.ndarray) -> None:
        """Add the logits [P, V] of both models at P positions and the P true next tokens."""
        rows = np.arange(len(targets))
        tops = {}
        for name, logits in (("dense", dense), ("compressed", compressed)):
            self.nll[name] -= float(log_softmax(logits)[rows, targets].sum())
            tops[name] = logits.argmax(axis=-1)
            self.correct[name] += int((tops[name] == targets).sum())
        self.agree += int((tops["dense"] == tops["compressed"]).sum())
        self.targets += len(targets)

    def result(self) -> dict:
        """Return perplexities, top-1 accuracies and top-1 agreement."""
        n = max(self.targets, 1)
        return {
            "scored_tokens": self.targets,
            "perplexity_dense": float(np.exp(self.nll["dense"] / n)),
            "perplexity": float(np.exp(self.nll["compressed"] / n)),
            "top1_agreement": self.agree / n,
            "top1_accuracy_dense": self.correct["dense"] / n,
            "top1_accuracy": self.correct["compressed"] / n,
        }


def embedding_agreement(dense: np.ndarray, compressed: np.ndarray) -> dict:
    """Return cosine similarity per sentence (mean, min) and nearest-neighbour agreement of
    sentence embeddings [S, H] (S >= 2) of both models."""
    cosines = _unit(dense) @ _unit(compressed).T
    per_sentence = np.diag(cosines)
    return {
        "sentences": len(dense),
        "cosine_mean": float(per_sentence.mean()),
        "cosine_min": float(per_sentence.min()),
        "retrieval_agreement": float(np.mean(_nearest(dense) == _nearest(compressed))),
    }


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _nearest(embeddings: np.ndarray) -> np.ndarray:
    """Return each row's most similar other row by cosine."""
    similarity = _unit(embeddings) @ _unit(embeddings).T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


class RelativeError:
    """Accumulate ||a - b|| / ||b|| per named value over many runs."""

    def __init__(self) -> None:
        self.squares: dict[str, list[float]] = {}

    def add(self, actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> None:
        """Add one run's values (same names in both mappings)."""
        for name, b in expected.items():
            a64, b64 = actual[name].astype(np.float64), b.astype(np.float64)
            sums = self.squares.setdefault(name, [0.0, 0.0])
            sums[0] += float(np.sum((a64 - b64) ** 2))
            sums[1] += float(np.sum(b64**2))

    def result(self) -> dict[str, float]:
        """Return the relative error of every value seen."""
        return {
            n: float(np.sqrt(d / r)) if r > 0 else float(np.sqrt(d))
            for n, (d, r) in self.squares.items()
        }
