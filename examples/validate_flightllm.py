"""Validate the U280 event simulation of LLaMA2-7B (flightllm recipe) against published numbers.

Runs the FlightLLM paper's grid ([128, 512] prompt x [512, 1024, 1536] generated tokens) and
the two single decode steps measured on the released bitstream, then prints ours vs
published with relative errors, the power band the hardware model's coefficient ranges give,
the power by component and the design's resources for [128, 512]; then the same grid on the
V100S model (dense fp16) for the paper's energy-efficiency claim (U280 vs V100S, geomean over
the grid) and its Fig. 1 V100 decode point. Published figures: Zeng et al., "FlightLLM",
FPGA 2024 ([P]) and measurements on its released bitstream ([S] secondary), as cited in
docs/validate_flightllm.md. Every number comes from hw_models/u280.yaml as it is: nothing is
fitted.

    python examples/validate_flightllm.py
"""

from __future__ import annotations

import math
import time

from sparseflow.backends.fpga.compiler import compile_program
from sparseflow.backends.memory import deployed_weight_bytes
from sparseflow.backends.registry import CompileRequest
from sparseflow.hw_models.loader import load_hw
from sparseflow.ir.errors import InputError
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import load_recipe
from sparseflow.simulator.estimate import Workload, estimate_analytical
from sparseflow.simulator.fpga_estimate import check_fits, estimate_program

MODEL, TARGET, RECIPE = "llama2-7b", "u280", "flightllm"
PROMPTS, GENS = (128, 512), (512, 1024, 1536)
PUBLISHED_TOKENS_PER_S = 55.0  # decode throughput, FlightLLM [P][A]
PUBLISHED_POWER_W = 45.0  # board power in decode [S]
PUBLISHED_STEP_S = {128: 17.50e-3, 512: 18.99e-3}  # one decode step at KV length [S]
GPU, GPU_RECIPE = "v100s", "dense"
PUBLISHED_EFFICIENCY_RATIO = 6.0  # U280 vs V100S tokens/J, geomean over the grid [P]
PUBLISHED_V100_DECODE = (45.0, 220.0)  # V100 decode tok/s and W, FlightLLM Fig. 1 [P]


def rel(ours: float, published: float) -> str:
    return f"{(ours - published) / published:+.1%}"


def main() -> None:
    fpga_tokens_per_j = validate_fpga()
    compare_gpu(fpga_tokens_per_j)


def validate_fpga() -> dict[tuple[int, int], float]:
    """Print the U280 rows; return tokens per joule per (prompt, gen) of the grid."""
    hw = load_hw(TARGET)
    recipe = load_recipe(RECIPE)
    decode = recipe.apply(load_model(MODEL, "decode", 1))
    weight_bytes = deployed_weight_bytes(decode)
    labels = {"model": MODEL, "target": TARGET, "recipe": RECIPE}
    tokens_per_j = {}
    print(f"{MODEL} on {TARGET} ({RECIPE}), weights {weight_bytes / 1e9:.2f} GB")
    print(f"{'prompt':>6} {'gen':>5} {'tok/s':>7} {'vs 55':>7} {'power W':>8} {'band W':>9} "
          f"{'vs 45':>7} {'first step ms':>13} {'prefill s':>9} {'sim s':>6}")  # fmt: skip
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
            low, high = r["avg_power_w_range"]
            step_note = (
                f" (vs {PUBLISHED_STEP_S[prompt] * 1e3:.2f}: {rel(step, PUBLISHED_STEP_S[prompt])})"
            )
            print(
                f"{prompt:>6} {gen:>5} {r['decode_tokens_per_s']:>7.1f} "
                f"{rel(r['decode_tokens_per_s'], PUBLISHED_TOKENS_PER_S):>7} "
                f"{r['avg_power_w']:>8.1f} {f'{low:.0f}-{high:.0f}':>9} "
                f"{rel(r['avg_power_w'], PUBLISHED_POWER_W):>7} "
                f"{step * 1e3:>13.2f} {r['prefill_latency_s']:>9.3f} {elapsed:>6.1f}"
                + (step_note if gen == 1 else "")
            )
            if gen in GENS:
                tokens_per_j[prompt, gen] = r["tokens_per_j"]
            if (prompt, gen) == (PROMPTS[0], GENS[0]):
                first_row = r
    print_power_and_resources(first_row)
    return tokens_per_j


def print_power_and_resources(r: dict) -> None:
    """Print one request's power by component and the design's resources."""
    low, high = r["avg_power_w_range"]
    print(f"\npower by component, prompt {r['prompt_len']}, {r['gen_len']} generated: "
          f"{r['avg_power_w']:.1f} W (band {low:.1f}-{high:.1f} W)")  # fmt: skip
    for name, watts in sorted(r["power_w"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<15} {watts:6.2f} W")
    res = r["resources"]
    used = ", ".join(
        f"{k} {res['total'][k]:,.0f} ({res['utilization'][k]:.0%})" for k in res["utilization"]
    )
    print(f"resources ({res['cores']} cores): {used}")


def compare_gpu(fpga_tokens_per_j: dict[tuple[int, int], float]) -> None:
    """Print the V100S model on the same grid and the U280/V100S energy-efficiency ratio."""
    hw = load_hw(GPU)
    recipe = load_recipe(GPU_RECIPE)
    decode = recipe.apply(load_model(MODEL, "decode", 1))
    labels = {"model": MODEL, "target": GPU, "recipe": GPU_RECIPE}
    tok_s, watts = PUBLISHED_V100_DECODE
    print(f"\n{MODEL} on {GPU} ({GPU_RECIPE}); FlightLLM Fig. 1, V100 decode: "
          f"~{tok_s:.0f} tok/s at ~{watts:.0f} W")  # fmt: skip
    print(f"{'prompt':>6} {'gen':>5} {'tok/s':>7} {'power W':>8} {'tok/J':>7} {'U280/V100S':>10}")
    ratios = []
    for prompt, gen in fpga_tokens_per_j:
        prefill = recipe.apply(load_model(MODEL, "prefill", 1, prompt))
        r = estimate_analytical(prefill, decode, hw, Workload(1, prompt, gen), labels)
        ratios.append(fpga_tokens_per_j[prompt, gen] / r["tokens_per_j"])
        print(f"{prompt:>6} {gen:>5} {r['decode_tokens_per_s']:>7.1f} {r['avg_power_w']:>8.1f} "
              f"{r['tokens_per_j']:>7.3f} {ratios[-1]:>10.2f}")  # fmt: skip
    geomean = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    print(f"energy efficiency U280 / V100S, geomean: {geomean:.2f}x "
          f"(published {PUBLISHED_EFFICIENCY_RATIO:.1f}x: "
          f"{rel(geomean, PUBLISHED_EFFICIENCY_RATIO)})")  # fmt: skip


if __name__ == "__main__":
    main()
