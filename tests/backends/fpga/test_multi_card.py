"""Several FPGA cards: each card's own program (the unchanged compiler) runs on the functional
model with host collectives and computes what the numpy reference of the same split
computes; the estimate of a split times every card and the link between them."""

from __future__ import annotations

import pytest

from sparseflow.backends.fpga.multi_card import run_split
from sparseflow.hw_models.loader import load_hw, with_overrides
from sparseflow.passes.recipe import load_recipe
from sparseflow.simulator.design import estimate, parallel_overrides


def test_two_card_split_of_tiny_llama_matches_the_reference():
    record = run_split("tiny-llama", load_hw("u280"), load_recipe("flightllm"), 2, 6, 3)
    assert record["logits_rel_error_vs_reference"] == 0.0  # each card's model is exact
    assert len(record["tokens"][0]) == 3 and record["cards"] == 2
    # the split compresses like one card: the recipe's error, not a broken split
    assert record["logits_rel_error_vs_dense"] < 1.0


def test_two_card_estimate_reports_inter_card_traffic():
    hw = with_overrides(load_hw("u280"), parallel_overrides(tp=2))
    split = estimate("llama2-13b", hw, prompt_len=128, gen_len=8)
    single = estimate("llama2-13b", load_hw("u280"), prompt_len=128, gen_len=8)
    comm = split["communication"]
    hidden_fp16 = 5120 * 2
    reduces = 2 * 40  # two per layer
    expect = 2 * (2 - 1) / 2 * hidden_fp16 * reduces * (128 + 8) * 2  # 2 cards send
    assert comm["all_reduce_bytes"] == pytest.approx(expect)
    assert comm["all_gather_bytes"] > 0 and comm["energy_j"] > 0
    assert split["decode_mean_step_s"] < single["decode_mean_step_s"]
    card = split["devices"][0]
    assert card["weight_bytes"] < 0.55 * single["weight_bytes"]
    assert "resources" in split and split["avg_power_w_range"][0] < split["avg_power_w"]
