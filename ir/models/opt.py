"""The OPT and GPT-2 graphs: pre-LN decoders with learned absolute positions.

Both families share one structure (they differ in attributes, not in wiring):
  x = embed_tokens[ids] + embed_positions[pos + offset]     (OPT: offset 2, GPT-2: 0)
  per layer i:  h = x + o_proj(attention(layernorm(x)))      (causal, biases everywhere)
                y = h + fc2(act(fc1(layernorm(h))))          (OPT: relu, GPT-2: gelu tanh)
  logits = lm_head(layernorm(x)), the lm head being `embed_tokens` when tied (both default).
OPT scales q by 1/sqrt(D) right after its projection, as its Hugging Face code does; GPT-2
scales the scores. GPT-2's fused `c_attn` is held as separate q/k/v weights (split at import).
Weights: `embed_tokens`, `embed_positions`, `layers.{i}.attn_norm(.bias)`,
`layers.{i}.attn.{q,k,v,o}_proj(.bias)`, `layers.{i}.mlp_norm(.bias)`,
`layers.{i}.mlp.{fc1,fc2}(.bias)`, `final_norm(.bias)`, `lm_head` when untied.
"""

from __future__ import annotations

from sparseflow.ir.dims import Dim
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.models.blocks import ModelBuilder
from sparseflow.ir.models.config import ModelConfig
from sparseflow.ir.ops import Op


def build_opt(config: ModelConfig, phase: str, batch: int = 1, seq: Dim = "T") -> Graph:
    """Return the shape-only prefill or decode graph of an OPT model."""
    return _build(config, "opt", phase, batch, seq)


def build_gpt2(config: ModelConfig, phase: str, batch: int = 1, seq: Dim = "T") -> Graph:
    """Return the shape-only prefill or decode graph of a GPT-2 model."""
    return _build(config, "gpt2", phase, batch, seq)


def _build(config: ModelConfig, family: str, phase: str, batch: int, seq: Dim) -> Graph:
    if config.family != family:
        raise InputError(f"model {config.name!r} is {config.family}, not {family}")
    m = ModelBuilder(config, phase, batch, seq)
    tokens = m.embedding(m.ids, "embed_tokens", config.vocab_size, "embed")
    rows = config.max_positions + config.position_offset
    positions = m.embedding(m.pos, "embed_positions", rows, "embed_pos",
                            offset=config.position_offset)  # fmt: skip
    x = m.add(Op.ADD, [tokens, positions], "embed_sum")
    for layer in range(config.num_layers):
        x = _layer(m, x, layer, q_scaled=family == "opt")
    x = m.norm(x, "final_norm", "final_hidden")
    head = "embed_tokens" if config.tied_embeddings else "lm_head"
    table = m.weight(head, (config.vocab_size, config.hidden_size), "linear")
    return m.build([m.add(Op.LINEAR, [x, table], "logits")])


def _layer(m: ModelBuilder, x: str, layer: int, q_scaled: bool) -> str:
    c, p = m.config, f"layers.{layer}"
    normed = m.norm(x, f"{p}.attn_norm", f"{p}.attn_in")
    attn = m.attention(normed, layer, rope=False, causal=True, q_scaled=q_scaled)
    h = m.add(Op.ADD, [x, attn], f"{p}.attn_residual")
    normed = m.norm(h, f"{p}.mlp_norm", f"{p}.mlp_in")
    up = m.linear(normed, f"{p}.mlp.fc1", c.intermediate_size, c.mlp_bias, f"{p}.mlp.up")
    act = m.activation(up, f"{p}.mlp.act")
    down = m.linear(act, f"{p}.mlp.fc2", c.hidden_size, c.mlp_bias, f"{p}.mlp.down")
    return m.add(Op.ADD, [h, down], f"{p}.out")
