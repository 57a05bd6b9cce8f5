"""The LLaMA graph (also TinyLlama, LLaMA-3, Mistral and Mixtral): pre-norm RMSNorm blocks,
rotary positions, grouped-query attention (within a sliding window when the config has one)
and a SwiGLU MLP, or routed SwiGLU experts when the config has experts.

Per layer i:  h = x + o_proj(attention(rmsnorm(x)))  with RoPE on q and k
              y = h + down_proj(silu(gate_proj(rmsnorm(h))) * up_proj(rmsnorm(h)))
then `final_norm` and `lm_head` (the embedding table itself when the embeddings are tied).
Weights: `embed_tokens`, `layers.{i}.attn_norm`, `layers.{i}.attn.{q,k,v,o}_proj`,
`layers.{i}.mlp_norm`, `layers.{i}.mlp.{gate,up,down}_proj` (experts: `layers.{i}.mlp.router`
and `layers.{i}.mlp.experts.{e}.{gate,up,down}_proj`), `final_norm`, `lm_head`.
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
    if c.is_moe:
        mlp = moe_mlp(m, normed, f"{p}.mlp")
    else:
        mlp = m.swiglu(normed, f"{p}.mlp", f"{p}.mlp.down")
    return m.add(Op.ADD, [h, mlp], f"{p}.out")


def moe_mlp(m: ModelBuilder, x: str, name: str) -> str:
    """Add the routed experts of one layer (Mixtral's sparse MoE block, `ops_moe`): a router
    linear `name.router` [E, hidden], top-k gates, and per expert e the rows routed to it
    through its own SwiGLU MLP `name.experts.{e}.{gate,up,down}_proj`, combined by the gates."""
    c = m.config
    logits = m.linear(x, f"{name}.router", c.num_experts, False, f"{name}.router_logits")
    gates = m.add(Op.TOPK_GATE, [logits], f"{name}.gates", k=c.experts_per_token, normalize=True)
    outputs = []
    for e in range(c.num_experts):
        rows = m.add(Op.EXPERT_DISPATCH, [x, gates], f"{name}.experts.{e}.in", expert=e)
        outputs.append(m.swiglu(rows, f"{name}.experts.{e}", f"{name}.experts.{e}.out"))
    return m.add(Op.EXPERT_COMBINE, [gates, *outputs], f"{name}.down")
