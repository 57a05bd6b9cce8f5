"""Multi-device estimates: one device agrees with the single-device model, collectives follow
the ring formulas from the link model, pipelines fill and drain, memory is checked per
device, and the report gains per-device rows and a communication row."""

from __future__ import annotations

import pytest

from sparseflow.backends.memory import deployed_weight_bytes
from sparseflow.hw_models.loader import load_hw, with_overrides
from sparseflow.ir.errors import InputError
from sparseflow.ir.models import BUILTINS, build_graph
from sparseflow.passes.recipe import load_recipe
from sparseflow.simulator.cluster import estimate_cluster
from sparseflow.simulator.design import estimate, parallel_overrides
from sparseflow.simulator.estimate import Workload, estimate_analytical

LABELS = {"model": "m", "target": "t", "recipe": "r"}
TINY = BUILTINS["tiny-llama"].replace(random_seed=None)


def graphs(config=TINY, batch=1, prompt=16, recipe="dense"):
    steps = load_recipe(recipe)
    prefill = build_graph(config, "prefill", batch, prompt)
    return steps.apply(prefill), steps.apply(build_graph(config, "decode", batch))


def mapped(target: str, tp: int = 1, pp: int = 1, micro: int = 1):
    overrides = parallel_overrides(tp=tp, pp=pp, micro_batches=micro)
    return with_overrides(load_hw(target), overrides)


@pytest.mark.parametrize("target", ["a100", "host-cpu"])
def test_one_device_cluster_equals_the_single_device_model(target):
    prefill, decode = graphs()
    work = Workload(1, 16, 6)
    single = estimate_analytical(prefill, decode, load_hw(target), work, LABELS)
    cluster = estimate_cluster(prefill, decode, mapped(target), work, LABELS)
    for key in ("prefill_latency_s", "decode_first_step_s", "e2e_latency_s", "energy_j"):
        assert cluster[key] == pytest.approx(single[key], rel=1e-12), key
    assert cluster["utilization"] == pytest.approx(single["utilization"], rel=1e-12)
    assert cluster["communication"]["time_s"] == 0


@pytest.mark.parametrize("tp", [2, 4])
def test_all_reduce_time_and_bytes_follow_the_ring_formula(tp):
    prefill, decode = graphs()
    hw = mapped("a100", tp=tp)
    work = Workload(1, 16, 6)
    report = estimate_cluster(prefill, decode, hw, work, LABELS)
    link, launch = hw.link, hw.efficiency.kernel_launch_overhead_s
    reduces = 2 * TINY.num_layers  # after attention and after the MLP, every layer
    share = 2 * (tp - 1) / tp
    total_s = sent = 0.0
    for tokens, times in ((16, 1), (1, work.gen_len)):
        message = tokens * TINY.hidden_size * 2  # fp16
        step_s = (
            launch + 2 * (tp - 1) * link.latency_s + share * message / link.bandwidth_bytes_per_s
        )
        total_s += times * reduces * step_s
        sent += times * reduces * tp * share * message
    comm = report["communication"]
    assert comm["all_reduce_time_s"] == pytest.approx(total_s, rel=1e-12)
    assert comm["all_reduce_bytes"] == pytest.approx(sent, rel=1e-12)
    assert comm["all_gather_bytes"] > 0  # the vocabulary-split LM head's logits
    rows = {row["name"]: row for row in report["breakdown"]}
    assert rows["communication"]["time_s"] == pytest.approx(comm["time_s"])
    assert sum(r["time_s"] for r in report["breakdown"]) == pytest.approx(report["e2e_latency_s"])


def test_tensor_parallel_devices_hold_a_share_of_the_weights_and_beat_the_floor():
    prefill, decode = graphs(BUILTINS["llama2-7b"], prompt=32)
    whole = deployed_weight_bytes(decode)
    hw = mapped("a100", tp=4)
    report = estimate_cluster(prefill, decode, hw, Workload(1, 32, 4), LABELS)
    devices = report["devices"]
    assert len(devices) == 4 and {d["tp_rank"] for d in devices} == {0, 1, 2, 3}
    share = devices[0]["weight_bytes"]
    assert whole / 4 < share < whole / 4 + 2 * 32000 * 4096 * 2  # + the replicated embedding
    assert report["weight_bytes"] == 4 * share
    floor_s = share / hw.memory.hbm_bandwidth_bytes_per_s  # a step reads a device's weights
    assert report["decode_first_step_s"] > floor_s
    single = estimate_analytical(prefill, decode, load_hw("a100"), Workload(1, 32, 4), LABELS)
    assert report["decode_first_step_s"] < single["decode_first_step_s"] / 2


def test_pipeline_fills_and_drains_with_micro_batches():
    """Two micro-batches through two stages take one more pass of the slower stage than one
    micro-batch of the same size: P0 + P1 + max(P0, P1) + send against P0 + P1 + send."""
    config = TINY.replace(num_layers=4)
    prefill, decode = graphs(config, batch=2)
    two = estimate_cluster(
        prefill, decode, mapped("a100", pp=2, micro=2), Workload(4, 16, 4), LABELS
    )
    one = estimate_cluster(prefill, decode, mapped("a100", pp=2), Workload(2, 16, 4), LABELS)
    hidden = 2 * config.hidden_size * 2  # 2 sequences, fp16
    assert one["communication"]["send_bytes"] == 16 * hidden + 4 * hidden  # prompt, 4 steps
    link = load_hw("a100").link
    stages_s = one["prefill_latency_s"] - link.latency_s - 16 * hidden / link.bandwidth_bytes_per_s
    extra_s = two["prefill_latency_s"] - one["prefill_latency_s"]
    assert stages_s / 2 <= extra_s <= stages_s
    rows = {row["name"]: row for row in one["breakdown"]}
    assert rows["idle"]["energy_j"] > 0  # each stage waits while the other works
    assert [d["layers"] for d in one["devices"]] == [[0, 1], [2, 3]]


def test_each_device_must_hold_its_share():
    prefill, decode = graphs(BUILTINS["llama2-70b"], prompt=16)
    with pytest.raises(InputError, match="memory.capacity_bytes.*stage 0, tp rank 0"):
        estimate_cluster(prefill, decode, mapped("a100-40gb", tp=2), Workload(1, 16, 4), LABELS)
    report = estimate_cluster(prefill, decode, mapped("a100", tp=2), Workload(1, 16, 4), LABELS)
    device = report["devices"][0]
    assert device["memory_bytes"] <= device["memory_capacity_bytes"]


def test_acceptance_llama2_70b_tp4_reports_decode_memory_and_all_reduce():
    report = estimate("llama2-70b", mapped("a100", tp=4), prompt_len=128, gen_len=128)
    assert report["decode_tokens_per_s"] > 0 and report["parallel"]["tp"] == 4
    assert all(d["memory_bytes"] > 0 for d in report["devices"])
    assert report["communication"]["all_reduce_time_s"] > 0
    with pytest.raises(InputError, match="memory.capacity_bytes"):
        estimate("llama2-70b", load_hw("a100"), "dense", prompt_len=128, gen_len=128)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"devices": 4, "tp": 2, "pp": 1}, "--devices 4 must equal --tp 2 x --pp 1"),
        ({"devices": 6, "tp": 4}, "--devices 6 is not a multiple of --tp 4"),
        ({"tp": 0}, "--tp must be an integer >= 1"),
    ],
)
def test_inconsistent_options_are_named(options, match):
    with pytest.raises(InputError, match=match):
        parallel_overrides(**options)


def test_devices_alone_are_tensor_parallel_and_one_option_implies_the_other():
    assert parallel_overrides(devices=8)["parallel.tp"] == 8
    assert parallel_overrides(devices=8, tp=4)["parallel.pp"] == 2
    assert parallel_overrides(devices=8, pp=2)["parallel.tp"] == 4
