"""A checkpoint's own tokenizer and sentence pooling, read from its folder.

`tokenizer.json` is the Hugging Face tokenizers format (read by the `tokenizers` library): the
same ids the checkpoint was trained on. Padding is turned off (every sequence runs at its own
length, so no attention mask is needed) and sequences are cut to the model's longest input:
`max_seq_length` of `sentence_bert_config.json` when the folder is a sentence-transformers
model, else the config's `max_positions`.

Sentence embeddings follow the sentence-transformers folder layout: `modules.json` lists the
modules in order; a `Pooling` module's `config.json` picks the pooling of the token states
(`pooling_mode_mean_tokens`, `_cls_token`, `_max_tokens`, `_mean_sqrt_len_tokens`) and a
`Normalize` module scales the result to unit length. A folder without `modules.json` gets
mean pooling without normalisation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph

_POOLING_MODES = ("mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens")


@dataclass(frozen=True)
class TextTokenizer:
    """A checkpoint's tokenizer: the `tokenizers` object, the special ids it puts before and
    after a text, and the longest sequence the model takes."""

    tokenizer: Tokenizer
    path: Path
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    max_tokens: int

    def stream(self, text: str) -> np.ndarray:
        """Return the ids of `text` without special tokens and without a length limit."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        return np.array(encoding.ids, dtype=np.int64)

    def sentence(self, text: str) -> np.ndarray:
        """Return the ids of one sentence with its special tokens, cut to `max_tokens`."""
        body = self.stream(text)[: self.max_tokens - len(self.prefix) - len(self.suffix)]
        return np.concatenate([self.prefix, body, self.suffix]).astype(np.int64)

    def rows(self, text: str, length: int, count: int) -> np.ndarray:
        """Return up to `count` rows [rows, length] of consecutive ids of `text`, each framed
        by the special tokens; InputError when the text fills no row."""
        body = length - len(self.prefix) - len(self.suffix)
        ids = self.stream(text)
        rows = min(count, ids.size // body) if body > 0 else 0
        if rows == 0:
            raise InputError(f"text has {ids.size} tokens, fewer than one row of {length}")
        chunks = ids[: rows * body].reshape(rows, body)
        framed = [
            np.broadcast_to(np.array(p, np.int64), (rows, len(p)))
            for p in (self.prefix, self.suffix)
        ]
        return np.concatenate([framed[0], chunks, framed[1]], axis=1)


def load_tokenizer(folder: str | Path, graph: Graph) -> TextTokenizer:
    """Return the tokenizer of the checkpoint in `folder` whose graph is `graph`; InputError
    naming the file when it is missing, unreadable or has ids beyond the model's vocabulary."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise InputError(f"{folder}: no tokenizer.json (eval needs the checkpoint's tokenizer)")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # the Rust library raises plain Exceptions on any bad file
        raise InputError(f"{path}: not a readable tokenizer ({str(err)[:80]})") from None
    vocab = int(graph.meta_dict["vocab_size"])
    largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
    if largest >= vocab:
        raise InputError(
            f"{path}: token id {largest} is beyond the model's vocab_size {vocab} (config.json): "
            "the tokenizer belongs to another model"
        )
    tokenizer.no_padding()
    tokenizer.no_truncation()
    prefix, suffix = _special_frame(tokenizer)
    max_tokens = _max_seq_length(Path(folder), int(graph.meta_dict["max_positions"]))
    return TextTokenizer(tokenizer, path, prefix, suffix, max_tokens)


def _special_frame(tokenizer: Tokenizer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return the ids the tokenizer's post-processor adds before and after a text."""
    bare = tokenizer.encode("a", add_special_tokens=False).ids
    framed = tokenizer.encode("a").ids
    for start in range(len(framed) - len(bare) + 1):
        if framed[start : start + len(bare)] == bare:
            return tuple(framed[:start]), tuple(framed[start + len(bare) :])
    return (), ()


def _max_seq_length(folder: Path, max_positions: int) -> int:
    data = _json(folder / "sentence_bert_config.json", {})
    length = data.get("max_seq_length", max_positions) if isinstance(data, dict) else None
    if not isinstance(length, int) or not 2 < length <= max_positions:
        raise InputError(
            f"{folder / 'sentence_bert_config.json'}: field 'max_seq_length' must be an integer "
            f"in 3..{max_positions}"
        )
    return length


@dataclass(frozen=True)
class Pooling:
    """How token states [T, H] become one sentence embedding [H]."""

    mode: str = "mean_tokens"
    normalize: bool = False

    def __call__(self, hidden: np.ndarray) -> np.ndarray:
        """Return the sentence embedding of one sequence's token states [T, H] (float64)."""
        states = hidden.astype(np.float64)
        if self.mode == "cls_token":
            pooled = states[0]
        elif self.mode == "max_tokens":
            pooled = states.max(axis=0)
        else:
            pooled = states.sum(axis=0) / (
                np.sqrt(len(states)) if self.mode == "mean_sqrt_len_tokens" else len(states)
            )
        return pooled / np.linalg.norm(pooled) if self.normalize else pooled


def load_pooling(folder: str | Path) -> Pooling:
    """Return the sentence pooling of a sentence-transformers folder (mean without
    normalisation for other folders); InputError naming the file on a bad config."""
    folder = Path(folder)
    modules = _json(folder / "modules.json", [])
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise InputError(f"{folder / 'modules.json'}: expected a list of module entries")
    types = [str(m.get("type", "")) for m in modules]
    normalize = any(t.endswith(".Normalize") for t in types)
    pooling = [m for m, t in zip(modules, types, strict=True) if t.endswith(".Pooling")]
    if not pooling:
        return Pooling(normalize=normalize)
    path = folder / str(pooling[0].get("path", "")) / "config.json"
    config = _json(path, None)
    modes = [
        m for m in _POOLING_MODES if isinstance(config, dict) and config.get(f"pooling_mode_{m}")
    ]
    if len(modes) != 1:
        raise InputError(f"{path}: expected exactly one supported pooling_mode_* set to true")
    return Pooling(modes[0], normalize)


def _json(path: Path, default: object) -> object:
    """Return the parsed JSON file, or `default` when it does not exist."""
    if not path.is_file():
        if default is None:
            raise InputError(f"{path}: missing")
        return default
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not readable JSON ({err})") from None
