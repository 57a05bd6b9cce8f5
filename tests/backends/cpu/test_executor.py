"""The CPU executor end to end: compressed models run on the planned kernels agree with the
numpy reference of the same compressed graph over prefill and decode steps; the plan names
each layer's kernel; shape-only graphs plan but do not run; kernels compile once."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparseflow.backends.cpu.executor import compile_graphs
from sparseflow.backends.cpu.plan import Kernel, KernelPolicy
from sparseflow.backends.registry import CompileRequest, compile_model
from sparseflow.backends.runner import generate, prompt_ids, rel_error
from sparseflow.hw_models.loader import load_hw
from sparseflow.ir.errors import InputError
from sparseflow.ir.interpreter import Interpreter
from sparseflow.ir.models import BUILTINS, build_graph
from sparseflow.ir.models.zoo import load_model
from sparseflow.ir.ops import Op
from sparseflow.passes.recipe import recipe_from_dict

BLOCK_90 = {"pass": "sparsify_block", "options": {"block": [4, 1], "sparsity": 0.9}}
ACT_8 = {"pass": "quantize_activations", "options": {"bits": 8}}
INT8_W = {"pass": "quantize_int8"}
NM_24 = {"pass": "sparsify_nm", "options": {"n": 2, "m": 4}}
UNSTRUCTURED_80 = {"pass": "sparsify_unstructured", "options": {"sparsity": 0.8}}
# Recipe steps and the kernel every linear must get under policy STORAGE.
CASES = {
    "block4x1+a8": ([BLOCK_90, ACT_8], {Kernel.BSR}),
    "block4x1+w8a8": ([BLOCK_90, INT8_W, ACT_8], {Kernel.INT8_BSR}),
    "w8a8": ([INT8_W, ACT_8], {Kernel.INT8_GEMM}),
    "2:4": ([NM_24], {Kernel.NM}),
    "unstructured": ([UNSTRUCTURED_80], {Kernel.CSR}),
    "int4": ([{"pass": "quantize_int4", "options": {"group_size": 4}}], {Kernel.INT4}),
    "2:4+w8": ([NM_24, INT8_W], {Kernel.NM}),
    "flightllm": (
        [{"pass": "sparsify_flightllm", "options": {"density": 0.5}},
         {"pass": "quantize_int4", "options": {"group_size": "channel", "symmetric": True}},
         ACT_8, {"pass": "quantize_kv_cache", "options": {"bits": 8}}],
        {Kernel.FALLBACK},
    ),
}  # fmt: skip


def compress(steps, source="tiny-llama", batch=1):
    """Return the compressed (prefill, decode) graphs of a built-in name or a config."""
    recipe = recipe_from_dict({"passes": steps}, "test.yaml")
    if isinstance(source, str):
        return recipe.apply_model(
            load_model(source, "prefill", batch), load_model(source, "decode", batch)
        )
    decode = build_graph(source, "decode", batch) if source.is_decoder else None
    return recipe.apply_model(build_graph(source, "prefill", batch), decode)


def check_against_reference(prefill, decode, program, batch=1, prompt=5, gen=4):
    """Run reference and program on the same tokens; return the logits' relative error."""
    vocab = prefill.node(prefill.outputs[0]).type.shape[-1]
    ids = prompt_ids(int(vocab), batch, prompt, seed=7)
    ref_decode = Interpreter(decode) if decode is not None else None
    ref = generate(Interpreter(prefill), ref_decode, prefill, ids, gen)
    pre, dec = program.runners()
    out = generate(pre, dec, prefill, ids, gen, forced=ref.tokens)
    assert len(out.logits) == (gen if decode is not None else 1)
    assert np.abs(ref.all_logits()).max() > 0
    return rel_error(out, ref)


@pytest.mark.parametrize("case", list(CASES))
def test_tiny_llama_matches_reference(case):
    steps, kernels = CASES[case]
    batch = 2 if case in ("block4x1+w8a8", "int4") else 1
    prefill, decode = compress(steps, batch=batch)
    program = compile_graphs(
        prefill, decode, batch=batch, prompt_len=5, policy=KernelPolicy.STORAGE
    )
    for plan in program.plans():
        assert {layer.kernel for layer in plan.layers} == kernels, case
    assert check_against_reference(prefill, decode, program, batch) < 1e-3


def test_folded_quantize_and_int8_listing():
    prefill, decode = compress([BLOCK_90, INT8_W, ACT_8])
    program = compile_graphs(prefill, decode, prompt_len=5, policy=KernelPolicy.STORAGE)
    folded = set(program.prefill.folded_quantize)
    assert folded == {n.name for n in prefill.nodes_of(Op.QUANTIZE)} and folded
    # lm_head reads an int8 quantize but keeps its f32 weight: nothing is folded for it.
    partial = compress([{**BLOCK_90}, {**INT8_W, "exclude": ["lm_head"]}, ACT_8])
    plan = compile_graphs(*partial, prompt_len=5, policy=KernelPolicy.STORAGE).prefill
    kernels = {layer.node: layer.kernel for layer in plan.layers}
    assert kernels["logits"] is Kernel.BSR and kernels["layers.0.attn.q"] is Kernel.INT8_BSR
    assert plan.graph.node("logits").inputs[0] not in plan.folded_quantize


def test_registry_compiles_with_the_dispatcher(tmp_path):
    prefill, decode = compress([BLOCK_90, ACT_8], batch=2)
    request = CompileRequest(prefill, decode, load_hw("host-cpu"), batch=2, prompt_len=64)
    program = compile_model(request)
    summary = program.summary()
    json.dumps(summary)
    prefill_kernels = summary["graphs"]["prefill"]["kernel_counts"]
    assert sum(prefill_kernels.values()) == len(prefill.nodes_of(Op.LINEAR))
    assert all(
        layer["reason"].startswith("dispatcher") for layer in summary["graphs"]["decode"]["layers"]
    )
    paths = program.write(tmp_path)
    text = paths[0].read_text()
    assert paths == [tmp_path / "program"]
    assert "%layers.1.mlp.down" in text and "bsr_spmm/tokens" in text and "B  # " in text
    assert check_against_reference(prefill, decode, program, batch=2) < 1e-3


def test_fallback_is_labelled_in_plan_and_summary(tmp_path):
    prefill, _ = compress([{"pass": "quantize_fp4", "layers": ["layers.0.*"]}])
    program = compile_graphs(prefill, None, prompt_len=5)
    (tmp_path / "out").mkdir()
    text = program.write(tmp_path / "out")[0].read_text()
    assert "dequant_dense_blas" in text and "FALLBACK: no CPU kernel for f" in text
    graphs = program.summary()["graphs"]
    assert graphs["prefill"]["fallback_layers"] == 7
    assert check_against_reference(prefill, None, program) < 1e-3


def tiny(name, **changes):
    sizes = dict(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=4,
                 head_dim=8, intermediate_size=64, max_positions=64, random_seed=1)  # fmt: skip
    return BUILTINS[name].replace(name=f"tiny-{name}", **sizes, **changes)


@pytest.mark.parametrize("name", ["gpt2", "bert-base", "opt-125m"])
@pytest.mark.parametrize("steps", [[BLOCK_90, ACT_8], [INT8_W, ACT_8]], ids=["block", "w8a8"])
def test_other_families_match_reference(name, steps):
    prefill, decode = compress(steps, tiny(name), batch=2)
    program = compile_graphs(prefill, decode, batch=2, prompt_len=6, policy=KernelPolicy.STORAGE)
    assert any(layer.bias for layer in program.prefill.layers)
    assert check_against_reference(prefill, decode, program, batch=2, prompt=6) < 1e-3


def test_shape_only_graph_plans_but_does_not_run():
    config = BUILTINS["tiny-llama"].replace(random_seed=None)
    prefill = recipe_from_dict({"passes": [BLOCK_90, INT8_W, ACT_8]}, "t").apply(
        build_graph(config, "prefill")
    )
    program = compile_graphs(prefill, None, prompt_len=16, policy=KernelPolicy.STORAGE)
    assert {layer.kernel for layer in program.prefill.layers} == {Kernel.INT8_BSR}
    assert all(layer.storage_bytes > 0 for layer in program.prefill.layers)
    with pytest.raises(InputError, match="node %layers.0.attn.q .*shape-only"):
        program.runners()


def test_kernels_compile_once_per_process():
    prefill, decode = compress([BLOCK_90, ACT_8])
    program = compile_graphs(prefill, decode, prompt_len=5, policy=KernelPolicy.STORAGE)
    check_against_reference(prefill, decode, program)
    from sparseflow.backends.cpu import _common, bsr_fp32

    dispatchers = [bsr_fp32._bsr_col_tokens, bsr_fp32.bsr_col_decode, _common._transpose_into]
    before = [len(d.signatures) for d in dispatchers]
    assert min(before) >= 1
    again = compile_graphs(prefill, decode, prompt_len=9, policy=KernelPolicy.STORAGE)
    check_against_reference(prefill, decode, again, prompt=9, gen=3)
    assert [len(d.signatures) for d in dispatchers] == before
