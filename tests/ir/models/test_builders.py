"""Graph builders: interfaces of prefill and decode graphs, the attention pattern, tied
weights, symbolic lengths, and a golden print of one tiny layer."""

import numpy as np
import pytest

from sparseflow.ir.errors import InputError
from sparseflow.ir.interpreter import run_reference
from sparseflow.ir.models import BUILTINS, build_graph, random_weights
from sparseflow.ir.ops import Op
from sparseflow.ir.serialize import parse_graph

DECODERS = ["tiny-llama", "opt-125m", "gpt2", "tinyllama-1.1b"]


def inputs_of(graph):
    return {n.name: str(n.type) for n in graph.nodes_of(Op.INPUT)}


@pytest.mark.parametrize("name", DECODERS)
def test_decode_interface(name):
    c = BUILTINS[name]
    graph = build_graph(c, "decode", batch=3)
    cache = f"f32[3,{c.num_kv_heads},L,{c.head_dim}]"
    expected = {"ids": "i64[3,1]", "pos": "i64[1]"}
    for i in range(c.num_layers):
        expected |= {f"past_k.{i}": cache, f"past_v.{i}": cache}
    assert inputs_of(graph) == expected
    assert graph.outputs[0] == "logits"
    assert str(graph.node("logits").type) == f"f32[3,1,{c.vocab_size}]"
    grown = f"f32[3,{c.num_kv_heads},L+1,{c.head_dim}]"
    assert all(str(graph.node(o).type) == grown for o in graph.outputs[1:])
    assert len(graph.outputs) == 1 + 2 * c.num_layers


@pytest.mark.parametrize("seq", ["T", 9])
def test_prefill_interface(seq):
    graph = build_graph(BUILTINS["gpt2"], "prefill", batch=2, seq=seq)
    assert inputs_of(graph) == {"ids": f"i64[2,{seq}]", "pos": f"i64[{seq}]"}
    assert str(graph.node("k.11").type) == f"f32[2,12,{seq},64]"


def test_llama_layer_pattern_in_order():
    graph = build_graph(BUILTINS["tiny-llama"], "decode")
    ops = [n.op.value for n in graph.nodes if n.name.startswith("layers.0.") or n.name in
           ("k.0", "v.0")]  # fmt: skip
    compute = [o for o in ops if o not in ("weight", "reshape", "transpose")]
    assert compute == [
        "rmsnorm", "linear", "linear", "linear", "rope", "rope", "kv_append", "kv_append",
        "repeat_kv", "repeat_kv", "matmul", "scale", "causal_mask", "softmax", "matmul",
        "linear", "add", "rmsnorm", "linear", "linear", "silu", "mul", "linear", "add",
    ]  # fmt: skip


def test_roles_and_tied_head():
    graph = build_graph(BUILTINS["gpt2"], "decode")
    roles = {n.name: n.attr("role") for n in graph.nodes_of(Op.WEIGHT)}
    assert roles["embed_tokens"] == "embedding" and roles["layers.0.attn.q_proj"] == "linear"
    assert roles["layers.0.attn_norm"] == "norm" and roles["layers.0.mlp.fc1.bias"] == "bias"
    assert "lm_head" not in roles
    assert graph.node("logits").inputs[1] == "embed_tokens"
    llama = build_graph(BUILTINS["llama2-7b"], "decode")
    assert llama.node("logits").inputs[1] == "lm_head"


def test_opt_positions_offset_and_scaled_q():
    graph = build_graph(BUILTINS["opt-125m"], "prefill", seq=4)
    assert graph.node("embed_pos").attr("offset") == 2
    assert str(graph.node("embed_positions").type) == "f16[2050,768]"
    assert graph.node("layers.0.attn.q_scaled").attr("factor") == pytest.approx(0.125)


def test_bert_is_bidirectional_encoder():
    c = BUILTINS["bert-base"]
    graph = build_graph(c, "prefill", seq=8)
    assert graph.outputs == ("hidden", "pooled") and not graph.nodes_of(Op.CAUSAL_MASK)
    assert "token_types" in inputs_of(graph)
    assert build_graph(c, "prefill", seq="T").outputs == ("hidden",)
    with pytest.raises(InputError, match="encoder"):
        build_graph(c, "decode")


@pytest.mark.parametrize(
    ("args", "match"),
    [(("decode", 0), "batch"), (("sideways", 1), "phase"), (("prefill", 1, 5000), "outside"),
     (("prefill", 1, "L"), "symbol"), (("prefill", 1, "2T"), "symbol")],
)  # fmt: skip
def test_bad_shape_arguments(args, match):
    with pytest.raises(InputError, match=match):
        build_graph(BUILTINS["gpt2"], *args)


def test_graphs_round_trip_through_text():
    for phase in ("prefill", "decode"):
        graph = build_graph(BUILTINS["tiny-llama"], phase)
        assert str(parse_graph(str(graph))) == str(graph)


def test_random_weights_deterministic_by_role():
    graph = build_graph(BUILTINS["opt-125m"], "decode")
    filled = random_weights(graph, seed=3)
    again = random_weights(build_graph(BUILTINS["opt-125m"], "decode"), seed=3)
    q = filled.weights.dense("layers.2.attn.q_proj")
    np.testing.assert_array_equal(q, again.weights.dense("layers.2.attn.q_proj"))
    assert abs(q.std() * np.sqrt(768) - 1) < 0.01
    assert not np.array_equal(q, random_weights(graph, 4).weights.dense("layers.2.attn.q_proj"))
    norm = filled.weights.dense("layers.0.attn_norm")
    assert abs(norm.mean() - 1) < 0.02 and 0.05 < norm.std() < 0.15
    bias = filled.weights.dense("layers.0.mlp.fc1.bias")
    assert abs(bias.mean()) < 0.01 and 0.05 < bias.std() < 0.15
    assert abs(filled.weights.dense("embed_positions").std() - 1) < 0.01


def test_tiny_llama_runs_prefill_then_decode_consistently():
    """Decoding token t against the prefill cache equals prefilling t+1 tokens."""
    prefill4 = build_graph(BUILTINS["tiny-llama"], "prefill", batch=2, seq=4)
    prefill5 = build_graph(BUILTINS["tiny-llama"], "prefill", batch=2, seq=5)
    decode = build_graph(BUILTINS["tiny-llama"], "decode", batch=2)
    ids = np.random.default_rng(0).integers(0, 256, size=(2, 5))
    first = run_reference(prefill4, {"ids": ids[:, :4], "pos": np.arange(4)})
    feeds = {"ids": ids[:, 4:], "pos": np.array([4])}
    feeds |= {f"past_{o}": first[o] for o in first if o != "logits"}
    step = run_reference(decode, feeds)
    whole = run_reference(prefill5, {"ids": ids, "pos": np.arange(5)})
    np.testing.assert_allclose(step["logits"][:, 0], whole["logits"][:, 4], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(step["k.1"], whole["k.1"], rtol=1e-4, atol=1e-5)
