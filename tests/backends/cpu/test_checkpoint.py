"""Real checkpoints on the CPU backend: tiny random LLaMA and BERT models built with
transformers (no download), saved as safetensors, loaded from the folder, compressed by a
recipe and run end to end through the backend registry, checked against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from sparseflow.backends.registry import CompileRequest, compile_model
from sparseflow.backends.runner import generate, prompt_ids, rel_error
from sparseflow.hw_models.loader import load_hw
from sparseflow.ir.interpreter import Interpreter
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import recipe_from_dict

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

BATCH, PROMPT, GEN = 2, 6, 4


def save_random(model, folder) -> None:
    """Give the model O(1) random weights (the default init hides mistakes) and save it."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(noise / max(param.shape) ** 0.5 * (1 if param.ndim > 1 else 0.2))
    model.save_pretrained(folder, safe_serialization=True)


def run_folder(folder, steps, decoder: bool) -> tuple[float, dict]:
    """Compress the checkpoint in `folder`, run it on host-cpu; return (rel error, summary)."""
    recipe = recipe_from_dict({"passes": steps}, "test.yaml")
    decode = load_model(str(folder), "decode", BATCH) if decoder else None
    prefill, decode = recipe.apply_model(load_model(str(folder), "prefill", BATCH), decode)
    request = CompileRequest(prefill, decode, load_hw("host-cpu"), BATCH, PROMPT, GEN)
    program = compile_model(request)
    vocab = int(prefill.node(prefill.outputs[0]).type.shape[-1])
    ids = prompt_ids(vocab, BATCH, PROMPT, seed=4)
    ref_decode = Interpreter(decode) if decode is not None else None
    ref = generate(Interpreter(prefill), ref_decode, prefill, ids, GEN)
    pre, dec = program.runners()
    out = generate(pre, dec, prefill, ids, GEN, forced=ref.tokens)
    assert np.abs(ref.all_logits()).max() > 0
    return rel_error(out, ref), program.summary()


def test_llama_checkpoint_w8a8_block_sparse(tmp_path):
    config = transformers.LlamaConfig(
        vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    save_random(transformers.LlamaForCausalLM(config), tmp_path)
    steps = [
        {"pass": "sparsify_block", "options": {"block": [4, 1], "sparsity": 0.75}},
        {"pass": "quantize_int8", "exclude": ["lm_head"]},
        {"pass": "quantize_activations", "options": {"bits": 8}},
    ]
    error, summary = run_folder(tmp_path, steps, decoder=True)
    assert error < 1e-3
    assert len(summary["graphs"]["decode"]["layers"]) == 2 * 7 + 1


def test_bert_checkpoint_block_sparse(tmp_path):
    config = transformers.BertConfig(
        vocab_size=83, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=40, type_vocab_size=2,
    )  # fmt: skip
    torch.manual_seed(0)
    save_random(transformers.BertModel(config), tmp_path)
    steps = [
        {"pass": "sparsify_block", "options": {"block": [4, 1], "sparsity": 0.9}},
        {"pass": "quantize_activations", "options": {"bits": 8}},
    ]
    error, summary = run_folder(tmp_path, steps, decoder=False)
    assert error < 1e-3
    assert set(summary["graphs"]) == {"prefill"}
