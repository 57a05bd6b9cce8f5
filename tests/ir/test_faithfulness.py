"""Our graphs, imported from tiny random Hugging Face checkpoints, compute what transformers
computes: logits of a prefill and of several decode steps fed with our own KV caches (checked
against transformers' steps with its own cache), and BERT's hidden states and pooled output."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sparseflow.ir.interpreter import Interpreter  # noqa: E402
from sparseflow.ir.models import load_model  # noqa: E402
from sparseflow.ir.ops import Op  # noqa: E402

TOLERANCE = 1e-4  # relative error ||ours - theirs|| / ||theirs|| in float32
BATCH, PROMPT, STEPS = 2, 7, 3


def rel_error(ours: np.ndarray, theirs: torch.Tensor) -> float:
    reference = theirs.detach().numpy()
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter O(1) random values (the default init is near zero, which would
    hide mistakes): norm scales 1 + 0.1 n, everything else n / sqrt(fan-in) or 0.2 n."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim == 1:
                is_scale = "norm" in name.lower() or "ln_" in name and name.endswith("weight")
                param.copy_(
                    1 + 0.1 * noise if is_scale and name.endswith("weight") else 0.2 * noise
                )
            else:
                param.copy_(noise / max(param.shape) ** 0.5 * 2)


def save_tiny(config, model_class, path, seed: int = 0):
    torch.manual_seed(seed)
    model = model_class(config).eval()
    randomize(model, seed)
    model.save_pretrained(path)
    return model


def check_decoder(model, folder, vocab: int) -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, vocab, size=(BATCH, PROMPT))
    prefill = Interpreter(load_model(str(folder), "prefill", batch=BATCH, seq=PROMPT))
    ours = prefill.run({"ids": ids, "pos": np.arange(PROMPT)})
    with torch.no_grad():
        theirs = model(torch.tensor(ids), use_cache=True)
    assert rel_error(ours["logits"], theirs.logits) < TOLERANCE
    decode = Interpreter(load_model(str(folder), "decode", batch=BATCH))
    layers = sum(1 for name in decode.graph.outputs if name.startswith("k."))
    cache, past = ours, theirs.past_key_values
    for step in range(STEPS):
        token = rng.integers(0, vocab, size=(BATCH, 1))
        feeds = {"ids": token, "pos": np.array([PROMPT + step])}
        for i in range(layers):
            feeds[f"past_k.{i}"], feeds[f"past_v.{i}"] = cache[f"k.{i}"], cache[f"v.{i}"]
        cache = decode.run(feeds)
        with torch.no_grad():
            theirs = model(torch.tensor(token), past_key_values=past, use_cache=True)
        past = theirs.past_key_values
        assert cache["k.0"].shape[2] == PROMPT + step + 1
        assert rel_error(cache["logits"], theirs.logits) < TOLERANCE, f"decode step {step}"


def test_llama_gqa_matches_transformers(tmp_path):
    config = transformers.LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
    )  # fmt: skip
    model = save_tiny(config, transformers.LlamaForCausalLM, tmp_path)
    check_decoder(model, tmp_path, config.vocab_size)


def test_mistral_sliding_window_matches_transformers(tmp_path):
    """A window of 4 keys, shorter than the prompt: prefill and decode both slide it."""
    config = transformers.MistralConfig(
        vocab_size=97, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        sliding_window=4, tie_word_embeddings=False,
    )  # fmt: skip
    model = save_tiny(config, transformers.MistralForCausalLM, tmp_path)
    assert load_model(str(tmp_path), "decode").nodes_of(Op.SLIDING_WINDOW_MASK)
    check_decoder(model, tmp_path, config.vocab_size)


@pytest.mark.parametrize("experts, k", [(4, 2), (3, 1)])
def test_mixtral_routed_experts_match_transformers(tmp_path, experts, k):
    config = transformers.MixtralConfig(
        vocab_size=97, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        num_local_experts=experts, num_experts_per_tok=k, sliding_window=5,
        tie_word_embeddings=False,
    )  # fmt: skip
    model = save_tiny(config, transformers.MixtralForCausalLM, tmp_path)
    assert len(load_model(str(tmp_path), "prefill").nodes_of(Op.EXPERT_DISPATCH)) == 2 * experts
    check_decoder(model, tmp_path, config.vocab_size)


def test_opt_matches_transformers(tmp_path):
    config = transformers.OPTConfig(
        vocab_size=91, hidden_size=32, ffn_dim=48, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=40, word_embed_proj_dim=32, do_layer_norm_before=True,
    )  # fmt: skip
    model = save_tiny(config, transformers.OPTForCausalLM, tmp_path)
    check_decoder(model, tmp_path, config.vocab_size)


def test_gpt2_matches_transformers(tmp_path):
    config = transformers.GPT2Config(
        vocab_size=89, n_embd=32, n_layer=2, n_head=4, n_positions=40, n_inner=None,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = save_tiny(config, transformers.GPT2LMHeadModel, tmp_path)
    check_decoder(model, tmp_path, config.vocab_size)


def test_bert_matches_transformers(tmp_path):
    config = transformers.BertConfig(
        vocab_size=83, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=40, type_vocab_size=2,
    )  # fmt: skip
    model = save_tiny(config, transformers.BertModel, tmp_path)
    rng = np.random.default_rng(2)
    ids = rng.integers(0, config.vocab_size, size=(BATCH, PROMPT))
    types = rng.integers(0, 2, size=(BATCH, PROMPT))
    graph = load_model(str(tmp_path), "prefill", batch=BATCH, seq=PROMPT)
    ours = Interpreter(graph).run({"ids": ids, "pos": np.arange(PROMPT), "token_types": types})
    with torch.no_grad():
        theirs = model(torch.tensor(ids), token_type_ids=torch.tensor(types))
    assert rel_error(ours["hidden"], theirs.last_hidden_state) < TOLERANCE
    assert rel_error(ours["pooled"], theirs.pooler_output) < TOLERANCE
