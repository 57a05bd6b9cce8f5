"""The block-by-block FPGA estimate equals the full simulation (every bucket, every epoch of
all cores in one event loop, nothing reused) in every report number, across models,
hardware variants and request shapes, including ragged last buckets."""

from __future__ import annotations

import pytest

from sparseflow.backends.fpga.compiler import compile_program
from sparseflow.backends.registry import CompileRequest
from sparseflow.hw_models.loader import load_hw, with_overrides
from sparseflow.ir.graph import shape_only
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import load_recipe
from sparseflow.simulator.estimate import Workload
from sparseflow.simulator.fpga_estimate import estimate_program

VARIANTS = {
    "u280": {},
    "u280-64-chains-300mhz": {"core.dsp_chains": 64, "clock_hz": 300e6},
    "u280-small-weight-buffer": {"core.buffers.weight_buffer_bytes": 262144},
    "u280-2-cores": {"cores": 2, "hbm.channels": 16},
}


def numbers(report, prefix=""):
    """Yield (key path, value) of every leaf of a report."""
    if isinstance(report, dict):
        for key, value in report.items():
            yield from numbers(value, f"{prefix}.{key}")
    elif isinstance(report, list):
        for i, value in enumerate(report):
            yield from numbers(value, f"{prefix}[{i}]")
    else:
        yield prefix, report


def both(model: str, hw, prompt: int, gen: int):
    prefill, decode = load_recipe("flightllm").apply_model(
        shape_only(load_model(model, "prefill", 1, prompt)),
        shape_only(load_model(model, "decode")),
    )
    program = compile_program(CompileRequest(prefill, decode, hw, 1, prompt, gen + 1))
    workload = Workload(1, prompt, gen)
    fast = estimate_program(program, hw, workload, {}, 1, reuse=True)
    full = estimate_program(program, hw, workload, {}, 1, reuse=False)
    return fast, full


def assert_equal(fast: dict, full: dict) -> None:
    pairs = list(zip(numbers(fast), numbers(full), strict=True))
    assert len(pairs) > 20
    for (key, a), (other, b) in pairs:
        assert key == other
        assert a == b, key  # exactly: the two paths add the same numbers in the same order


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("prompt", "gen"), [(40, 70), (128, 33), (130, 5)])
def test_tiny_llama_block_run_equals_full(variant: str, prompt: int, gen: int) -> None:
    hw = with_overrides(load_hw("u280"), VARIANTS[variant]) if VARIANTS[variant] else None
    fast, full = both("tiny-llama", hw or load_hw("u280"), prompt, gen)
    assert_equal(fast, full)


@pytest.mark.parametrize(("target", "prompt", "gen"), [("u280", 64, 40), ("vhk158", 16, 16)])
def test_small_opt_block_run_equals_full(target: str, prompt: int, gen: int) -> None:
    fast, full = both("opt-125m", load_hw(target), prompt, gen)
    assert_equal(fast, full)
    assert {row["name"] for row in fast["breakdown"]} >= {"linear", "attention"}


def test_a_loop_of_designs_does_not_grow_memory() -> None:
    import gc
    import tracemalloc

    from sparseflow.simulator.fpga_estimate import estimate_fpga

    prefill, decode = load_recipe("flightllm").apply_model(
        shape_only(load_model("tiny-llama", "prefill", 1, 16)),
        shape_only(load_model("tiny-llama", "decode")),
    )
    base = load_hw("u280")

    def design(i: int) -> None:
        hw = with_overrides(
            base, {"clock_hz": 200e6 + 1e6 * i, "core.dsp_chains": (64, 40, 32, 24, 16, 8, 40)[i]}
        )
        estimate_fpga(prefill, decode, hw, Workload(1, 16, 8), {})

    tracemalloc.start()
    design(0)
    gc.collect()
    after_one = tracemalloc.get_traced_memory()[0]
    for i in range(1, 7):
        design(i)
    gc.collect()
    after_seven = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert after_seven - after_one < 256 * 1024  # bytes: no cache keyed by design
