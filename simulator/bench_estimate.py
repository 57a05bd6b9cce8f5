"""Benchmark the cost of one design point: compile + estimate, against the full reference path.

For each case the compressed graphs are made once (a sweep reuses them for every hardware
point); what is timed is `estimate_fpga` (lazy compile, each bucket lowered once, simulated
block by block with each distinct epoch run once) or `estimate_analytical`, as the median of
`repeats` runs. The reference path of an FPGA case compiles every bucket eagerly and
simulates each instruction by instruction, every epoch of all cores in one event loop, once;
the record gives its time, the speedup, and the largest relative difference between any two
numbers of the two reports. Times are wall seconds and this process's CPU seconds; the
speedup is the ratio of CPU seconds (the steadier measure on a shared machine). GPU and CPU
estimates are analytical: they have no reuse, so their reference is themselves.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

from sparseflow.backends.fpga.compiler import compile_program
from sparseflow.backends.memory import deployed_weight_bytes
from sparseflow.backends.registry import CompileRequest
from sparseflow.hw_models.loader import load_hw
from sparseflow.hw_models.schema import Kind
from sparseflow.ir.graph import shape_only
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import load_recipe
from sparseflow.simulator.estimate import Workload, estimate_analytical
from sparseflow.simulator.fpga_estimate import estimate_fpga, estimate_program

# (model, target, prompt, gen): the cases issue "fast evaluation" names.
CASES = (
    ("llama2-7b", "u280", 128, 512),
    ("llama2-7b", "u280", 512, 1536),
    ("llama2-7b", "vhk158", 128, 512),
    ("llama2-7b", "vhk158", 512, 1536),
    ("opt-6.7b", "u280", 128, 512),
    ("llama2-7b", "a100", 128, 512),
    ("llama2-7b", "host-cpu", 128, 512),
)
QUICK = CASES[:1] + CASES[-2:]


def run_estimate_bench(quick: bool = False, repeats: int = 3) -> dict:
    """Return {"rows": [...]}: per case the median fast time, the reference time, the
    speedup and the largest relative difference of any report number."""
    return {"rows": [_case(*case, repeats) for case in (QUICK if quick else CASES)]}


def _case(model: str, target: str, prompt: int, gen: int, repeats: int) -> dict:
    hw = load_hw(target)
    shapes = [shape_only(load_model(model, "prefill", 1, prompt)), load_model(model, "decode")]
    prefill, decode = load_recipe(hw.default_recipe).apply_model(shapes[0], shape_only(shapes[1]))
    workload = Workload(1, prompt, gen)
    labels = {"model": model, "target": target, "recipe": hw.default_recipe}
    fpga = hw.kind is Kind.FPGA
    estimate = estimate_fpga if fpga else estimate_analytical
    runs = [_timed(estimate, prefill, decode, hw, workload, labels) for _ in range(repeats)]
    report = runs[-1][2]
    fast_s, fast_cpu_s = (statistics.median(r[i] for r in runs) for i in (0, 1))
    full_s, full_cpu_s, full = fast_s, fast_cpu_s, report
    if fpga:
        request = CompileRequest(prefill, decode, hw, 1, prompt, gen + 1)
        weights = deployed_weight_bytes(decode)
        full_s, full_cpu_s, full = _timed(_full_path, request, workload, labels, weights)
    return {
        "model": model, "target": target, "prompt": prompt, "gen": gen,
        "fast_s": fast_s, "full_s": full_s, "fast_cpu_s": fast_cpu_s, "full_cpu_s": full_cpu_s,
        "speedup": full_cpu_s / fast_cpu_s,
        "max_rel_diff": _max_rel_diff(report, full),
    }  # fmt: skip


def _timed(fn, *args) -> tuple[float, float, object]:
    """Return (wall seconds, CPU seconds of this process, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _full_path(request: CompileRequest, workload: Workload, labels: dict, weights: int) -> dict:
    """Compile every bucket eagerly and simulate each instruction by instruction."""
    program = compile_program(request)
    return estimate_program(program, request.hw, workload, labels, weights, reuse=False)


def _leaves(value, key: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{key}[{i}]")
    else:
        yield key, value


def _max_rel_diff(a: dict, b: dict) -> float:
    """Return the largest |x - y| / |y| over the reports' numbers (inf if keys differ)."""
    worst = 0.0
    for (ka, x), (kb, y) in zip(_leaves(a), _leaves(b), strict=True):
        if ka != kb or (not isinstance(x, int | float) and x != y):
            return float("inf")
        if isinstance(x, int | float) and x != y:
            worst = max(worst, abs(x - y) / abs(y) if y else float("inf"))
    return worst


def format_estimate_table(record: dict) -> str:
    """Return the benchmark as a text table."""
    lines = [
        f"{'model':<10} {'target':<9} {'prompt':>6} {'gen':>5} {'fast s':>8} {'cpu s':>7} "
        f"{'full s':>8} {'cpu s':>7} {'speedup':>8} {'max rel diff':>12}"
    ]
    for r in record["rows"]:
        lines.append(
            f"{r['model']:<10} {r['target']:<9} {r['prompt']:>6} {r['gen']:>5} "
            f"{r['fast_s']:>8.3f} {r['fast_cpu_s']:>7.3f} {r['full_s']:>8.3f} "
            f"{r['full_cpu_s']:>7.3f} {r['speedup']:>7.1f}x {r['max_rel_diff']:>12.1e}"
        )
    return "\n".join(lines)
