"""Tensor and pipeline parallel mappings compute the model: every split of several families,
run device by device with host collectives, gives the unsplit model's logits over a prefill
and decode steps; bad mappings name the option."""

from __future__ import annotations

import numpy as np
import pytest

from sparseflow.backends.cluster import ClusterRunner, reference_runner
from sparseflow.backends.runner import generate, generate_reference, rel_error
from sparseflow.ir.errors import InputError
from sparseflow.ir.models import BUILTINS, build_graph
from sparseflow.ir.ops import Op
from sparseflow.passes.parallel import local_program, map_devices
from sparseflow.passes.pipeline_parallel import pipeline_stages, stage_layers
from sparseflow.passes.tensor_parallel import tensor_shard

TINY = BUILTINS["tiny-llama"]  # 4 heads, 2 KV heads, intermediate 172, 2 layers
MODELS = {
    "llama": TINY,
    "mixtral": TINY.replace(num_experts=4, experts_per_token=2, sliding_window=3),
    "opt": BUILTINS["opt-125m"].replace(
        hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=4, head_dim=8,
        intermediate_size=48, vocab_size=96, max_positions=64, random_seed=3,
    ),
}  # fmt: skip


def split_generation(config, tp: int, pp: int, gen_len: int = 3):
    prefill, decode = (build_graph(config, phase, 2, 5 if phase == "prefill" else "T")
                       for phase in ("prefill", "decode"))  # fmt: skip
    ids = np.random.default_rng(0).integers(0, config.vocab_size, size=(2, 5))
    runners = [ClusterRunner(map_devices(g, tp, pp), reference_runner) for g in (prefill, decode)]
    split = generate(*runners, prefill, ids, gen_len)
    return split, generate_reference(prefill, decode, ids, gen_len)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("tp, pp", [(2, 1), (1, 2), (2, 2), (4, 1)])
def test_split_model_computes_the_model(model, tp, pp):
    split, whole = split_generation(MODELS[model], tp, pp)
    assert rel_error(split, whole) < 1e-5
    np.testing.assert_array_equal(split.tokens, whole.tokens)


def test_sharded_types_and_collectives():
    graph = build_graph(TINY, "decode", 1)
    shard = tensor_shard(graph, 2, 1)
    assert shard.node("layers.0.attn.q_proj").type.shape == (32, 64)  # 2 of 4 heads x 16
    assert shard.node("layers.0.attn.o_proj").type.shape == (64, 32)
    assert shard.node("layers.1.mlp.down_proj").type.shape == (64, 86)
    assert shard.node("past_k.0").type.shape[1] == 1  # 1 of 2 KV heads
    reduces = shard.nodes_of(Op.ALL_REDUCE)
    assert len(reduces) == 2 * TINY.num_layers and all(n.attr("devices") == 2 for n in reduces)
    assert [n.name for n in shard.nodes_of(Op.ALL_GATHER)] == ["logits"]
    assert shard.node("logits").type.shape == (1, 1, TINY.vocab_size)
    local = local_program(shard)
    assert not local.nodes_of(Op.ALL_REDUCE) and local.node("logits").type.shape[-1] == 128
    assert local.node("layers.0.attn.out").op is Op.LINEAR


def test_more_devices_than_kv_heads_replicate_them():
    graph = build_graph(TINY, "decode", 1)
    shards = [tensor_shard(graph, 4, rank) for rank in range(4)]
    assert {s.node("past_k.0").type.shape[1] for s in shards} == {1}
    assert shards[0].node("layers.0.attn.k_rep").attr("n_rep") == 1  # 1 query head, 1 KV head


def test_stages_split_layers_evenly_and_pass_the_hidden_state():
    assert [list(r) for r in stage_layers(5, 2)] == [[0, 1, 2], [3, 4]]
    stages = pipeline_stages(build_graph(TINY, "prefill", 1, "T"), 2)
    assert "layers.0.out" in stages[0].outputs
    assert stages[1].node("layers.0.out").op is Op.INPUT
    assert stages[1].outputs[0] == "logits" and "embed_tokens" not in stages[1]


@pytest.mark.parametrize(
    "tp, pp, match",
    [(3, 1, "--tp 3 .*4 attention heads"), (1, 3, "--pp 3 .*2 layers"), (8, 1, "--tp 8")],
)
def test_bad_mappings_name_the_option(tp, pp, match):
    with pytest.raises(InputError, match=match):
        map_devices(build_graph(TINY, "decode", 1), tp, pp)
