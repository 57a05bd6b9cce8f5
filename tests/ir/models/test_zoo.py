"""load_model: every kind of source, and bad sources as InputErrors listing the built-ins."""

import json

import pytest

from sparseflow.ir.errors import InputError
from sparseflow.ir.models import load_config, load_model
from sparseflow.ir.ops import Op
from sparseflow.ir.serialize import write_graph

from ..hf_configs import PUBLIC_CONFIGS


def test_builtin_shape_only_except_tiny_llama():
    assert len(load_model("gpt2", "decode").weights) == 0
    tiny = load_model("tiny-llama", "decode")
    assert len(tiny.weights) == len(tiny.nodes_of(Op.WEIGHT))


def test_config_json_path_is_shape_only(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(PUBLIC_CONFIGS["opt-125m"]))
    graph = load_model(str(path), "decode", batch=2)
    assert graph.meta_dict["family"] == "opt" and len(graph.weights) == 0
    assert load_config(str(path)) == load_config(str(tmp_path))


def test_graph_file_round_trips_and_checks_phase(tmp_path):
    path = tmp_path / "model.graph"
    original = load_model("tiny-llama", "decode")
    write_graph(original, path)
    assert str(load_model(str(path), "decode")) == str(original)
    with pytest.raises(InputError, match="holds the decode graph.*'prefill' was asked for"):
        load_model(str(path), "prefill")


def test_a_compiled_folder_is_a_model_source(tmp_path):
    prefill, decode = load_model("tiny-llama", "prefill"), load_model("tiny-llama", "decode")
    (tmp_path / "graph").write_text(f"{prefill}\n{decode}\n")
    assert str(load_model(str(tmp_path), "prefill")) == str(prefill)
    assert str(load_model(str(tmp_path / "graph"), "decode")) == str(decode)


def test_unknown_source_lists_builtins():
    with pytest.raises(InputError, match="not a built-in.*llama2-7b.*bert-base"):
        load_model("no-such-model", "decode")


def test_folder_without_config_is_input_error(tmp_path):
    with pytest.raises(InputError, match="config.json"):
        load_model(str(tmp_path), "decode")


def test_garbage_graph_file_is_input_error(tmp_path):
    path = tmp_path / "model.graph"
    path.write_bytes(b"\x00\xffgraph")
    with pytest.raises(InputError, match="model.graph"):
        load_model(str(path), "decode")
