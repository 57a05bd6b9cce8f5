"""Compress one model with several recipes and compare compression error and weight bytes.

Run: python examples/compress_and_compare.py [MODEL]   (default tiny-llama; any model with
weights, or a built-in name, which then gets seeded random weights)

Uses the library API that `sparseflow run` is built on: `compress_model` applies a recipe to
both phases (one calibration), `generate_reference` runs a request, `rel_error` compares logits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sparseflow.backends.pipeline import compress_model, layer_report
from sparseflow.backends.runner import generate_reference, prompt_ids, rel_error
from sparseflow.passes.recipe import load_recipe, shorthand_recipe

HERE = Path(__file__).parent
RECIPES = [
    load_recipe("int8"),
    load_recipe(str(HERE / "recipes" / "smoothquant-w8a8.yaml")),
    shorthand_recipe("2:4", None),
    shorthand_recipe(None, "int4:channel"),
    load_recipe(str(HERE / "recipes" / "sparse-w4a8-gptq.yaml")),
    load_recipe("flightllm"),
]


def main(model: str) -> None:
    """Print, per recipe, the weight bytes and the logits error against the dense model."""
    print(f"{'recipe':<22} {'weight MB':>10} {'logits rel. error vs dense':>28}")
    for recipe in RECIPES:
        pair = compress_model(model, recipe, batch=1, functional=True)
        vocab = int(pair.prefill.meta_dict["vocab_size"])
        ids = prompt_ids(vocab, 1, 16)
        ours = generate_reference(pair.prefill, pair.decode, ids, 8)
        dense = generate_reference(pair.dense_prefill, pair.dense_decode, ids, 8, ours.tokens)
        mb = (
            sum(row["weight_bytes"] for row in layer_report(pair.dense_prefill, pair.prefill)) / 1e6
        )
        print(f"{recipe.name:<22} {mb:>10.3f} {rel_error(ours, dense):>28.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tiny-llama")
