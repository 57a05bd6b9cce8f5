"""The LLaMA graph (also TinyLlama, Mistral without sliding window): pre-norm RMSNorm blocks,
rotary positions, grouped-query attention and a SwiGLU MLP.

Per layer i:  h = x + o_proj(attention(rmsnorm(x)))  with RoPE on q and k
              y = h + down_proj(silu(gate_proj(rmsnorm(h))) * up_proj(rmsnorm(h)))
then `final_norm` and `lm_head` (the embedding table itself when the embeddings are tied).
Weights: `embed_tokens`, `layers.{i}.attn_norm`, `layers.{i}.attn.{q,k,v,o}_proj`,
`layers.{i}.mlp_norm`, `layers.{i}.mlp.{gate,up,down}_proj`, `final_norm`, `lm_head`.
"""

from __future__ import annotations

from sparseflow.ir.dims import Dim
from sparseflow.ir.graph import Graph
from sparseflow.ir.models.blocks import ModelBuilder
from sparseflow.ir.models.config import ModelConfig
from sparseflow.ir.ops import Op


def build_llama(config: ModelConfig, phase: str, batch: int = 1, seq: Dim = "T") -> Graph:
    """Return the shape-only prefill or decode graph of a LLaMA-family model."""
    m = ModelBuilder(config, phase, batch, seq)
    x = m.embedding(m.ids, "embed_tokens", config.vocab_size, "embed")
    for layer in range(config.num_layers):
        x = _layer(m, x, layer)
    x = m.norm(x, "final_norm", "final_hidden")
    head = "embed_tokens" if config.tied_embeddings else "lm_head"
    logits = m.add(Op.LINEAR, [x, m.weight(head, (config.vocab_size, config.hidden_size),
                                          "linear")], "logits")  # fmt: skip
    return m.build([logits])


def _layer(m: ModelBuilder, x: str, layer: int) -> str:
    c, p = m.config, f"layers.{layer}"
    normed = m.norm(x, f"{p}.attn_norm", f"{p}.attn_in")
    attn = m.attention(normed, layer, rope=True, causal=True, q_scaled=False)
    h = m.add(Op.ADD, [x, attn], f"{p}.attn_residual")
    normed = m.norm(h, f"{p}.mlp_norm", f"{p}.mlp_in")
    size = c.intermediate_size
    gate = m.linear(normed, f"{p}.mlp.gate_proj", size, c.mlp_bias, f"{p}.mlp.gate")
    up = m.linear(normed, f"{p}.mlp.up_proj", size, c.mlp_bias, f"{p}.mlp.up")
    gated = m.add(Op.MUL, [m.activation(gate, f"{p}.mlp.act"), up], f"{p}.mlp.gated")
    down = m.linear(gated, f"{p}.mlp.down_proj", c.hidden_size, c.mlp_bias, f"{p}.mlp.down")
    return m.add(Op.ADD, [h, down], f"{p}.out")
