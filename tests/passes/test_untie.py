"""Check untie_lm_head: the tied LM head gets its own weight; lookups keep the table."""

from __future__ import annotations

import dataclasses

import numpy as np

from sparseflow.ir.interpreter import prefill_inputs, run_reference
from sparseflow.ir.models import load_model
from sparseflow.ir.models.config import BUILTINS
from sparseflow.ir.models.zoo import build_graph
from sparseflow.passes.manager import PassContext, get_pass
from sparseflow.passes.recipe import load_recipe

TINY_GPT2 = dataclasses.replace(
    BUILTINS["gpt2"], name="tiny-gpt2", vocab_size=96, hidden_size=32, num_layers=1,
    num_heads=2, num_kv_heads=2, head_dim=16, intermediate_size=64, max_positions=64,
    random_seed=3,
)  # fmt: skip


def untie(graph):
    return get_pass("untie_lm_head").fn(graph, (), PassContext(), None)


def test_tied_head_reads_its_own_copy() -> None:
    graph = build_graph(TINY_GPT2, "prefill")
    out = untie(graph)
    out.verify()
    head = out.node("lm_head")
    assert head.attr("role") == "linear" and head.type == graph.node("embed_tokens").type
    assert out.node("logits").inputs[1] == "lm_head"
    assert out.node("embed").inputs[1] == "embed_tokens"
    assert np.array_equal(out.weights.dense("lm_head"), graph.weights.dense("embed_tokens"))
    ids = np.array([[1, 5, 95, 0]])
    inputs = prefill_inputs(graph, ids)
    before, after = run_reference(graph, inputs), run_reference(out, inputs)
    assert np.array_equal(before["logits"], after["logits"])


def test_untied_and_shape_only_graphs() -> None:
    llama = load_model("tiny-llama")
    assert untie(llama) is llama  # nothing tied: unchanged
    shapes = untie(load_model("gpt2", "decode"))  # shape-only: the type is copied
    assert shapes.node("lm_head").type.shape == (50257, 768)
    assert "lm_head" not in shapes.weights


def test_flightllm_compresses_the_head_not_the_table() -> None:
    pre, dec = load_recipe("flightllm").apply_model(
        build_graph(TINY_GPT2, "prefill"), build_graph(TINY_GPT2, "decode")
    )
    for graph in (pre, dec):
        assert graph.node("lm_head").type.quant is not None
        assert graph.node("embed_tokens").type.quant is None
        assert graph.node("embed_tokens").type.sparse is None
