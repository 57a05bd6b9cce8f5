"""Decode speed of LLaMA2-7B (flightllm recipe) on the U280 and the VHK158 vs each HBM assumption.

Every limit that can bind a decode step on these parts is a field of the `hbm` section of
their YAMLs; the ones no document fixes for FlightLLM are varied here over their plausible
range, one at a time, the others at the YAML's values. The program is compiled once per
device (none of these fields changes it) and simulated for a [128 prompt, 512 generated]
request. Prints a Markdown table (docs/validate_flightllm.md keeps it).

    python examples/fpga_sensitivity.py
"""

from __future__ import annotations

from sparseflow.backends.fpga.compiler import compile_program
from sparseflow.backends.registry import CompileRequest
from sparseflow.hw_models.loader import load_hw, with_overrides
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import load_recipe
from sparseflow.simulator.estimate import Workload, deployed_weight_bytes
from sparseflow.simulator.fpga_estimate import estimate_program

MODEL, RECIPE, WORKLOAD = "llama2-7b", "flightllm", Workload(1, 128, 512)
PORT = "hbm.port_clock_hz"
SAME, CROSS = "hbm.same_channel_efficiency", "hbm.cross_channel_efficiency"
# (device, overrides, why): one assumption at a time, the others as in the YAML, and the
# access efficiencies again with the ports at full rate (where they, not the ports, bind).
SCENARIOS = [
    ("u280", {}, "the YAML: 256-bit port (PG276) at the 225 MHz accelerator clock"),
    ("u280", {PORT: 300e6}, "port clock 300 MHz"),
    ("u280", {PORT: 450e6}, "port clock 450 MHz: carries the channel's 14.4 GB/s (PG276)"),
    ("u280", {CROSS: 0.25}, "cross-channel efficiency 0.25 (artifact 0.35)"),
    ("u280", {CROSS: 0.5}, "cross-channel efficiency 0.5"),
    *[
        ("u280", {PORT: 450e6, SAME: e}, f"port 450 MHz, same-channel efficiency {e}")
        for e in (0.6, 0.659, 0.8)
    ],
    ("vhk158", {}, "the YAML: two 256-bit HBM_NMU ports (PG313) at 225 MHz"),
    ("vhk158", {"hbm.ports_per_channel": 1}, "one HBM_NMU port per pseudo-channel"),
    ("vhk158", {PORT: 300e6}, "port clock 300 MHz"),
    ("vhk158", {PORT: 400e6}, "port clock 400 MHz: HBM saturates (PG313)"),
    ("vhk158", {CROSS: 0.25}, "cross-channel efficiency 0.25 (artifact 0.35)"),
    ("vhk158", {CROSS: 0.5}, "cross-channel efficiency 0.5"),
    *[
        ("vhk158", {PORT: 400e6, SAME: e}, f"port 400 MHz, same-channel efficiency {e}")
        for e in (0.6, 0.659, 0.8)
    ],
]


def decode(device: str, program, hw, weight_bytes: int) -> tuple[float, float]:
    """Return decode tok/s and the first step in ms of the request on `hw`."""
    labels = {"model": MODEL, "target": device, "recipe": RECIPE}
    report = estimate_program(program, hw, WORKLOAD, labels, weight_bytes)
    return report["decode_tokens_per_s"], report["decode_first_step_s"] * 1e3


def main() -> None:
    recipe = load_recipe(RECIPE)
    decode_graph = recipe.apply(load_model(MODEL, "decode", 1))
    prefill_graph = recipe.apply(load_model(MODEL, "prefill", 1, WORKLOAD.prompt_len))
    weight_bytes = deployed_weight_bytes(decode_graph)
    programs = {}
    print("| device | assumption | decode tok/s | first step ms | HBM GB/s per channel |")
    print("|---|---|---|---|---|")
    for device, overrides, why in SCENARIOS:
        hw = load_hw(device)
        if device not in programs:
            request = CompileRequest(prefill_graph, decode_graph, hw, 1, 128, WORKLOAD.gen_len + 1)
            programs[device] = compile_program(request)
        varied = with_overrides(hw, overrides) if overrides else hw
        tok_s, step_ms = decode(device, programs[device], varied, weight_bytes)
        h = varied.hbm
        channel = min(
            h.port_bytes_per_s, h.bandwidth_per_channel_bytes_per_s * h.same_channel_efficiency
        )
        print(f"| {device} | {why} | {tok_s:.1f} | {step_ms:.2f} | {channel / 1e9:.1f} |")


if __name__ == "__main__":
    main()
