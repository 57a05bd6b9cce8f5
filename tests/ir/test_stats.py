"""Statistics: parameter counts equal Hugging Face's for every built-in, FLOPs equal the hand
formula in the module docstring, and compression shows up in the numbers."""

import math

import pytest

from sparseflow.ir.errors import InputError
from sparseflow.ir.models import BUILTINS, build_graph, load_model
from sparseflow.ir.models.hf_config import parse_hf_config
from sparseflow.ir.stats import model_stats
from sparseflow.ir.types import QuantParams, QuantScheme, SparseFormat, SparsePattern

from .hf_configs import HF_CLASSES, PUBLIC_CONFIGS


def test_acceptance_counts():
    assert model_stats(BUILTINS["llama2-7b"])["params"] == 6738415616
    assert model_stats(BUILTINS["gpt2"])["params"] == 124439808
    assert model_stats(BUILTINS["llama2-70b"])["params"] == 68976648192
    assert model_stats(BUILTINS["llama3-8b"])["params"] == 8030261248
    assert model_stats(BUILTINS["mistral-7b"])["params"] == 7241732096
    assert model_stats(BUILTINS["mixtral-8x7b"])["params"] == 46702792704


def test_moe_flops_count_the_experts_a_token_reaches():
    """Mixtral decodes through 2 of 8 experts: its FLOPs are those of a dense model with the
    same attention and two experts' MLP, plus the router, gates and combine."""
    mixtral = BUILTINS["mixtral-8x7b"]
    dense = model_stats(mixtral.replace(num_experts=0, experts_per_token=0))
    moe = model_stats(mixtral)
    h, i, n, e, k = 4096, 14336, mixtral.num_layers, 8, 2
    experts = n * (k - 1) * (3 * 2 * h * i + 4 * i + i)  # one more expert: gate/up/down, silu, mul
    routing = n * (2 * h * e + (5 + k) * e + 2 * k + 2 * k * h)  # router, gates, combine
    assert moe["flops_per_token"] == dense["flops_per_token"] + experts + routing


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_params_equal_transformers_count(name):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    fields = {k: v for k, v in PUBLIC_CONFIGS[name].items() if k != "torch_dtype"}
    model_type = fields.pop("model_type")
    hf_config = transformers.CONFIG_MAPPING[model_type](**fields)
    with torch.device("meta"):
        model = getattr(transformers, HF_CLASSES[model_type])(hf_config)
    assert model_stats(BUILTINS[name])["params"] == model.num_parameters()


def llama_decode_flops(c, length: int) -> int:
    """The hand formula of `sparseflow.ir.stats` for a dense LLaMA decode step."""
    h, i, v, n, kv, d, s = (c.hidden_size, c.intermediate_size, c.vocab_size, c.num_heads,
                            c.num_kv_heads, c.head_dim, length + 1)  # fmt: skip
    linears = 2 * h * n * d + 2 * 2 * h * kv * d + 2 * n * d * h + 3 * 2 * h * i
    attention = 4 * n * d * s
    small = 7 * n * s + 3 * (n + kv) * d + 2 * 4 * h + 2 * h + 4 * i + i
    return c.num_layers * (linears + attention + small) + 4 * h + 2 * v * h


@pytest.mark.parametrize("name", ["llama2-7b", "tinyllama-1.1b", "tiny-llama"])
@pytest.mark.parametrize("length", [1, 100, 512])
def test_llama_flops_match_hand_formula(name, length):
    stats = model_stats(BUILTINS[name], context=length)
    assert stats["flops_per_token"] == llama_decode_flops(BUILTINS[name], length)


def test_flop_classes_are_linears_and_attention():
    c = BUILTINS["opt-125m"]
    stats = model_stats(c, context=300)
    linear_params = sum(e["params"] for e in stats["layers"] if e["op"] == "linear")
    linear_params -= c.num_layers * (4 * c.hidden_size + c.intermediate_size + c.hidden_size)
    tied_head = c.vocab_size * c.hidden_size  # counted under the embedding entry
    assert stats["flops_per_token_by_class"]["linear"] == 2 * (linear_params + tied_head)
    matmuls = 4 * c.num_layers * c.hidden_size * 301
    by_class = stats["flops_per_token_by_class"]
    assert matmuls < by_class["attention"] < 1.2 * matmuls


def test_layers_sum_to_params_and_tied_head_shares():
    stats = model_stats(BUILTINS["gpt2"])
    assert sum(e["params"] for e in stats["layers"]) == stats["params"]
    head = [e for e in stats["layers"] if e.get("shares")]
    assert head == [dict(head[0], name="logits", params=0, shares="embed_tokens")]
    assert head[0]["flops_per_token"] == 2 * 50257 * 768


def test_weight_bytes_follow_dtype_and_compression():
    stats = model_stats(BUILTINS["llama2-7b"])
    assert stats["weight_bytes"] == 2 * stats["params"]  # float16
    graph = build_graph(BUILTINS["tiny-llama"], "decode")
    sparse = SparseFormat(SparsePattern.NM, 0.5, n=2, m=4)
    int4 = QuantParams(QuantScheme.INT, 4, "group", 32)
    nodes = [
        n.__class__(n.name, n.op, n.inputs, n.type.with_(sparse=sparse, quant=int4), n.attrs)
        if n.name == "layers.0.mlp.up_proj" else n
        for n in graph.nodes
    ]  # fmt: skip
    compressed = model_stats(graph.with_nodes(nodes))
    dense = model_stats(graph)
    k, n = 64, 172
    dense_bytes, packed = (
        4 * k * n,
        # 4-bit values and a u8 offset per kept weight, f32 scale + u8 zero point per group
        math.ceil((k * n / 2 * 4 + k * n / 2 * 8 + k * n / 32 * 40) / 8),
    )
    assert dense["weight_bytes"] - compressed["weight_bytes"] == dense_bytes - packed
    assert dense["flops_per_token"] - compressed["flops_per_token"] == k * n  # half of 2*k*n


def test_bert_is_one_prefill_per_token_and_graphs_bind_lengths():
    stats = model_stats(BUILTINS["bert-base"], context=128)
    assert stats["phase"] == "prefill" and stats["params"] == 109482240
    prefill = model_stats(load_model("gpt2", "prefill", batch=2, seq="T"), context=64)
    decode = model_stats(load_model("gpt2", "decode", batch=2), context=64)
    assert prefill["params"] == decode["params"]
    assert prefill["flops_per_token"] < decode["flops_per_token"]  # mean over positions 0..63


def test_parsed_public_configs_give_the_builtin_counts():
    for name, fields in PUBLIC_CONFIGS.items():
        config = parse_hf_config(fields, "config.json", name)
        assert model_stats(config)["params"] == model_stats(BUILTINS[name])["params"]


def test_bad_context_is_input_error():
    with pytest.raises(InputError, match="context"):
        model_stats(BUILTINS["gpt2"], context=0)


def test_source_stats_for_every_kind_of_source(tmp_path):
    import json

    from sparseflow.ir.serialize import write_graph
    from sparseflow.ir.stats import source_stats

    expected = model_stats(BUILTINS["opt-125m"], context=100)
    (tmp_path / "config.json").write_text(json.dumps(PUBLIC_CONFIGS["opt-125m"]))
    graph_file = tmp_path / "opt.graph"
    write_graph(load_model("opt-125m", "decode"), graph_file)
    for source in ("opt-125m", str(tmp_path / "config.json"), str(graph_file)):
        stats = source_stats(source, context=100)
        for key in ("params", "weight_bytes", "flops_per_token", "bytes_per_token", "layers"):
            assert stats[key] == expected[key], (source, key)
    with pytest.raises(InputError, match="unknown model"):
        source_stats("opt-126m")
