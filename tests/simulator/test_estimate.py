"""GPU/CPU estimates of a whole request: keys, exactness of step reuse, floors, capacity."""

import dataclasses

import pytest

from sparseflow.backends.memory import deployed_weight_bytes
from sparseflow.hw_models.loader import load_hw, with_overrides
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.models.config import builtin_config
from sparseflow.ir.models.llama import build_llama
from sparseflow.ir.models.zoo import build_graph
from sparseflow.ir.ops import weight_storage_bytes
from sparseflow.passes.recipe import load_recipe
from sparseflow.simulator.analytical import estimate_kernel
from sparseflow.simulator.estimate import (
    Workload,
    estimate_analytical,
)
from sparseflow.simulator.graph_work import graph_works

REPORT_KEYS = {
    "model",
    "target",
    "recipe",
    "batch",
    "prompt_len",
    "gen_len",
    "prefill_latency_s",
    "decode_first_step_s",
    "decode_mean_step_s",
    "decode_tokens_per_s",
    "e2e_latency_s",
    "energy_j",
    "energy_per_token_j",
    "tokens_per_j",
    "avg_power_w",
    "weight_bytes",
    "utilization",
    "breakdown",
}


def graphs(name="llama2-7b", recipe="dense", prompt=32):
    config = builtin_config(name)
    steps = load_recipe(recipe)
    return steps.apply(build_llama(config, "prefill", 1, prompt)), steps.apply(
        build_llama(config, "decode", 1)
    )


LABELS = {"model": "m", "target": "t", "recipe": "r"}


@pytest.mark.parametrize("target", ["a100", "v100s", "host-cpu"])
def test_report_has_design_keys_and_consistent_totals(target):
    prefill, decode = graphs()
    report = estimate_analytical(prefill, decode, load_hw(target), Workload(1, 32, 8), LABELS)
    assert set(report) >= REPORT_KEYS
    decode_s = report["e2e_latency_s"] - report["prefill_latency_s"]
    assert report["decode_tokens_per_s"] == pytest.approx(8 / decode_s)
    assert report["decode_mean_step_s"] >= report["decode_first_step_s"]
    assert sum(r["time_s"] for r in report["breakdown"]) == pytest.approx(report["e2e_latency_s"])
    assert 0 < report["utilization"]["memory_bandwidth"] <= 1
    assert 0 < report["utilization"]["compute"] <= 1


@pytest.mark.parametrize(
    ("model", "recipe", "target"),
    [("llama2-7b", "dense", "a100"), ("tinyllama-1.1b", "2:4", "h100"),
     ("tinyllama-1.1b", "int8", "host-cpu")],
)  # fmt: skip
def test_extrapolated_steps_equal_timing_every_step(model, recipe, target):
    hw, work, model = load_hw(target), Workload(2, 40, 12), graphs(model, recipe)
    # A busy device at a low power limit puts some kernels at the limit, on both paths.
    floor_w = hw.power.static_power_w + hw.power.busy_power_w
    hot = with_overrides(hw, {"power.tdp_w": floor_w + 0.02 * (hw.power.tdp_w - floor_w)})
    for device in (hw, hot):
        fast = estimate_analytical(*model, device, work, LABELS)
        full = estimate_analytical(*model, device, work, LABELS, exact=True)
        for key, value in fast.items():
            if isinstance(value, float):
                assert value == pytest.approx(full[key], rel=1e-9), key
        for a, b in zip(fast["breakdown"], full["breakdown"], strict=True):
            assert (a["name"], a["bound"]) == (b["name"], b["bound"])
            assert (a["time_s"], a["energy_j"]) == pytest.approx((b["time_s"], b["energy_j"]))
    assert any(row["bound"] == "power" for row in fast["breakdown"])


def test_decode_never_beats_the_roofline_of_its_work():
    prefill, decode = graphs()
    hw = load_hw("a100")
    report = estimate_analytical(prefill, decode, hw, Workload(1, 32, 1), LABELS)
    works = graph_works(decode, {"L": 32}, DType.F16, fuse=True)
    bytes_floor = sum(w.stored_weight_bytes + w.kv_bytes_read for w in works)
    assert report["decode_first_step_s"] >= bytes_floor / hw.memory.hbm_bandwidth_bytes_per_s
    flops = sum(w.flops for w in works)
    assert report["decode_first_step_s"] >= flops / hw.peaks.fp16_tensor_flops_per_s


def test_sparsity_cuts_weight_bytes_and_decode_time():
    dense = estimate_analytical(*graphs(), load_hw("a100"), Workload(1, 32, 4), LABELS)
    sparse = estimate_analytical(*graphs(recipe="2:4"), load_hw("a100"), Workload(1, 32, 4), LABELS)
    assert sparse["weight_bytes"] < 0.6 * dense["weight_bytes"]
    assert sparse["decode_mean_step_s"] < dense["decode_mean_step_s"]


def test_llama2_7b_fp16_weight_bytes_by_hand():
    _, decode = graphs()
    assert deployed_weight_bytes(decode) == 6738415616 * 2


@pytest.mark.parametrize("recipe", ["dense", "2:4", "flightllm"])
def test_decode_kernels_read_each_weight_as_the_report_counts_it(recipe):
    _, decode = graphs("tiny-llama", recipe)
    works = graph_works(decode, {"L": 8}, DType.F16)
    read = sum(w.stored_weight_bytes for w in works)
    table = decode.node("embed_tokens").type
    row = weight_storage_bytes(table) // table.shape[0]
    # every weight once, but the lookup reads one row (decode, batch 1) of its table
    assert read == deployed_weight_bytes(decode) - weight_storage_bytes(table) + row


def test_a_device_too_small_for_the_model_is_rejected():
    prefill, decode = graphs()
    small = with_overrides(load_hw("a100"), {"memory.capacity_bytes": 8 * 2**30})
    with pytest.raises(InputError, match="memory.capacity_bytes.*cannot hold"):
        estimate_analytical(prefill, decode, small, Workload(1, 32, 4), LABELS)


def test_workload_rejects_non_positive_lengths():
    with pytest.raises(InputError, match="--gen"):
        Workload(1, 32, 0)
    defaults = {"batch": 1, "prompt_len": 128, "gen_len": 128, "prompt_lens": (), "ragged": True}
    assert dataclasses.asdict(Workload()) == defaults


def test_a_linear_with_a_bias_keeps_its_weights_sparsity():
    """The bias follows the matrix among a linear's weights; the matrix's format counts."""
    decode = load_recipe("2:4").apply(build_graph(builtin_config("opt-125m"), "decode"))
    works = {w.name: w for w in graph_works(decode, {"L": 8}, DType.F16)}
    q_proj = works["layers.0.attn.q"]
    assert len(q_proj.weights) == 2 and q_proj.weights[1].rank == 1  # matrix, then bias
    assert q_proj.sparse is not None and (q_proj.sparse.n, q_proj.sparse.m) == (2, 4)
    dense = estimate_kernel(
        load_hw("a100"), dataclasses.replace(q_proj, weights=(q_proj.weights[1],))
    )
    assert estimate_kernel(load_hw("a100"), q_proj).flops_executed < dense.flops_executed
