"""Evaluate one checkpoint under every built-in recipe and quantization shorthand; print a
Markdown table (docs/eval.md holds its output for MiniLM and the trained tiny decoder).

Run: python examples/eval_table.py MODEL_FOLDER [--max-sentences N] [--json FILE]

Each row is what `sparseflow eval MODEL_FOLDER <options>` reports, through the same library
call (`evaluate`), on the built-in evaluation text with the built-in calibration text.
"""

from __future__ import annotations

import argparse
import json
import sys

from sparseflow.backends.evaluate import EvalOptions, evaluate
from sparseflow.passes.recipe import Recipe, load_recipe, shorthand_recipe

# (command-line options, recipe): every built-in recipe, then the shorthands.
ROWS: list[tuple[str, Recipe]] = [
    *((f"--recipe {name}", load_recipe(name)) for name in ("dense", "int8", "w4a16", "2:4")),
    ("--recipe flightllm", load_recipe("flightllm")),
    *(
        (f"--quant {q}", shorthand_recipe(None, q))
        for q in (
            "int8:smooth",
            "llm.int8",
            "int4:channel",
            "int4:g32",
            "int4:g32:gptq",
            "int4:g64",
            "int4:g64:gptq",
            "int4:g128",
            "int4:g128:gptq",
            "fp4",
            "olive4",
        )
    ),  # fmt: skip
    *(
        (f"--sparsity {s}", shorthand_recipe(s, None))
        for s in ("0.5", "0.7", "0.9", "block4x1:0.5", "8:16")
    ),
]


def row_cells(report: dict) -> list[str]:
    """Return the metric cells of one report (decoder or encoder columns)."""
    if report["kind"] == "decoder":
        change = report["perplexity"] / report["perplexity_dense"] - 1
        metrics = [
            f"{report['perplexity']:.3f}",
            f"{change:+.2%}",
            f"{report['top1_agreement']:.2%}",
        ]
    else:
        metrics = [
            f"{report['cosine_mean']:.4f}",
            f"{report['cosine_min']:.4f}",
            f"{report['retrieval_agreement']:.2%}",
        ]
    return [
        *metrics,
        f"{report['output_rel_error_vs_dense']:.3g}",
        f"{report['weight_bytes'] / 1e6:.2f}",
        f"{report['compression_ratio']:.2f}x",
    ]


def header(kind: str) -> list[str]:
    """Return the table's header lines for a decoder or an encoder."""
    if kind == "decoder":
        metrics = ["perplexity", "vs dense", "top-1 agreement"]
    else:
        metrics = ["cosine mean", "cosine min", "retrieval agreement"]
    names = ["options", *metrics, "output rel. error", "weight MB", "smaller"]
    return ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]


def main(argv: list[str] | None = None) -> None:
    """Evaluate every row and print the table (and write the reports as JSON on request)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint folder")
    parser.add_argument("--max-sentences", type=int, default=256, help="encoder sentences")
    parser.add_argument("--json", metavar="FILE", help="write every report to FILE")
    args = parser.parse_args(argv)
    options = EvalOptions(max_sentences=args.max_sentences)
    reports = {}
    for flags, recipe in ROWS:
        reports[flags] = evaluate(args.model, recipe, options)
        print(f"done {flags}", file=sys.stderr)
    lines = header(next(iter(reports.values()))["kind"])
    lines += ["| `" + f + "` | " + " | ".join(row_cells(r)) + " |" for f, r in reports.items()]
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(reports, handle, indent=1)


if __name__ == "__main__":
    main()
