"""Validate the U280 event simulation of LLaMA2-7B (flightllm recipe) against published numbers.

Runs the FlightLLM paper's grid ([128, 512] prompt x [512, 1024, 1536] generated tokens) and
the two single decode steps measured on the released bitstream, then prints ours vs
published with relative errors. Published figures: Zeng et al., "FlightLLM", FPGA 2024 ([P])
and measurements on its released bitstream ([S] secondary), as cited in
docs/validate_flightllm.md. Every number comes from hw_models/u280.yaml as it is: nothing is
fitted.

    python examples/validate_flightllm.py
"""

from __future__ import annotations

import time

from sparseflow.backends.fpga.compiler import compile_program
from sparseflow.backends.registry import CompileRequest
from sparseflow.hw_models.loader import load_hw
from sparseflow.ir.errors import InputError
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import load_recipe
from sparseflow.simulator.estimate import Workload, deployed_weight_bytes
from sparseflow.simulator.fpga_estimate import check_fits, estimate_program

MODEL, TARGET, RECIPE = "llama2-7b", "u280", "flightllm"
PROMPTS, GENS = (128, 512), (512, 1024, 1536)
PUBLISHED_TOKENS_PER_S = 55.0  # decode throughput, FlightLLM [P][A]
PUBLISHED_POWER_W = 45.0  # board power in decode [S]
PUBLISHED_STEP_S = {128: 17.50e-3, 512: 18.99e-3}  # one decode step at KV length [S]


def rel(ours: float, published: float) -> str:
    return f"{(ours - published) / published:+.1%}"


def main() -> None:
    hw = load_hw(TARGET)
    recipe = load_recipe(RECIPE)
    decode = recipe.apply(load_model(MODEL, "decode", 1))
    weight_bytes = deployed_weight_bytes(decode)
    labels = {"model": MODEL, "target": TARGET, "recipe": RECIPE}
    print(f"{MODEL} on {TARGET} ({RECIPE}), weights {weight_bytes / 1e9:.2f} GB")
    print(f"{'prompt':>6} {'gen':>5} {'tok/s':>7} {'vs 55':>7} {'power W':>8} {'vs 45':>7} "
          f"{'first step ms':>13} {'prefill s':>9} {'sim s':>6}")  # fmt: skip
    for prompt in PROMPTS:
        prefill = recipe.apply(load_model(MODEL, "prefill", 1, prompt))
        check_fits(hw, decode, Workload(1, prompt, max(GENS)))
        # One program serves every row of this prompt: its buckets cover the longest request.
        gens = (1, *GENS)
        try:
            program = compile_program(CompileRequest(prefill, decode, hw, 1, prompt, max(gens) + 1))
        except InputError as err:
            print(f"{prompt:>6} {max(gens):>5} not compiled: {err}")
            gens = (1,)
            program = compile_program(CompileRequest(prefill, decode, hw, 1, prompt, 2))
        for gen in gens:
            start = time.perf_counter()
            r = estimate_program(program, hw, Workload(1, prompt, gen), labels, weight_bytes)
            elapsed = time.perf_counter() - start
            step = r["decode_first_step_s"]
            step_note = (
                f" (vs {PUBLISHED_STEP_S[prompt] * 1e3:.2f}: {rel(step, PUBLISHED_STEP_S[prompt])})"
            )
            print(
                f"{prompt:>6} {gen:>5} {r['decode_tokens_per_s']:>7.1f} "
                f"{rel(r['decode_tokens_per_s'], PUBLISHED_TOKENS_PER_S):>7} "
                f"{r['avg_power_w']:>8.1f} {rel(r['avg_power_w'], PUBLISHED_POWER_W):>7} "
                f"{step * 1e3:>13.2f} {r['prefill_latency_s']:>9.3f} {elapsed:>6.1f}"
                + (step_note if gen == 1 else "")
            )


if __name__ == "__main__":
    main()
