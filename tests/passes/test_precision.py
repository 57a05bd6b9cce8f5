"""round_activations and the static value-cache scale: the graph states the datapath's numerics."""

from dataclasses import replace

import numpy as np

from sparseflow.ir.interpreter import Interpreter, prefill_inputs
from sparseflow.ir.models.config import BUILTINS
from sparseflow.ir.models.zoo import build_graph, load_model
from sparseflow.ir.ops import Op
from sparseflow.passes.recipe import recipe_from_dict


def compress(passes):
    recipe = recipe_from_dict({"passes": passes}, "test.yaml")
    return recipe.apply_model(
        load_model("tiny-llama", "prefill"), load_model("tiny-llama", "decode")
    )


def test_every_read_activation_is_fp16_representable():
    prefill, decode = compress([{"pass": "quantize_activations"}, {"pass": "round_activations"}])
    casts = prefill.nodes_of(Op.CAST)
    assert casts and all(n.type.dtype.name == "F16" for n in casts)
    names = tuple(n.name for n in casts)
    ids = np.random.default_rng(0).integers(0, 256, (1, 7))
    values = Interpreter(replace(prefill, outputs=names)).run(prefill_inputs(prefill, ids))
    for name, v in values.items():
        finite = v[np.isfinite(v)]
        np.testing.assert_array_equal(finite, finite.astype(np.float16).astype(np.float32), name)
    norm = prefill.weights["layers.0.attn_norm"]
    assert norm.dtype == np.float16 and decode.weights["layers.0.attn_norm"] is norm
    assert prefill.node("logits").op is Op.CAST  # outputs keep their names


def test_fp16_changes_logits_a_little():
    dense, _ = compress([])
    rounded, _ = compress([{"pass": "round_activations"}])
    ids = np.random.default_rng(1).integers(0, 256, (1, 9))
    a = Interpreter(dense).run(prefill_inputs(dense, ids))["logits"]
    b = Interpreter(rounded).run(prefill_inputs(rounded, ids))["logits"]
    err = np.linalg.norm(a - b) / np.linalg.norm(a)
    assert 0 < err < 1e-2


def test_static_value_scale_is_calibrated_once_and_shared():
    prefill, decode = compress([{"pass": "quantize_kv_cache", "options": {"static_values": True}}])
    scale = prefill.weights["v.0.scale"]
    assert scale.shape == (1,) and scale[0] > 0 and decode.weights["v.1.scale"] is not None
    assert decode.weights["v.0.scale"] is scale
    ids = np.random.default_rng(2).integers(0, 256, (1, 6))
    out = Interpreter(prefill).run(prefill_inputs(prefill, ids))
    codes = out["v.0"] / scale[0]
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)
    assert np.abs(codes).max() <= 127
    assert str(decode.node("past_v.0").type).endswith("q=int8:tensor")


def test_scale_factors_and_norm_eps_are_held_in_fp16():
    """The SFU holds the scale factor and the norm eps as FP16 immediates: 1/sqrt(32) and
    LLaMA's eps 1e-6 (an FP16 subnormal, 1.0133e-6) become their nearest FP16 values."""
    config = replace(BUILTINS["tiny-llama"], name="hd32", num_heads=2, num_kv_heads=2, head_dim=32,
                     norm_eps=1e-6)  # fmt: skip
    recipe = recipe_from_dict({"passes": [{"pass": "round_activations"}]}, "test.yaml")
    graph = recipe.apply(build_graph(config, "prefill"))
    factors = [float(n.attr("factor")) for n in graph.nodes_of(Op.SCALE)]
    exact = np.float32(1 / np.sqrt(32))
    assert factors and all(f == float(np.float16(exact)) != float(exact) for f in factors)
    eps = [float(n.attr("eps")) for n in graph.nodes_of(Op.RMSNORM)]
    assert eps and all(e == float(np.float16(1e-6)) != 1e-6 for e in eps)


def test_an_eps_below_fp16_is_its_smallest_subnormal():
    """BERT's LayerNorm eps 1e-12 is 0 in FP16; the SFU holds 2^-24 instead (never 0)."""
    config = replace(BUILTINS["tiny-llama"], name="eps12", norm_eps=1e-12)
    recipe = recipe_from_dict({"passes": [{"pass": "round_activations"}]}, "test.yaml")
    graph = recipe.apply(build_graph(config, "prefill"))
    eps = {float(n.attr("eps")) for n in graph.nodes_of(Op.RMSNORM)}
    assert eps == {2.0**-24} and float(np.float16(1e-12)) == 0
