"""The BERT encoder graph (BertModel with its pooler): prefill only, no causal mask.

  x = layernorm(embed_tokens[ids] + embed_positions[pos] + embed_types[token_types])
  per layer i:  h = layernorm(x + o_proj(attention(x)))        (post-LN, bidirectional)
                y = layernorm(h + fc2(gelu(fc1(h))))
  outputs: `hidden` [B, T, H] and, when T is concrete, `pooled` = tanh(pooler(hidden[:, 0]))
  [B, H]. (Slicing the first token needs a concrete sequence axis.)
Inputs: `ids` i64[B, T], `pos` i64[T] and `token_types` i64[B, T] (segment ids, 0 for one
sentence). Weights: `embed_tokens`, `embed_positions`, `embed_types`, `embed_norm(.bias)`,
`layers.{i}.attn.{q,k,v,o}_proj(.bias)`, `layers.{i}.attn_norm(.bias)`,
`layers.{i}.mlp.{fc1,fc2}(.bias)`, `layers.{i}.mlp_norm(.bias)`, `pooler(.bias)`.

tanh has no op of its own; it is built from registered ops with the exact identity
tanh(x) = sigmoid(2x) - sigmoid(-2x) = softmax([x, -x])[0] - softmax([x, -x])[1].
"""

from __future__ import annotations

from sparseflow.ir.dims import Dim
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.models.blocks import ModelBuilder
from sparseflow.ir.models.config import ModelConfig
from sparseflow.ir.ops import Op
from sparseflow.ir.types import TensorType


def build_bert(config: ModelConfig, phase: str = "prefill", batch: int = 1,
               seq: Dim = "T") -> Graph:  # fmt: skip
    """Return the shape-only encoder graph of a BERT model (phase must be prefill)."""
    if config.family != "bert":
        raise InputError(f"model {config.name!r} is {config.family}, not bert")
    m = ModelBuilder(config, phase, batch, seq)
    types = m.g.input("token_types", TensorType((batch, m.seq), DType.I64))
    tokens = m.embedding(m.ids, "embed_tokens", config.vocab_size, "embed")
    positions = m.embedding(m.pos, "embed_positions", config.max_positions, "embed_pos")
    segments = m.embedding(types, "embed_types", config.type_vocab_size, "embed_type")
    x = m.add(Op.ADD, [m.add(Op.ADD, [tokens, positions], "embed_sum"), segments], "embed_all")
    x = m.norm(x, "embed_norm", "embed_normed")
    for layer in range(config.num_layers):
        last = layer == config.num_layers - 1
        x = _layer(m, x, layer, "hidden" if last else f"layers.{layer}.out")
    hidden = x
    if not isinstance(m.seq, int):
        return m.build([hidden])
    return m.build([hidden, _pooler(m, hidden)])


def _layer(m: ModelBuilder, x: str, layer: int, out: str) -> str:
    c, p = m.config, f"layers.{layer}"
    attn = m.attention(x, layer, rope=False, causal=False, q_scaled=False)
    h = m.norm(m.add(Op.ADD, [x, attn], f"{p}.attn_residual"), f"{p}.attn_norm", f"{p}.attn_out")
    up = m.linear(h, f"{p}.mlp.fc1", c.intermediate_size, c.mlp_bias, f"{p}.mlp.up")
    act = m.activation(up, f"{p}.mlp.act")
    down = m.linear(act, f"{p}.mlp.fc2", c.hidden_size, c.mlp_bias, f"{p}.mlp.down")
    return m.norm(m.add(Op.ADD, [h, down], f"{p}.mlp_residual"), f"{p}.mlp_norm", out)


def _pooler(m: ModelBuilder, hidden: str) -> str:
    first = m.add(Op.SLICE, [hidden], "pooler.first", axis=1, start=0, stop=1)
    dense = m.linear(first, "pooler", m.config.hidden_size, True, "pooler.dense")
    return _tanh(m, dense, (m.batch, m.config.hidden_size), "pooled")


def _tanh(m: ModelBuilder, x: str, shape: tuple[int, int], out: str) -> str:
    """Add tanh(x) for x of any shape, reshaped to `shape`: softmax over the pair (x, -x)."""
    column = m.add(Op.RESHAPE, [x], f"{out}.col", shape=(*shape, 1))
    negated = m.add(Op.SCALE, [column], f"{out}.neg", factor=-1.0)
    pair = m.add(Op.CONCAT, [column, negated], f"{out}.pair", axis=-1)
    probs = m.add(Op.SOFTMAX, [pair], f"{out}.sigmoids", axis=-1)
    high = m.add(Op.SLICE, [probs], f"{out}.high", axis=-1, start=0, stop=1)
    low = m.add(Op.SLICE, [probs], f"{out}.low", axis=-1, start=1, stop=2)
    diff = m.add(Op.ADD, [high, m.add(Op.SCALE, [low], f"{out}.low_neg", factor=-1.0)], f"{out}.d")
    return m.add(Op.RESHAPE, [diff], out, shape=shape)
