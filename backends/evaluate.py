"""The accuracy pipeline behind `sparseflow eval`: a compressed model against its uncompressed
self on real text, run by the reference interpreter or a target's backend.

Requires a checkpoint folder (config.json, *.safetensors, tokenizer.json). Ensures one plain
dict per (model, recipe, text, target): decoders get the perplexity of both models over a
sliding window, top-1 next-token agreement and accuracy; encoders get the cosine similarity of
pooled sentence embeddings (mean, min) and nearest-neighbour agreement (`eval_metrics`); both
get the relative error of every layer's output, the weight bytes and the layer report.

Text: a UTF-8 file or, by default, the `evaluation` part of the built-in corpus
(`ir.models.text`). Calibrating passes (GPTQ, SmoothQuant, LLM.int8, the FP4 bias search, the
static KV scale) see `calibration_rows` rows of consecutive tokens of the calibration text
(default: the corpus's `calibration` part, disjoint from its evaluation part), each as long
as one evaluation window (decoders) or the model's longest input up to `window` (encoders).

With a target, the compressed model's metrics come from the target's own kernels (host-cpu
numba kernels, the bit-accurate u280 model, ...), the uncompressed model's from the reference;
per-layer errors are the reference's (compression error), and `logits_rel_error_vs_reference`
is the target against the reference of the same compressed graph (kernel error).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sparseflow.backends.eval_metrics import (
    NextTokenScore,
    RelativeError,
    embedding_agreement,
    sliding_windows,
)
from sparseflow.backends.pipeline import ModelPair, compress_model, is_encoder, layer_report
from sparseflow.backends.runner import GraphRunner
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Interpreter, prefill_inputs
from sparseflow.ir.models.text import corpus_text, read_text, split_sentences
from sparseflow.ir.models.tokenizer import TextTokenizer, load_pooling, load_tokenizer
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.manager import PassContext
from sparseflow.passes.recipe import Recipe


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate on: text files (None: the built-in corpus), target (None: the
    reference interpreter), window length and stride in tokens, and how much text to use."""

    text: str | None = None
    calibration_text: str | None = None
    target: str | None = None
    window: int = 128
    stride: int = 64
    max_tokens: int = 8192
    max_sentences: int = 256
    calibration_rows: int = 16
    seed: int = 0


@dataclass(frozen=True)
class _Runs:
    """The three ways one input runs: dense and compressed reference (head and every layer's
    output), and the target's runner (head only; None: the compressed reference)."""

    dense: Interpreter
    compressed: Interpreter
    target: GraphRunner | None
    graph: Graph
    head: str

    def run(self, ids: np.ndarray) -> tuple[dict, dict, np.ndarray]:
        """Return dense and compressed reference outputs and the target's head for `ids`."""
        inputs = prefill_inputs(self.graph, ids)
        dense, compressed = self.dense.run(inputs), self.compressed.run(inputs)
        out = self.target.run(inputs)[self.head] if self.target else compressed[self.head]
        return dense, compressed, out


def evaluate(model: str, recipe: Recipe, options: EvalOptions, progress: bool = False) -> dict:
    """Return the accuracy report of `model` compressed by `recipe` (see the module doc)."""
    folder = _checkpoint_folder(model)
    graph = load_model(model, "prefill")
    tokenizer = load_tokenizer(folder, graph)
    _check_sizes(options, tokenizer)
    text, calibration = _texts(options)
    encoder = is_encoder(model)
    row_len = min(options.window, tokenizer.max_tokens)
    ctx = PassContext(
        calibration_ids=_calibration_ids(tokenizer, calibration, row_len, options),
        seed=options.seed,
    )
    pair = compress_model(model, recipe, 1, functional=False, ctx=ctx)
    runs = _runs(pair, options, row_len)
    if encoder:
        metrics = _encoder_metrics(runs, tokenizer, folder, text, options, progress)
    else:
        metrics = _decoder_metrics(runs, tokenizer, text, options, progress)
    return _report(model, recipe, options, pair, text, calibration, metrics)


def _checkpoint_folder(model: str) -> Path:
    folder = Path(model)
    if not folder.is_dir():
        raise InputError(
            f"model {model!r}: eval needs a checkpoint folder (config.json, *.safetensors, "
            "tokenizer.json); built-in models have no tokenizer or trained weights"
        )
    return folder


def _check_sizes(options: EvalOptions, tokenizer: TextTokenizer) -> None:
    """Reject sizes out of range; the InputError names the option."""
    limits = {
        "--window": (options.window, 2, tokenizer.max_tokens),
        "--stride": (options.stride, 1, options.window - 1),
        "--max-tokens": (options.max_tokens, 2, None),
        "--max-sentences": (options.max_sentences, 2, None),
        "calibration_rows": (options.calibration_rows, 1, None),
    }
    for option, (value, low, high) in limits.items():
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise InputError(f"option {option}: must be in {bound}, got {value}")


def _texts(options: EvalOptions) -> tuple[tuple[str, str], tuple[str, str]]:
    """Return (label, text) of the evaluation and the calibration text."""
    text = _text(options.text, "evaluation")
    calibration = _text(options.calibration_text, "calibration")
    if text[1] == calibration[1]:
        raise InputError(
            f"calibration text {calibration[0]} is the evaluation text {text[0]}: "
            "give disjoint texts"
        )
    return text, calibration


def _text(path: str | None, split: str) -> tuple[str, str]:
    if path is None:
        return f"corpus:{split}", corpus_text(split)
    return path, read_text(path)


def _calibration_ids(
    tokenizer: TextTokenizer, calibration: tuple[str, str], length: int, options: EvalOptions
) -> np.ndarray:
    try:
        return tokenizer.rows(calibration[1], length, options.calibration_rows)
    except InputError as err:
        raise InputError(f"calibration text {calibration[0]}: {err}") from None


def _runs(pair: ModelPair, options: EvalOptions, row_len: int) -> _Runs:
    graph = pair.prefill
    head = graph.outputs[0]
    outputs = (head, *_layer_outputs(graph))
    target = _target_runner(pair, options.target, row_len) if options.target else None
    return _Runs(
        Interpreter(replace(pair.dense_prefill, outputs=outputs)),
        Interpreter(replace(graph, outputs=outputs)),
        target,
        graph,
        head,
    )


def _layer_outputs(graph: Graph) -> tuple[str, ...]:
    """Return each layer's output value (the last layer's may be the graph's output)."""
    layers = int(graph.meta_dict["num_layers"])
    names = [f"layers.{i}.out" for i in range(layers)]
    return tuple(n if n in graph else graph.outputs[0] for n in names)


def _target_runner(pair: ModelPair, target: str, prompt_len: int) -> GraphRunner:
    from sparseflow.backends.registry import CompileRequest, compile_model
    from sparseflow.hw_models.loader import load_hw

    hw = load_hw(target)
    request = CompileRequest(pair.prefill, pair.decode, hw, 1, prompt_len, 1)
    return compile_model(request).runners()[0]


def _decoder_metrics(
    runs: _Runs, tokenizer: TextTokenizer, text: tuple[str, str], opts: EvalOptions, bar: bool
) -> dict:
    ids = tokenizer.stream(text[1])[: opts.max_tokens]
    if ids.size < opts.window:
        raise InputError(
            f"text {text[0]}: {ids.size} tokens, fewer than one window of {opts.window}"
        )
    score, layers, kernel = NextTokenScore(), RelativeError(), RelativeError()
    windows = sliding_windows(ids.size, opts.window, opts.stride)
    for start, first in tqdm(windows, desc="eval", unit="window", disable=not bar, leave=False):
        dense, compressed, out = runs.run(ids[None, start : start + opts.window])
        targets = ids[start + first + 1 : start + opts.window]
        score.add(dense[runs.head][0, first:-1], out[0, first:-1], targets)
        _add_errors(layers, kernel, runs, dense, compressed, out)
    return {
        "window": opts.window,
        "stride": opts.stride,
        "windows": len(windows),
        "uniform_perplexity": int(runs.graph.meta_dict["vocab_size"]),
        **score.result(),
        **_errors(layers, kernel, runs),
    }


def _encoder_metrics(
    runs: _Runs,
    tokenizer: TextTokenizer,
    folder: Path,
    text: tuple[str, str],
    opts: EvalOptions,
    bar: bool,
) -> dict:
    sentences = split_sentences(text[1])[: opts.max_sentences]
    if len(sentences) < 2:
        raise InputError(f"text {text[0]}: {len(sentences)} sentences, need at least 2")
    pooling = load_pooling(folder)
    layers, kernel = RelativeError(), RelativeError()
    embeddings: dict[str, list[np.ndarray]] = {"dense": [], "compressed": []}
    for sentence in tqdm(sentences, desc="eval", unit="sentence", disable=not bar, leave=False):
        dense, compressed, out = runs.run(tokenizer.sentence(sentence)[None])
        embeddings["dense"].append(pooling(dense[runs.head][0]))
        embeddings["compressed"].append(pooling(out[0]))
        _add_errors(layers, kernel, runs, dense, compressed, out)
    agreement = embedding_agreement(
        np.stack(embeddings["dense"]), np.stack(embeddings["compressed"])
    )
    return {
        "pooling": pooling.mode,
        "normalized": pooling.normalize,
        **agreement,
        **_errors(layers, kernel, runs),
    }


def _add_errors(
    layers: RelativeError,
    kernel: RelativeError,
    runs: _Runs,
    dense: dict,
    compressed: dict,
    out: np.ndarray,
) -> None:
    layers.add(compressed, dense)
    if runs.target is not None:
        kernel.add({runs.head: out}, {runs.head: compressed[runs.head]})


def _errors(layers: RelativeError, kernel: RelativeError, runs: _Runs) -> dict:
    errors = layers.result()
    names = _layer_outputs(runs.graph)
    result = {
        "layer_errors": [{"layer": i, "rel_error": errors[n]} for i, n in enumerate(names)],
        "output_rel_error_vs_dense": errors[runs.head],
    }
    if runs.target is not None:
        result["output_rel_error_vs_reference"] = kernel.result()[runs.head]
    return result


def _report(
    model: str,
    recipe: Recipe,
    options: EvalOptions,
    pair: ModelPair,
    text: tuple[str, str],
    calibration: tuple[str, str],
    metrics: dict,
) -> dict:
    rows = layer_report(pair.dense_prefill, pair.prefill)
    dense_bytes = sum(
        r["weight_bytes"] for r in layer_report(pair.dense_prefill, pair.dense_prefill)
    )
    total = sum(r["weight_bytes"] for r in rows)
    return {
        "model": model,
        "recipe": recipe.name,
        "target": options.target or "reference",
        "kind": "encoder" if pair.decode is None else "decoder",
        "text": text[0],
        "calibration_text": calibration[0],
        **metrics,
        "weight_bytes": total,
        "dense_weight_bytes": dense_bytes,
        "compression_ratio": dense_bytes / total if total else 0.0,
        "notes": [f"{r['name']}: {r['note']}" for r in rows if "note" in r],
        "layers": rows,
    }
