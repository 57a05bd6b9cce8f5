"""Run one request on any graph runner: prefill the prompt, then greedy decode with a KV cache.

A graph runner is anything with `run(inputs) -> outputs` over a graph's named inputs and
outputs: the reference `Interpreter`, or a backend executor. Requires prefill graphs with inputs
`ids` [B, T] and `pos` [T] (plus `token_types` for BERT) whose first output is the logits (or the
hidden states of an encoder); decode graphs take `ids` [B, 1], `pos` [1] and one `past_<name>`
input per cache output `<name>` of the previous step. Ensures the generated tokens, the logits of
every step, and the measured seconds of prefill and decode.

Comparing two runners (backend vs reference, compressed vs dense) feeds both the same tokens
(`forced`), so their logits differ only by what the runners compute.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tqdm import tqdm

from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Interpreter, prefill_inputs

CACHE_PREFIX = "past_"


class GraphRunner(Protocol):
    """Something that runs a graph on named numpy inputs."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class Generation:
    """One request's result: generated ids [B, gen], logits per step, measured seconds."""

    tokens: np.ndarray
    logits: tuple[np.ndarray, ...]
    prefill_s: float
    decode_s: float

    @property
    def decode_tokens_per_s(self) -> float:
        """Return generated tokens per second of decode time (prefill excluded)."""
        steps = len(self.logits) - 1
        if steps == 0 or self.decode_s <= 0:
            return 0.0
        return self.tokens.shape[0] * steps / self.decode_s

    def all_logits(self) -> np.ndarray:
        """Return every step's logits flattened into one vector."""
        return np.concatenate([np.ravel(x) for x in self.logits])


def check_request(batch: int, prompt_len: int, gen_len: int = 0, min_gen_len: int = 0) -> None:
    """Reject request sizes out of range; the InputError names the option and field.

    A request needs one sequence and one prompt token; `gen_len` 0 runs the prefill alone
    (`run` and `compile` allow it), and callers that report decode steps pass `min_gen_len` 1.
    """
    sizes = (("--batch", "batch", batch, 1), ("--prompt", "prompt_len", prompt_len, 1))
    for option, field, value, low in (*sizes, ("--gen", "gen_len", gen_len, min_gen_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            problem = f"must be an integer >= {low}, got {value!r}"
            raise InputError(f"option {option} ({field}): {problem}")


def prompt_ids(vocab_size: int, batch: int, prompt_len: int, seed: int = 0) -> np.ndarray:
    """Return seeded random prompt token ids [batch, prompt_len]."""
    check_request(batch, prompt_len)
    return np.random.default_rng(seed).integers(0, vocab_size, (batch, prompt_len))


def generate(
    prefill: GraphRunner,
    decode: GraphRunner | None,
    prefill_graph: Graph,
    ids: np.ndarray,
    gen_len: int,
    forced: np.ndarray | None = None,
    progress: bool = False,
) -> Generation:
    """Prefill `ids` [B, P], then decode greedily `gen_len` tokens (or feed `forced` ones).

    The first token comes from the prefill logits; each decode step feeds the previous token.
    An encoder (no decode runner) runs the prefill alone. `progress` shows a bar over the
    prefill and the decode steps on a terminal.
    """
    batch, prompt_len = ids.shape
    steps = gen_len if decode is not None else 1
    with tqdm(total=max(steps, 1), desc="prefill", disable=not progress, leave=False) as bar:
        start = time.perf_counter()
        outputs = prefill.run(prefill_inputs(prefill_graph, ids))
        prefill_s = time.perf_counter() - start
        bar.update(1)
        bar.set_description("decode")
        head = prefill_graph.outputs[0]
        logits = [outputs[head]]
        if decode is None or gen_len == 0:
            return Generation(np.zeros((batch, 0), np.int64), tuple(logits), prefill_s, 0.0)
        tokens = [_next_token(outputs[head], forced, 0)]
        caches = {CACHE_PREFIX + k: v for k, v in outputs.items() if k != head}
        start = time.perf_counter()
        for step in range(1, gen_len):
            feed = {"ids": tokens[-1][:, None], "pos": np.array([prompt_len + step - 1]), **caches}
            outputs = decode.run(feed)
            logits.append(outputs[head])
            tokens.append(_next_token(outputs[head], forced, step))
            caches = {CACHE_PREFIX + k: v for k, v in outputs.items() if k != head}
            bar.update(1)
        decode_s = time.perf_counter() - start
    return Generation(np.stack(tokens, axis=1), tuple(logits), prefill_s, decode_s)


def generate_reference(
    prefill: Graph,
    decode: Graph | None,
    ids: np.ndarray,
    gen_len: int,
    forced: np.ndarray | None = None,
    progress: bool = False,
) -> Generation:
    """Run `generate` with the numpy reference interpreter on both phases."""
    decode_runner = Interpreter(decode) if decode is not None else None
    return generate(Interpreter(prefill), decode_runner, prefill, ids, gen_len, forced, progress)


def _next_token(logits: np.ndarray, forced: np.ndarray | None, step: int) -> np.ndarray:
    if forced is not None:
        return forced[:, step]
    return np.argmax(logits[:, -1, :], axis=-1)


def rel_error(actual: Generation | np.ndarray, expected: Generation | np.ndarray) -> float:
    """Return ||a - b|| / ||b|| over all logits (DESIGN.md's relative error)."""
    a = actual.all_logits() if isinstance(actual, Generation) else np.ravel(actual)
    b = expected.all_logits() if isinstance(expected, Generation) else np.ravel(expected)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norm = float(np.linalg.norm(b64))
    return float(np.linalg.norm(a64 - b64) / norm) if norm > 0 else float(np.linalg.norm(a64))
