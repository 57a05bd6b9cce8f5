"""Time BERT-base end to end on the CPU executor: every linear 90 % block-sparse (4x1) vs dense.

Both runs take the same path (the CPU backend's kernel plan inside the reference interpreter),
on the same seeded random weights and token ids; only the linears' storage differs, so the
ratio is what block sparsity buys a whole encoder, attention and norms included.

    python examples/bench_bert_e2e.py [--seq 128] [--sparsity 0.9] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sparseflow.backends.cpu import set_threads
from sparseflow.backends.cpu.executor import compile_graphs
from sparseflow.backends.runner import prompt_ids
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import prefill_inputs
from sparseflow.ir.models import BUILTINS, build_graph
from sparseflow.passes.recipe import recipe_from_dict


def time_prefill(graph: Graph, ids: np.ndarray, repeats: int) -> tuple[float, dict]:
    """Return (median seconds of one forward pass, kernel counts) on the CPU executor."""
    program = compile_graphs(graph, None, batch=ids.shape[0], prompt_len=ids.shape[1])
    runner, _ = program.runners()
    inputs = prefill_inputs(graph, ids)
    runner.run(inputs)  # warm-up: weight conversion, numba cache load
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.run(inputs)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), program.summary()["graphs"]["prefill"]["kernel_counts"]


def main() -> None:
    """Parse the options, run both models and print the times and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("threads:", set_threads(args.threads))
    dense = build_graph(BUILTINS["bert-base"].replace(random_seed=0), "prefill", 1, args.seq)
    block = {"block": [4, 1], "sparsity": args.sparsity}
    recipe = recipe_from_dict({"passes": [{"pass": "sparsify_block", "options": block}]}, "bench")
    sparse = recipe.apply(dense)
    ids = prompt_ids(BUILTINS["bert-base"].vocab_size, 1, args.seq)
    dense_s, dense_kernels = time_prefill(dense, ids, args.repeats)
    sparse_s, sparse_kernels = time_prefill(sparse, ids, args.repeats)
    print(f"bert-base seq {args.seq}, block4x1 sparsity {args.sparsity}, median of {args.repeats}")
    print(f"dense : {dense_s * 1e3:8.1f} ms  kernels {dense_kernels}")
    print(f"sparse: {sparse_s * 1e3:8.1f} ms  kernels {sparse_kernels}")
    print(f"speedup: {dense_s / sparse_s:.2f}x")


if __name__ == "__main__":
    main()
