"""Importing Hugging Face checkpoint folders: name mapping, sharding, bf16, base-model files,
and errors naming the file and tensor."""

import json

import numpy as np
import pytest

from sparseflow.ir.errors import InputError
from sparseflow.ir.models import import_hf_folder, load_model
from sparseflow.ir.models.hf import hf_source
from sparseflow.ir.ops import Op

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

LLAMA = dict(
    vocab_size=61, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
)  # fmt: skip


def save(model, folder, **kwargs):
    model.save_pretrained(folder, **kwargs)
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def tiny_llama(folder, dtype=torch.float32, **kwargs):
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA)).to(dtype)
    return save(model, folder, **kwargs)


@pytest.mark.parametrize(
    ("family", "ours", "theirs"),
    [
        ("llama", "layers.3.attn.o_proj", "model.layers.3.self_attn.o_proj.weight"),
        ("llama", "final_norm", "model.norm.weight"),
        ("opt", "layers.0.mlp.fc2.bias", "model.decoder.layers.0.fc2.bias"),
        ("opt", "embed_positions", "model.decoder.embed_positions.weight"),
        ("gpt2", "layers.1.attn.v_proj.bias", "transformer.h.1.attn.c_attn.bias"),
        ("bert", "layers.0.attn_norm.bias", "bert.encoder.layer.0.attention.output.LayerNorm.bias"),
        ("bert", "pooler", "bert.pooler.dense.weight"),
        ("llama", "layers.2.mlp.router", "model.layers.2.block_sparse_moe.gate.weight"),
        (
            "llama",
            "layers.0.mlp.experts.7.gate_proj",
            "model.layers.0.block_sparse_moe.experts.7.w1.weight",
        ),
        (
            "llama",
            "layers.1.mlp.experts.0.up_proj",
            "model.layers.1.block_sparse_moe.experts.0.w3.weight",
        ),
        (
            "llama",
            "layers.1.mlp.experts.12.down_proj",
            "model.layers.1.block_sparse_moe.experts.12.w2.weight",
        ),
    ],
)
def test_names_map_to_hugging_face(family, ours, theirs):
    assert hf_source(family, ours).name == theirs


def test_expert_names_only_in_the_llama_family():
    with pytest.raises(InputError, match="no Hugging Face name"):
        hf_source("opt", "layers.0.mlp.experts.0.gate_proj")


def test_unknown_weight_name_is_input_error():
    with pytest.raises(InputError, match="no Hugging Face name"):
        hf_source("llama", "layers.0.attn.c_attn")


def test_gpt2_fused_qkv_split_and_transposed():
    source = hf_source("gpt2", "layers.0.attn.k_proj")
    fused = np.arange(4 * 12, dtype=np.float32).reshape(4, 12)  # Conv1D [in, 3*out]
    assert source.source_shape((4, 4)) == (4, 12)
    np.testing.assert_array_equal(source.convert(fused), fused.T[4:8])


def test_weights_are_lazy_and_exact(tmp_path):
    state = tiny_llama(tmp_path)
    graph = import_hf_folder(tmp_path, "decode")
    assert callable(graph.weights._entries["lm_head"])  # nothing read yet
    for ours, theirs in [("layers.1.mlp.up_proj", "model.layers.1.mlp.up_proj.weight"),
                         ("embed_tokens", "model.embed_tokens.weight")]:  # fmt: skip
        np.testing.assert_array_equal(graph.weights.dense(ours), state[theirs])


def test_sharded_checkpoint_with_index(tmp_path):
    state = tiny_llama(tmp_path, max_shard_size="8KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    graph = load_model(str(tmp_path), "prefill", seq=4)
    for node in graph.nodes_of(Op.WEIGHT):
        assert graph.weights.dense(node.name).shape == tuple(node.type.shape)
    want = state["model.layers.0.self_attn.k_proj.weight"]
    np.testing.assert_array_equal(graph.weights.dense("layers.0.attn.k_proj"), want)


def test_bfloat16_is_widened_exactly(tmp_path):
    state = tiny_llama(tmp_path, dtype=torch.bfloat16)
    graph = import_hf_folder(tmp_path, "prefill")
    assert graph.node("embed_tokens").type.dtype.short == "bf16"
    np.testing.assert_array_equal(
        graph.weights.dense("layers.0.mlp.down_proj"), state["model.layers.0.mlp.down_proj.weight"]
    )


def test_base_model_checkpoint_without_prefix(tmp_path):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2,
                                     n_positions=20, bos_token_id=0, eos_token_id=0)  # fmt: skip
    state = save(transformers.GPT2Model(config), tmp_path)
    assert "wte.weight" in state
    graph = import_hf_folder(tmp_path, "decode")
    qkv = state["h.0.attn.c_attn.weight"]
    np.testing.assert_array_equal(graph.weights.dense("layers.0.attn.v_proj"), qkv.T[32:])


def rewrite(folder, change):
    path = folder / "model.safetensors"
    tensors = safetensors_torch.load_file(path)
    change(tensors)
    safetensors_torch.save_file(tensors, path, metadata={"format": "pt"})


def test_missing_tensor_names_folder_and_tensor(tmp_path):
    tiny_llama(tmp_path)
    rewrite(tmp_path, lambda t: t.pop("model.layers.1.self_attn.v_proj.weight"))
    with pytest.raises(InputError, match="'model.layers.1.self_attn.v_proj.weight'"):
        import_hf_folder(tmp_path, "decode")


def test_wrong_shape_names_file_and_tensor(tmp_path):
    tiny_llama(tmp_path)
    rewrite(tmp_path, lambda t: t.update({"model.norm.weight": torch.ones(15)}))
    with pytest.raises(InputError, match=r"model.safetensors: tensor 'model.norm.weight'.*\[16\]"):
        import_hf_folder(tmp_path, "decode")


@pytest.mark.parametrize("content", [b"", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}....",
                                     b"\xff" * 8 + b"{}"])  # fmt: skip
def test_corrupt_safetensors_is_input_error(tmp_path, content):
    tiny_llama(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(content)
    with pytest.raises(InputError, match="model.safetensors"):
        import_hf_folder(tmp_path, "decode")


def test_folder_without_weights_is_input_error(tmp_path):
    tiny_llama(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(InputError, match="no \\*.safetensors"):
        load_model(str(tmp_path), "decode")
