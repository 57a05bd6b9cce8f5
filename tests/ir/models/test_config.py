"""ModelConfig: built-ins equal the published Hugging Face configs; bad fields are named."""

import dataclasses

import pytest

from sparseflow.ir.errors import InputError
from sparseflow.ir.models import BUILTINS, builtin_config, list_models
from sparseflow.ir.models.hf_config import parse_hf_config

from ..hf_configs import PUBLIC_CONFIGS

REQUIRED = {"llama2-7b", "llama2-13b", "tinyllama-1.1b", "opt-6.7b", "opt-125m", "gpt2"}
REQUIRED |= {"bert-base", "tiny-llama", "llama2-70b", "llama3-8b", "mistral-7b", "mixtral-8x7b"}


def test_builtin_names_are_exactly_the_documented_ones():
    assert set(BUILTINS) == REQUIRED == set(list_models())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_builtin_equals_parsed_public_config(name):
    parsed = parse_hf_config(PUBLIC_CONFIGS[name], "config.json", name)
    assert parsed == dataclasses.replace(BUILTINS[name], random_seed=None)


def test_tiny_llama_is_small_gqa_with_seeded_weights():
    c = BUILTINS["tiny-llama"]
    assert (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads) == (2, 64, 4, 2)
    assert c.kv_groups == 2 and c.random_seed is not None


def test_unknown_builtin_lists_known_names():
    with pytest.raises(InputError, match="llama2-7b.*tiny-llama"):
        builtin_config("llama9-8b")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"num_kv_heads": 3}, "num_kv_heads"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"family": "t5"}, "family"),
        ({"activation": "tanh"}, "activation"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"rope_theta": 0.0}, "rope_theta"),
        ({"head_dim": 15}, "head_dim"),
        ({"vocab_size": True}, "vocab_size"),
    ],
)
def test_bad_field_is_named(change, field):
    with pytest.raises(InputError, match=f"'{field}'"):
        BUILTINS["tiny-llama"].replace(**change)


def test_non_llama_head_dim_must_fill_hidden():
    with pytest.raises(InputError, match="'head_dim'"):
        BUILTINS["gpt2"].replace(head_dim=32)


def test_meta_is_json_friendly():
    meta = BUILTINS["opt-125m"].to_meta()
    assert meta["weight_dtype"] == "f16" and meta["position_offset"] == 2
