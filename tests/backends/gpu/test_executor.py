"""Check the GPU executor: whole models against the numpy reference of the same compressed
graph, the kernel plan, decode-attention fusion, weight upload and errors.

On the CUDA simulator every kernel runs as Python threads, so the models are tiny and the
requests short (2 prompt tokens, 1 decode step).
"""

import json

import numpy as np
import pytest

from sparseflow.backends.gpu import using_simulator
from sparseflow.backends.gpu.executor import GpuProgram, compile_graphs
from sparseflow.backends.gpu.fusion import fuse_decode_attention
from sparseflow.backends.gpu.node_kernels import token_codes
from sparseflow.backends.gpu.plan import GpuKernel, plan_graph
from sparseflow.backends.registry import CompileRequest, compile_model
from sparseflow.backends.runner import generate, prompt_ids, rel_error
from sparseflow.hw_models.loader import load_hw
from sparseflow.ir.dtypes import symmetric_scale
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Interpreter
from sparseflow.ir.models.config import BUILTINS
from sparseflow.ir.models.zoo import build_graph, load_model
from sparseflow.ir.ops import Op
from sparseflow.passes.recipe import recipe_from_dict

TOLERANCE = 1e-3  # logits rel error vs the reference of the same compressed graph


def _step(name: str, layers: list[str] | None = None, **options: object) -> dict:
    step = {"pass": name, "options": options}
    return step if layers is None else {**step, "layers": layers}


MIXED = [
    _step("sparsify_nm", ["*.mlp.*", "*.attn.o_proj"], n=2, m=4),
    _step("quantize_int8", ["*.attn.*"]),
    _step("quantize_int4", ["lm_head"], group_size=32),
    {"pass": "quantize_activations", "exclude": ["lm_head"]},
]


def _compress(steps: list[dict], *graphs: Graph) -> list[Graph]:
    recipe = recipe_from_dict({"name": "test", "passes": steps}, "test")
    return [recipe.apply(g) for g in graphs]


def _tiny_llama(batch: int = 1) -> tuple[Graph, Graph]:
    return load_model("tiny-llama", "prefill", batch), load_model("tiny-llama", "decode", batch)


def _tiny_gpt2() -> tuple[Graph, Graph]:
    config = BUILTINS["gpt2"].replace(
        name="tiny-gpt2", vocab_size=64, hidden_size=32, num_layers=1, num_heads=2,
        num_kv_heads=2, head_dim=16, intermediate_size=64, max_positions=32, random_seed=0,
    )  # fmt: skip
    return build_graph(config, "prefill"), build_graph(config, "decode")


def _check_generation(prefill: Graph, decode: Graph, prompt_len: int = 2) -> GpuProgram:
    """Run prefill + one decode step on the GPU and on the reference; return the program."""
    program = compile_graphs(prefill, decode, "a100")
    gpu_prefill, gpu_decode = program.runners()
    batch = int(prefill.meta_dict["batch"])
    ids = prompt_ids(int(prefill.meta_dict["vocab_size"]), batch, prompt_len)
    ref = generate(Interpreter(prefill), Interpreter(decode), prefill, ids, 2)
    got = generate(gpu_prefill, gpu_decode, prefill, ids, 2, forced=ref.tokens)
    assert rel_error(got, ref) < TOLERANCE
    return program


def test_tiny_llama_2_4_int8_int4_matches_reference() -> None:
    program = _check_generation(*_compress(MIXED, *_tiny_llama()))
    counts = program.summary()["graphs"]["decode"]["kernel_counts"]
    # 2 layers: 3 MLP 2:4 + o_proj 2:4 with int8 values, q/k/v int8, lm_head int4
    assert counts["spmm_24"] == 8 and counts["int8_gemm"] == 6 and counts["int4_gemm"] == 1
    assert counts["decode_attention"] == 2 and counts["rope"] == 4 and counts["rmsnorm"] == 5
    assert "gemm_dequant" not in counts


def test_tiny_llama_dense_fp32_batch_2_matches_reference() -> None:
    program = _check_generation(*_tiny_llama(batch=2))
    assert program.summary()["graphs"]["prefill"]["kernel_counts"]["gemm"] == 15


def test_tiny_gpt2_with_biases_tied_head_and_a_fallback_layer() -> None:
    recipe = [_step("sparsify_unstructured", ["*.fc1"], sparsity=0.5)]
    program = _check_generation(*_compress(recipe, *_tiny_gpt2()))
    decode = program.summary()["graphs"]["decode"]
    assert decode["dequantized_fallbacks"] == ["layers.0.mlp.up"]
    assert decode["kernel_counts"]["layernorm"] == 3
    assert decode["kernel_counts"]["decode_attention"] == 1


def test_weights_are_uploaded_once_for_prefill_and_decode() -> None:
    prefill, decode = _tiny_gpt2()
    program = compile_graphs(prefill, decode)
    program.runners()
    on_device = {n.inputs[1] for n in prefill.nodes_of(Op.LINEAR)} | {
        p for n in prefill.nodes_of(Op.LAYERNORM) for p in n.inputs[1:]
    }  # linear biases and position embeddings stay on the host
    assert program.device.nbytes == sum(prefill.weights.dense(n).nbytes for n in on_device)


def test_plan_labels_every_storage() -> None:
    recipe = [
        _step("sparsify_unstructured", ["*.0.mlp.gate_proj"], sparsity=0.5),
        _step("sparsify_nm", ["*.0.mlp.up_proj"], n=8, m=16),
        _step("quantize_int8", ["*.1.mlp.*"]),
        _step("quantize_int4", ["*.0.attn.q_proj"], group_size=32),
    ]
    (graph,) = _compress(recipe, load_model("tiny-llama", "decode"))
    kernels = {n.node: (n.kernel, n.reason) for n in plan_graph(graph).nodes}
    assert kernels["layers.0.mlp.gate"][0] is GpuKernel.GEMM_DEQUANT
    assert "unstructured" in kernels["layers.0.mlp.gate"][1]
    assert kernels["layers.0.mlp.up"][0] is GpuKernel.GEMM_DEQUANT
    assert kernels["layers.1.mlp.up"] == (
        GpuKernel.GEMM_DEQUANT,
        "q=int8:channel with float activations: decoded once to f32",
    )
    assert kernels["layers.0.attn.q"][0] is GpuKernel.INT4
    assert kernels["layers.0.attn.k"][0] is GpuKernel.GEMM
    assert kernels["layers.0.mlp.act"][0] is GpuKernel.HOST


def test_fusion_keeps_the_decode_graph_equivalent() -> None:
    prefill, decode = _tiny_llama()
    fused = fuse_decode_attention(decode)
    assert [n.name for n in fused.nodes if n.op is Op.DECODE_ATTENTION] == [
        "layers.0.attn.context",
        "layers.1.attn.context",
    ]
    assert not fused.nodes_of(Op.REPEAT_KV) and not fused.nodes_of(Op.SOFTMAX)
    assert fuse_decode_attention(prefill) is prefill  # T queries: per-op kernels
    rng = np.random.default_rng(0)
    feed = {"ids": np.array([[5]]), "pos": np.array([3])}
    for layer in range(2):
        for cache in ("k", "v"):
            feed[f"past_{cache}.{layer}"] = rng.standard_normal((1, 2, 3, 16)).astype(np.float32)
    expected = Interpreter(decode).run(feed)["logits"]
    np.testing.assert_array_equal(Interpreter(fused).run(feed)["logits"], expected)


def test_fusion_without_a_scale_node_as_in_opt() -> None:
    config = BUILTINS["opt-125m"].replace(
        name="tiny-opt", vocab_size=64, hidden_size=32, num_layers=1, num_heads=2,
        num_kv_heads=2, head_dim=16, intermediate_size=64, max_positions=40, random_seed=0,
    )  # fmt: skip
    decode = build_graph(config, "decode")
    fused = fuse_decode_attention(decode)
    (node,) = fused.nodes_of(Op.DECODE_ATTENTION)
    assert node.attr("scale") == 1.0 and node.attr("n_rep") == 1  # OPT scales q itself
    rng = np.random.default_rng(0)
    feed = {"ids": np.array([[5]]), "pos": np.array([3])}
    feed |= {f"past_{c}.0": rng.standard_normal((1, 2, 3, 16)).astype(np.float32) for c in "kv"}
    expected = Interpreter(decode).run(feed)["logits"]
    np.testing.assert_array_equal(Interpreter(fused).run(feed)["logits"], expected)


def test_token_codes_recover_the_quantize_codes_exactly() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 40)).astype(np.float32) * np.array([[1e-3], [1], [30], [0], [7]])
    for bits in (8, 4):
        held = Op.QUANTIZE.reference([x.astype(np.float32)], {"bits": bits})
        codes, scale = token_codes(held, bits)
        qmax = 2 ** (bits - 1) - 1
        scale_ref = symmetric_scale(np.abs(x).max(axis=1), qmax)
        expected = np.clip(np.round(x / scale_ref[:, None]), -qmax, qmax)
        np.testing.assert_array_equal(codes, expected)
        np.testing.assert_allclose(codes * scale[:, None], held, rtol=1e-6)


def test_shape_only_graph_compiles_but_cannot_run(tmp_path) -> None:
    prefill, decode = load_model("llama2-7b", "prefill"), load_model("llama2-7b", "decode")
    hw = load_hw("a100")
    program = compile_model(CompileRequest(prefill, decode, hw))
    assert isinstance(program, GpuProgram)
    (path,) = program.write(tmp_path)
    text = path.read_text()
    assert "%layers.31.mlp.down" in text and "decode_attention" in text
    summary = json.loads(json.dumps(program.summary()))
    assert summary["cuda_simulator"] is using_simulator()
    assert summary["target"] == "a100"
    with pytest.raises(InputError, match=r"node %layers.0.attn_in \(rmsnorm\).*no value"):
        program.runners()


def test_corrupt_2_4_storage_names_the_node() -> None:
    (graph,) = _compress([_step("sparsify_nm", n=2, m=4)], load_model("tiny-llama", "decode"))
    name = "layers.0.mlp.up_proj"
    packed = graph.weights[name]
    bad = PackedWeight(packed.type, {**packed.arrays, "indices": packed.arrays["indices"][:, ::-1]})
    broken = graph.with_nodes(graph.nodes, weights=graph.weights.replace({name: bad}))
    with pytest.raises(InputError, match=r"node %layers.0.mlp.up \(spmm_24\).*ascending"):
        compile_graphs(broken, None).runners()


def test_program_lists_every_compute_node(tmp_path) -> None:
    prefill, decode = _tiny_gpt2()
    program = compile_graphs(prefill, decode, "a100")
    lines = program.write(tmp_path)[0].read_text().splitlines()
    computed = [n for g in (prefill, fuse_decode_attention(decode)) for n in g.nodes]
    node_lines = [line for line in lines if line.startswith("  %")]
    assert len(node_lines) == sum(not n.op.is_source for n in computed)
