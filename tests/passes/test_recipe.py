"""Pass manager and recipes: graph-level passes on a small two-layer graph, recipe errors."""

import numpy as np
import pytest

from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import GraphBuilder
from sparseflow.ir.interpreter import run_reference
from sparseflow.ir.ops import Op
from sparseflow.ir.types import SparsePattern, TensorType
from sparseflow.passes.manager import all_passes, get_pass
from sparseflow.passes.recipe import list_recipes, load_recipe, recipe_from_dict


def two_layer_graph(with_weights=True, k=48):
    rng = np.random.default_rng(0)
    b = GraphBuilder("two")
    x = b.input("x", TensorType((1, 5, k), DType.F32))
    values = {"layers.0.fc": rng.standard_normal((32, k)), "lm_head": rng.standard_normal((8, 32))}
    for name, value in values.items():
        stored = value if with_weights else None
        b.weight(name, TensorType(value.shape, DType.F32), "linear", stored)
    y = b.add(Op.LINEAR, [b.add(Op.LINEAR, [x, "layers.0.fc"]), "lm_head"], name="y")
    return b.build([y])


def apply(passes, graph):
    return recipe_from_dict({"passes": passes}, "test.yaml").apply(graph)


@pytest.mark.parametrize(
    "step, pattern, density",
    [
        ({"pass": "sparsify_nm", "options": {"n": 2, "m": 4}}, SparsePattern.NM, 0.5),
        ({"pass": "sparsify_unstructured", "options": {"sparsity": 0.75}}, None, 0.25),
        ({"pass": "sparsify_block", "options": {"block": [4, 1], "sparsity": 0.5}}, None, 0.5),
        ({"pass": "sparsify_flightllm", "options": {"density": 0.5}}, None, 0.5),
    ],
)
def test_sparsify_passes_store_the_pattern(step, pattern, density):
    graph = two_layer_graph()
    step = {**step, "layers": ["layers.*"]}
    out = apply([step], graph)
    node = out.node("layers.0.fc")
    assert node.type.sparse is not None and out.node("lm_head").type.sparse is None
    if pattern:
        assert node.type.sparse.pattern is pattern
    dense = out.weights.dense("layers.0.fc")
    original = graph.weights.dense("layers.0.fc")
    assert (dense != 0).mean() == pytest.approx(density, abs=0.02)
    kept = dense != 0
    np.testing.assert_array_equal(dense[kept], original[kept].astype(np.float32))
    shape_only = apply([step], two_layer_graph(with_weights=False))
    assert shape_only.node("layers.0.fc").type.sparse.pattern is node.type.sparse.pattern


def test_activation_quantization_is_shared_and_close():
    graph = two_layer_graph()
    out = apply([{"pass": "quantize_activations", "options": {"bits": 8}}], graph)
    assert [n.name for n in out.nodes_of(Op.QUANTIZE)] == ["x.q8", "linear.q8"]
    x = np.random.default_rng(1).standard_normal((1, 5, 48)).astype(np.float32)
    ref, q = run_reference(graph, {"x": x})["y"], run_reference(out, {"x": x})["y"]
    error = np.linalg.norm(q - ref) / np.linalg.norm(ref)
    assert 0 < error < 0.02


def test_builtin_recipes_load():
    assert {"dense", "2:4"} <= set(list_recipes())
    assert load_recipe("dense").steps == ()
    assert load_recipe("2:4").steps[0].pass_name == "sparsify_nm"


def test_every_pass_has_a_docstring_and_options_type():
    for pass_def in all_passes():
        assert pass_def.doc, pass_def.name
        assert pass_def.options.__dataclass_fields__ is not None


@pytest.mark.parametrize(
    "passes, message",
    [
        ([{"pass": "prune_all"}], r"test.yaml, step 1: unknown pass 'prune_all'"),
        (
            [{"pass": "sparsify_nm", "options": {"n": 5, "m": 4}}],
            r"test.yaml, step 1: pass 'sparsify_nm': option 'n' must be in 1..m=4",
        ),
        (
            [{"pass": "sparsify_nm", "options": {"n": 2, "m": 4, "k": 1}}],
            r"pass 'sparsify_nm': unknown option 'k'",
        ),
        (
            [{"pass": "sparsify_nm", "layers": ["decoder.*"], "options": {"n": 2, "m": 4}}],
            r"step 1: pass 'sparsify_nm': layer pattern 'decoder.\*' matches no layer",
        ),
        ([{"pass": "sparsify_nm", "colour": 1}], r"unknown field 'colour'"),
    ],
)
def test_bad_recipes_name_file_pass_and_option(passes, message):
    with pytest.raises(InputError, match=message):
        apply(passes, two_layer_graph())


def test_recipe_files_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("passes: [\n")
    with pytest.raises(InputError, match=r"bad.yaml: malformed YAML"):
        load_recipe(str(bad))
    with pytest.raises(InputError, match=r"unknown recipe 'nope' \(known: .*dense"):
        load_recipe("nope")


def test_unknown_pass_lists_known_ones():
    with pytest.raises(InputError, match="known: .*sparsify_nm"):
        get_pass("nope")
