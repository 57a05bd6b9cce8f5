"""Kernel works from graphs: fused attention and epilogues on GPUs, bytes at the deployed type."""

from __future__ import annotations

import pytest

from sparseflow.ir.dtypes import DType
from sparseflow.ir.graph import shape_only
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import load_recipe
from sparseflow.simulator.graph_work import attention_chains, graph_works, kernel_groups

LAYERS = {"tiny-llama": 2, "opt-125m": 12, "gpt2": 12}


def decode_graph(model: str, recipe: str = "dense"):
    return load_recipe(recipe).apply(shape_only(load_model(model, "decode", 2, "T")))


@pytest.mark.parametrize("model", sorted(LAYERS))
def test_every_layer_has_one_attention_chain(model: str):
    chains = attention_chains(decode_graph(model))
    assert len(chains) == LAYERS[model]
    for chain in chains:
        ops = [n.op.value for n in chain]
        assert ops[0] == "matmul" and ops[-2:] == ["softmax", "matmul"]


@pytest.mark.parametrize("model", sorted(LAYERS))
@pytest.mark.parametrize("recipe", ["dense", "int8"])
def test_fusion_keeps_flops_and_every_node_once(model: str, recipe: str):
    graph = decode_graph(model, recipe)
    bindings = {"L": 24}
    fused = graph_works(graph, bindings, DType.F16, fuse=True)
    alone = graph_works(graph, bindings, DType.F16)
    assert sum(w.flops for w in fused) == pytest.approx(sum(w.flops for w in alone))
    grouped = [n.name for g in kernel_groups(graph, fuse=True) for n in g]
    assert len(grouped) == len(set(grouped))
    assert len(fused) < len(alone) / 1.5  # epilogues and attention chains merged

    # Fusion removes round trips of intermediates; it never adds traffic or weights.
    def moved(works):
        return sum(w.activation_bytes_read + w.bytes_written + w.kv_bytes_read for w in works)

    assert moved(fused) < moved(alone)
    assert sum(w.stored_weight_bytes for w in fused) == sum(w.stored_weight_bytes for w in alone)
    assert sum(w.kv_bytes_read for w in fused) == sum(w.kv_bytes_read for w in alone)


def test_fused_attention_reads_q_k_v_and_writes_only_its_output():
    graph = load_recipe("dense").apply(shape_only(load_model("tiny-llama", "prefill", 1, 32)))
    chain = attention_chains(graph)[0]
    work = next(w for w in graph_works(graph, {}, DType.F16, fuse=True) if w.name == chain[0].name)
    # tiny-llama: 4 query heads (K and V seen through their 4 repeated heads), head_dim 16,
    # 32 tokens, fp16; the causal mask reads the int64 positions. The 4 x 32 x 32 scores and
    # probabilities never leave the kernel; its output is the merged heads.
    q = k = v = out = 4 * 32 * 16 * 2
    positions = 32 * 8
    assert work.activation_bytes_read == q + k + v + positions
    assert work.kv_bytes_read == 0  # a prefill writes the cache, it reads none
    assert work.bytes_written == out


def test_float_activations_cross_memory_at_the_device_float_type():
    graph = decode_graph("tiny-llama")  # fp32 graph
    fp16 = graph_works(graph, {"L": 24}, DType.F16)
    fp32 = graph_works(graph, {"L": 24}, DType.F32)
    for a, b in zip(fp16, fp32, strict=True):
        assert a.kv_bytes_read * 2 == b.kv_bytes_read
        assert a.bytes_written * 2 == b.bytes_written


@pytest.mark.parametrize("fuse", [False, True])
@pytest.mark.parametrize("phase, batch, touched", [("decode", 1, 2), ("prefill", 1, 4)])
def test_expert_weights_are_read_for_the_experts_tokens_reach(fuse, phase, batch, touched):
    """A decoded token reads the weights of its k = 2 experts only; a 16-token prompt reads
    all 4 experts' weights; every other weight is read once either way."""
    from sparseflow.ir.models import BUILTINS, build_graph
    from sparseflow.ir.ops import Op, weight_storage_bytes

    config = BUILTINS["tiny-llama"].replace(num_experts=4, experts_per_token=2, random_seed=None)
    graph = build_graph(config, phase, batch, 16)
    works = graph_works(graph, {"L": 16, "T": 16}, DType.F16, fuse=fuse)
    weights = graph.nodes_of(Op.WEIGHT)
    expert = [w for w in weights if ".experts." in w.name]
    other = [w for w in weights if ".experts." not in w.name and w.type.rank == 2]
    embedding_rows = config.vocab_size - batch * (1 if phase == "decode" else 16)
    expect = sum(weight_storage_bytes(w.type) for w in other + expert) * 1.0
    expect -= sum(weight_storage_bytes(w.type) for w in expert) * (1 - touched / 4)
    expect -= embedding_rows * config.hidden_size * 2  # a lookup reads its ids' rows
    norms = sum(weight_storage_bytes(w.type) for w in weights if w.type.rank == 1)
    assert sum(w.stored_weight_bytes for w in works) == pytest.approx(expect + norms, rel=1e-9)
