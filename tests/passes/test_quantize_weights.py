"""Weight quantization passes on tiny-llama: storage, types, reuse across phases, errors."""

from __future__ import annotations

import numpy as np
import pytest

from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight, stored_mask
from sparseflow.ir.models.zoo import load_model
from sparseflow.ir.ops import Op, storage_bytes
from sparseflow.passes.recipe import load_recipe, recipe_from_dict, shorthand_recipe

CASES = {
    "int8": [{"pass": "quantize_int8"}],
    "int4-g4-asym": [{"pass": "quantize_int4", "options": {"group_size": 4}}],
    "int4-channel-sym": [
        {"pass": "quantize_int4", "options": {"group_size": "channel", "symmetric": True}}
    ],
    "gptq-on-2:4": [
        {"pass": "sparsify_nm", "options": {"n": 2, "m": 4}},
        {"pass": "quantize_int4", "options": {"group_size": 4, "method": "gptq"}},
    ],
    "int4-on-block": [
        {"pass": "sparsify_block", "options": {"block": [4, 1], "sparsity": 0.7}},
        {"pass": "quantize_int4", "options": {"group_size": "channel"}},
    ],
    "int8-on-csr": [
        {"pass": "sparsify_unstructured", "options": {"sparsity": 0.6}},
        {"pass": "quantize_int8"},
    ],
    "fp4-searched": [{"pass": "quantize_fp4"}],
    "olive": [{"pass": "quantize_olive"}],
    "smoothquant-int8": [{"pass": "smoothquant"}, {"pass": "quantize_int8"}],
}


def compress(passes, batch=1):
    recipe = recipe_from_dict({"passes": passes}, "test.yaml")
    return recipe.apply_model(
        load_model("tiny-llama", "prefill", batch), load_model("tiny-llama", "decode", batch)
    )


def linear_weights(graph):
    return [n for n in graph.nodes_of(Op.WEIGHT) if n.attr("role") == "linear"]


@pytest.mark.parametrize("case", CASES)
def test_storage_types_and_bytes_agree_with_shape_only(case):
    prefill, decode = compress(CASES[case])
    for node in linear_weights(prefill):
        value = prefill.weights[node.name]
        assert isinstance(value, PackedWeight) and value.type == node.type
        assert value.nbytes == storage_bytes(node.type)
        assert decode.weights[node.name] is value  # decode reuses the prefill's weights


@pytest.mark.parametrize("case", CASES)
def test_quantized_weights_stay_close_and_keep_the_sparsity_mask(case):
    smoothed = case.startswith("smoothquant")
    dense = compress(CASES[case][:1])[0] if smoothed else load_model("tiny-llama", "prefill")
    prefill, _ = compress(CASES[case])
    for node in linear_weights(prefill):
        w = dense.weights.dense(node.name)
        packed = prefill.weights[node.name]
        q = packed.to_dense()
        if node.type.sparse is not None:
            mask = stored_mask(packed)
            assert not np.any(q[~mask])
            w = np.where(mask, w, 0)
        err = np.linalg.norm(q - w) / np.linalg.norm(w)
        assert 0 < err < 0.25, (node.name, err)


def test_smoothquant_preserves_the_function():
    from sparseflow.ir.interpreter import Interpreter, prefill_inputs

    dense = load_model("tiny-llama", "prefill")
    smoothed, _ = compress([{"pass": "smoothquant"}])
    ids = np.random.default_rng(5).integers(0, 256, (1, 9))
    a = Interpreter(dense).run(prefill_inputs(dense, ids))["logits"]
    b = Interpreter(smoothed).run(prefill_inputs(smoothed, ids))["logits"]
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    w0 = dense.weights.dense("layers.0.attn.q_proj")
    assert not np.allclose(smoothed.weights.dense("layers.0.attn.q_proj"), w0)


def test_shape_only_graphs_get_the_same_types():
    with_values, _ = compress(CASES["gptq-on-2:4"])
    shape_only = recipe_from_dict({"passes": CASES["gptq-on-2:4"]}, "t").apply(
        load_model("llama2-7b", "prefill")
    )
    assert (
        str(with_values.node("layers.0.attn.q_proj").type).split("[")[0]
        == str(shape_only.node("layers.0.attn.q_proj").type).split("[")[0]
    )


@pytest.mark.parametrize(
    "passes, message",
    [
        (
            [{"pass": "quantize_int4", "options": {"group_size": 48}}],
            "group_size' 48 does not divide",
        ),
        ([{"pass": "quantize_int8"}, {"pass": "quantize_int4"}], "already quantized"),
        (
            [{"pass": "sparsify_nm", "options": {"n": 2, "m": 4}}, {"pass": "quantize_olive"}],
            "dense weights only",
        ),
        ([{"pass": "quantize_int4", "options": {"method": "awq"}}], "option 'method'"),
    ],
)
def test_bad_quantization_names_recipe_pass_and_layer(passes, message):
    with pytest.raises(InputError, match=message) as err:
        compress(passes)
    assert "test.yaml" in str(err.value)


def test_calibrating_a_decode_graph_alone_is_refused():
    recipe = recipe_from_dict({"passes": [{"pass": "quantize_fp4"}]}, "test.yaml")
    with pytest.raises(InputError, match="decode graph"):
        recipe.apply(load_model("tiny-llama", "decode"))


def test_flightllm_recipe_on_llama2_7b_weight_bytes():
    graph = load_recipe("flightllm").apply(load_model("llama2-7b", "decode"))
    total = sum(storage_bytes(n.type) for n in graph.nodes_of(Op.WEIGHT))
    assert 2.9e9 <= total <= 4.0e9


@pytest.mark.parametrize(
    "sparsity, quant, passes",
    [
        ("2:4", None, ["sparsify_nm"]),
        ("block4x1:0.9", "int8", ["sparsify_block", "quantize_int8", "quantize_activations"]),
        (
            "0.5",
            "int8:smooth",
            ["smoothquant", "sparsify_unstructured", "quantize_int8", "quantize_activations"],
        ),
        (None, "int4:g64:gptq", ["quantize_int4"]),
        ("flightllm:0.5", "olive4", ["sparsify_flightllm", "quantize_olive"]),
    ],
)
def test_shorthands_build_recipes(sparsity, quant, passes):
    assert [s.pass_name for s in shorthand_recipe(sparsity, quant).steps] == passes


@pytest.mark.parametrize(
    "sparsity, quant", [("2:x", None), ("block4:0.9", None), (None, "int3"), (None, "int4:q7")]
)
def test_bad_shorthands_exit_with_a_message(sparsity, quant):
    with pytest.raises(InputError, match="--sparsity|--quant"):
        shorthand_recipe(sparsity, quant)


def test_kv_cache_quantization_covers_prefill_outputs_and_attention():
    passes = [{"pass": "quantize_kv_cache"}, {"pass": "quantize_attention"}]
    prefill, decode = compress(passes)
    for graph in (prefill, decode):
        for name in graph.outputs[1:]:
            assert graph.node(name).type.quant is not None, name
        for node in graph.nodes_of(Op.MATMUL):
            assert all(graph.node(i).type.quant is not None for i in node.inputs), node.name
    # the prefill cache output is the quantized value the decode step reads back
    from sparseflow.ir.interpreter import Interpreter, prefill_inputs

    ids = np.random.default_rng(2).integers(0, 256, (1, 5))
    k = Interpreter(prefill).run(prefill_inputs(prefill, ids))["k.0"]
    scale = np.abs(k).max(axis=-1, keepdims=True) / 127
    np.testing.assert_allclose(k / scale, np.round(k / scale), atol=1e-3)


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_default_int4_group_falls_back_to_one_group_per_row_where_k_is_smaller(method):
    quant = "int4:gptq" if method == "gptq" else "int4"
    recipe = shorthand_recipe(None, quant)
    prefill, decode = recipe.apply_model(
        load_model("tiny-llama", "prefill"), load_model("tiny-llama", "decode")
    )
    per_row = recipe_from_dict(
        {"passes": [{"pass": "quantize_int4", "options": {"group_size": "channel",
                                                          "method": method}}]}, "t"
    ).apply(load_model("tiny-llama", "prefill"))  # fmt: skip
    for node in linear_weights(prefill)[:-1]:  # the LM head stays float
        assert node.type.quant.granularity == "channel" and node.attr("group_fallback") == 128
        assert decode.node(node.name).attr("group_fallback") == 128
        np.testing.assert_array_equal(
            prefill.weights.dense(node.name), per_row.weights.dense(node.name)
        )


def test_default_int4_group_keeps_groups_where_it_divides_k():
    graph = shorthand_recipe(None, "int4").apply(load_model("llama2-7b", "prefill"))
    node = graph.node("layers.0.attn.q_proj")
    assert node.type.quant.group_size == 128 and node.attr("group_fallback") is None


@pytest.mark.parametrize("quant", ["int4:g128", "int4:g128:gptq"])
def test_explicit_int4_group_that_cannot_apply_is_an_error(quant):
    with pytest.raises(InputError, match="group_size' 128 does not divide K = 64"):
        shorthand_recipe(None, quant).apply(load_model("tiny-llama", "prefill"))
