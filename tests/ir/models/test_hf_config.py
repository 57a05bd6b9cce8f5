"""Parsing Hugging Face config.json: supported variants, named errors, and a fuzz test that
arbitrary or mutated JSON gives a config or an InputError, never a traceback."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparseflow.ir.errors import InputError
from sparseflow.ir.models import ModelConfig, from_hf_config
from sparseflow.ir.models.hf_config import parse_hf_config

from ..hf_configs import PUBLIC_CONFIGS


def write(tmp_path, data, name="config.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_file_is_parsed_and_named_after_its_folder(tmp_path):
    folder = tmp_path / "my-gpt"
    folder.mkdir()
    config = from_hf_config(write(folder, PUBLIC_CONFIGS["gpt2"]))
    assert config.name == "my-gpt" and config.activation == "gelu_tanh"


def test_transformers5_rope_parameters_and_head_dim():
    fields = dict(PUBLIC_CONFIGS["tiny-llama"], head_dim=8)
    fields["rope_parameters"] = {"rope_type": "default", "rope_theta": 500000.0}
    config = parse_hf_config(fields, "config.json", "x")
    assert config.rope_theta == 500000.0 and config.head_dim == 8


def test_mistral_window_is_kept_when_shorter_than_the_context():
    fields = dict(PUBLIC_CONFIGS["tiny-llama"], model_type="mistral", sliding_window=None)
    assert parse_hf_config(fields, "config.json", "m").sliding_window == 0
    assert parse_hf_config(dict(fields, sliding_window=16), "c", "m").sliding_window == 16
    assert parse_hf_config(dict(fields, sliding_window=256), "c", "m").sliding_window == 0
    with pytest.raises(InputError, match="'sliding_window'"):
        parse_hf_config(dict(fields, sliding_window=0), "config.json", "m")


def test_mixtral_experts_are_read():
    config = parse_hf_config(PUBLIC_CONFIGS["mixtral-8x7b"], "config.json", "x")
    assert (config.num_experts, config.experts_per_token, config.sliding_window) == (8, 2, 0)
    assert config.family == "llama" and config.is_moe


@pytest.mark.parametrize(
    ("name", "change", "field"),
    [
        ("llama2-7b", {"hidden_size": "4096"}, "hidden_size"),
        ("llama2-7b", {"num_attention_heads": 0}, "num_attention_heads"),
        ("llama2-7b", {"num_key_value_heads": 5}, "num_kv_heads"),
        ("llama2-7b", {"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling"),
        ("llama2-7b", {"hidden_act": "tanh"}, "hidden_act"),
        ("llama2-7b", {"torch_dtype": "int8"}, "torch_dtype"),
        ("llama2-7b", {"model_type": "t5"}, "model_type"),
        ("opt-125m", {"do_layer_norm_before": False}, "do_layer_norm_before"),
        ("opt-125m", {"word_embed_proj_dim": 512}, "word_embed_proj_dim"),
        ("gpt2", {"n_head": 7}, "n_head"),
        ("gpt2", {"scale_attn_weights": False}, "scale_attn_weights"),
        ("bert-base", {"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ("bert-base", {"layer_norm_eps": True}, "layer_norm_eps"),
        ("mixtral-8x7b", {"num_local_experts": 0}, "num_local_experts"),
        ("mixtral-8x7b", {"num_experts_per_tok": 9}, "experts_per_token"),
        ("mistral-7b", {"sliding_window": "4096"}, "sliding_window"),
    ],
)
def test_bad_field_names_file_and_field(tmp_path, name, change, field):
    path = write(tmp_path, {**PUBLIC_CONFIGS[name], **change})
    with pytest.raises(InputError, match=f"config.json.*'{field}'"):
        from_hf_config(path)


def test_missing_field_is_named(tmp_path):
    fields = dict(PUBLIC_CONFIGS["bert-base"])
    del fields["intermediate_size"]
    with pytest.raises(InputError, match="'intermediate_size' is missing"):
        from_hf_config(write(tmp_path, fields))


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", "\x00\xff", "{}"])
def test_unusable_files_are_input_errors(tmp_path, text):
    with pytest.raises(InputError, match="config.json"):
        from_hf_config(write(tmp_path, text))


def test_huge_integer_is_input_error():
    fields = dict(PUBLIC_CONFIGS["gpt2"], layer_norm_epsilon=10**400)
    with pytest.raises(InputError, match="'layer_norm_epsilon'"):
        parse_hf_config(fields, "config.json", "g")


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        from_hf_config(tmp_path / "config.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=3),
    max_leaves=8,
)  # fmt: skip


def parse_or_input_error(data: object) -> None:
    try:
        result = parse_hf_config(data, "config.json", "fuzz")
    except InputError as err:
        assert "config.json" in str(err) and "\n" not in str(err)
    else:
        assert isinstance(result, ModelConfig)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_arbitrary_json(data):
    parse_or_input_error(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(PUBLIC_CONFIGS)),
    st.lists(st.tuples(st.integers(0, 40), json_values), max_size=3),
    st.lists(st.integers(0, 40), max_size=2),
    st.dictionaries(st.text(max_size=12), json_values, max_size=2),
)
def test_fuzz_mutated_valid_configs(name, changes, dropped, extra):
    fields = dict(PUBLIC_CONFIGS[name])
    keys = sorted(fields)
    for index in dropped:
        fields.pop(keys[index % len(keys)], None)
    for index, value in changes:
        fields[keys[index % len(keys)]] = value
    fields.update(extra)
    parse_or_input_error(fields)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(PUBLIC_CONFIGS)), st.sampled_from(range(12)), json_values)
def test_fuzz_one_field_replaced(name, index, value):
    fields = dict(PUBLIC_CONFIGS[name])
    fields[sorted(fields)[index % len(fields)]] = value
    parse_or_input_error(fields)
