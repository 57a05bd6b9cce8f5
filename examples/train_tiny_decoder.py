"""Train a tiny LLaMA decoder on the training part of the built-in corpus and save it.

    python examples/train_tiny_decoder.py -o tiny-decoder            # the docs/eval.md model
    python examples/train_tiny_decoder.py -o small --preset test     # the test suite's model

The result is a real trained checkpoint for `sparseflow eval`: a folder with config.json and
model.safetensors (transformers' `LlamaForCausalLM.save_pretrained`), tokenizer.json (a
byte-level BPE trained on the same text with the `tokenizers` library) and training.json (the
settings and the final training loss). Training text: `corpus_text("training")`, disjoint
from the calibration and evaluation parts (sparseflow.ir.models.text). Everything is seeded
and runs on the CPU in a few minutes; torch's CPU kernels are deterministic for a fixed
thread count, so one machine reproduces its own checkpoint exactly.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

from sparseflow.ir.models.text import corpus_text


@dataclass(frozen=True)
class TrainConfig:
    """Model size and training schedule (AdamW, linear warm-up then cosine decay)."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 4
    num_heads: int = 4
    seq_len: int = 128
    batch: int = 8
    steps: int = 800
    lr: float = 3e-3
    warmup_steps: int = 50
    seed: int = 0
    # One thread: as fast as two on an idle 2-core machine and several times faster on a busy
    # one (OpenMP workers spin while they wait), and one thread count reproduces one result.
    threads: int = 1


PRESETS = {
    "docs": TrainConfig(),
    "test": TrainConfig(vocab_size=512, num_layers=2, steps=300),
}


def train_tokenizer(text: str, vocab_size: int) -> Tokenizer:
    """Return a byte-level BPE tokenizer with `vocab_size` tokens trained on `text`."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([text], trainer)
    return tokenizer


def build_model(config: TrainConfig) -> LlamaForCausalLM:
    """Return a randomly initialised LLaMA of `config`'s size (seeded)."""
    torch.manual_seed(config.seed)
    hf_config = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.seq_len,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(hf_config)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Return the learning rate at `step`: linear warm-up, then cosine decay to 10%."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(config: TrainConfig, tokens: np.ndarray) -> tuple[LlamaForCausalLM, float]:
    """Train on random windows of `tokens`; return the model and the mean loss of the last
    50 steps."""
    torch.set_num_threads(config.threads)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    rng = np.random.default_rng(config.seed)
    data = torch.from_numpy(tokens.astype(np.int64))
    losses = []
    for step in range(config.steps):
        starts = rng.integers(0, len(tokens) - config.seq_len, config.batch)
        batch = torch.stack([data[s : s + config.seq_len] for s in starts])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), float(np.mean(losses[-50:]))


def train_tiny_decoder(out_dir: str | Path, config: TrainConfig) -> dict:
    """Train tokenizer and model on the corpus's training part; save both into `out_dir`;
    return the training record written to training.json."""
    start = time.perf_counter()
    text = corpus_text("training")
    tokenizer = train_tokenizer(text, config.vocab_size)
    tokens = np.array(tokenizer.encode(text).ids)
    model, loss = train(config, tokens)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save(str(out / "tokenizer.json"))
    record = {
        **asdict(config),
        "training_tokens": int(tokens.size),
        "final_loss": loss,
        "final_perplexity": math.exp(loss),
        "seconds": time.perf_counter() - start,
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and train."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, help="checkpoint folder to write")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="docs", help="model size")
    args = parser.parse_args(argv)
    record = train_tiny_decoder(args.output, PRESETS[args.preset])
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
