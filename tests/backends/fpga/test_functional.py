"""Check the functional model: engine linears are exact, tiny-llama logits track the reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.compiler import FpgaCompiled
from sparseflow.backends.fpga.functional import engine_matmul
from sparseflow.backends.fpga.layout import engine_for
from sparseflow.backends.registry import CompileRequest, compile_model
from sparseflow.backends.runner import generate, prompt_ids, rel_error
from sparseflow.hw_models import load_hw
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Interpreter
from sparseflow.ir.models import load_model
from sparseflow.ir.models.config import BUILTINS
from sparseflow.ir.models.zoo import build_graph
from sparseflow.passes.recipe import load_recipe

# The flightllm graph carries every rounding point of the accelerator (INT8 attention
# operands, a static value-cache scale, FP16 special functions) and both sides round each
# op's result once (docs/fpga_compiler.md): the logits are equal, not close.


def error_vs_reference(prefill: Graph, decode: Graph) -> tuple[FpgaCompiled, float]:
    """Compress with flightllm, compile for the u280 (prompt 6, 3 generated tokens) and
    return the compiled model and its logits' error against the reference's."""
    pre, dec = load_recipe("flightllm").apply_model(prefill, decode)
    compiled = compile_model(CompileRequest(pre, dec, load_hw("u280"), prompt_len=6, gen_len=3))
    ids = prompt_ids(int(pre.meta_dict["vocab_size"]), 1, 6)
    ref = generate(Interpreter(pre), Interpreter(dec), pre, ids, 3)
    fpga = generate(*compiled.runners(), pre, ids, 3, forced=ref.tokens)
    return compiled, rel_error(fpga, ref)


def test_engine_matmul_is_the_integer_product() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(-127, 128, (5, 48))
    w = rng.integers(-7, 8, (40, 48)) * (rng.random((40, 48)) < 0.5)
    w = w.reshape(40, 3, 16)
    w[..., 8:] = 0  # at most 8 non-zeros per 16-block: mode 8:16
    w = w.reshape(40, 48)
    engine = engine_for(load_hw("u280"))
    assert np.array_equal(engine_matmul(engine, 8, x, w), x @ w.T)


def test_tiny_llama_logits_track_the_reference() -> None:
    _, error = error_vs_reference(
        load_model("tiny-llama", "prefill"), load_model("tiny-llama", "decode")
    )
    assert error == 0.0  # bit for bit: one rounding per op on both sides


@pytest.mark.parametrize("family", ["gpt2", "opt-125m"])
def test_biased_tied_models_track_the_reference(family: str) -> None:
    """GPT-2 and OPT: biases (DEQUANT_BIAS), gelu/relu, learned positions, a tied head."""
    config = dataclasses.replace(
        BUILTINS[family], name=f"tiny-{family}", vocab_size=128, hidden_size=64, num_layers=2,
        num_heads=4, num_kv_heads=4, head_dim=16, intermediate_size=256, max_positions=128,
        random_seed=1,
    )  # fmt: skip
    compiled, error = error_vs_reference(
        build_graph(config, "prefill"), build_graph(config, "decode")
    )
    tables = [s.table() for b in compiled.program.buckets for s in b.streams]
    ops = {int(op) for t in tables for op in t["op"][t["opcode"] == isa.Opcode.SFU]}
    assert isa.SfuOp.DEQUANT_BIAS in ops
    assert (isa.SfuOp.RELU in ops) == (config.activation == "relu")
    assert error == 0.0


def test_a_full_width_opt_tracks_the_reference() -> None:
    """OPT-125m's width (768, 12 heads) in 2 layers: with a float32-BLAS reference, sums a few
    ulps off the exact ones moved INT8 codes by one and the logits by 4e-3; with float32
    scales, the engine's two roundings of each sum did the same at 12 layers."""
    config = dataclasses.replace(
        BUILTINS["opt-125m"], name="opt-768x2", vocab_size=512, num_layers=2, max_positions=128,
        random_seed=1,
    )  # fmt: skip
    _, error = error_vs_reference(build_graph(config, "prefill"), build_graph(config, "decode"))
    assert error == 0.0
