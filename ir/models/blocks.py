"""Building blocks shared by the model graph builders: inputs, linears, norms, attention.

Naming (the same in every family, so that recipes select layers by one pattern):
`embed_tokens`, `embed_positions`, `layers.{i}.attn.{q,k,v,o}_proj`, `layers.{i}.attn_norm`,
`layers.{i}.mlp_norm`, `layers.{i}.mlp.*`, `final_norm`, `lm_head`; a bias is named after its
layer plus `.bias`. The importer (`sparseflow.ir.models.hf`) maps these names to Hugging Face's.

Graph interface. Prefill: inputs `ids` i64[B, T] and `pos` i64[T]. Decode: `ids` i64[B, 1],
`pos` i64[1] and, per layer i, `past_k.{i}` / `past_v.{i}` f32[B, kv_heads, L, head_dim].
Decoders output `logits` [B, T, vocab] and the caches `k.{i}` / `v.{i}` after this step.
"""

from __future__ import annotations

import math

from sparseflow.ir.dims import Dim
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph, GraphBuilder
from sparseflow.ir.models.config import ACTIVATION_OPS, ModelConfig
from sparseflow.ir.ops import Op
from sparseflow.ir.types import TensorType

PHASES = ("prefill", "decode")
CACHE_LENGTH = "L"  # the symbolic KV-cache length of decode graphs


class ModelBuilder:
    """A GraphBuilder that knows the model's config and phase; adds named model pieces."""

    def __init__(self, config: ModelConfig, phase: str, batch: int, seq: Dim) -> None:
        check_shape_args(config, phase, batch, seq)
        self.config = config
        self.phase = phase
        self.batch = batch
        self.seq: Dim = 1 if phase == "decode" else seq
        meta = {"phase": phase, "batch": batch, "seq": str(self.seq)}
        meta.update(config.to_meta())
        self.g = GraphBuilder(f"{config.name}.{phase}", meta)
        self.cache_outputs: list[str] = []
        ids_type = TensorType((batch, self.seq), DType.I64)
        self.ids = self.g.input("ids", ids_type)
        self.pos = self.g.input("pos", TensorType((self.seq,), DType.I64))

    def weight(self, name: str, shape: tuple[int, ...], role: str) -> str:
        """Add (or reuse) a weight node of the model's weight dtype."""
        return self.g.weight(name, TensorType(shape, self.config.weight_dtype), role)

    def add(self, op: Op, inputs: list[str], name: str | None = None, **attrs: object) -> str:
        """Add one op node; see GraphBuilder.add."""
        return self.g.add(op, inputs, name, **attrs)

    def linear(self, x: str, name: str, out_features: int, bias: bool, out: str) -> str:
        """Add `out = x @ W^T (+ b)` with weight `name` [out_features, in] and bias `name.bias`."""
        in_features = self.g.type_of(x).shape[-1]
        inputs = [x, self.weight(name, (out_features, in_features), "linear")]
        if bias:
            inputs.append(self.weight(f"{name}.bias", (out_features,), "bias"))
        return self.add(Op.LINEAR, inputs, out)

    def norm(self, x: str, name: str, out: str) -> str:
        """Add the family's normalisation (RMSNorm for LLaMA, else LayerNorm with a bias)."""
        hidden = self.config.hidden_size
        inputs = [x, self.weight(name, (hidden,), "norm")]
        if self.config.family == "llama":
            return self.add(Op.RMSNORM, inputs, out, eps=self.config.norm_eps)
        inputs.append(self.weight(f"{name}.bias", (hidden,), "bias"))
        return self.add(Op.LAYERNORM, inputs, out, eps=self.config.norm_eps)

    def embedding(self, ids: str, name: str, rows: int, out: str, offset: int = 0) -> str:
        """Add a table lookup of `ids` in weight `name` [rows, hidden]."""
        table = self.weight(name, (rows, self.config.hidden_size), "embedding")
        attrs = {"offset": offset} if offset else {}
        return self.add(Op.EMBEDDING, [ids, table], out, **attrs)

    def activation(self, x: str, out: str) -> str:
        """Add the config's activation function."""
        kind = self.config.activation
        op = ACTIVATION_OPS[kind]
        if op is Op.GELU:
            approximate = "tanh" if kind == "gelu_tanh" else "none"
            return self.add(op, [x], out, approximate=approximate)
        return self.add(op, [x], out)

    def swiglu(self, x: str, name: str, out: str) -> str:
        """Add down_proj(act(gate_proj(x)) * up_proj(x)) with weights `name.{gate,up,down}_proj`."""
        c = self.config
        gate = self.linear(x, f"{name}.gate_proj", c.intermediate_size, c.mlp_bias, f"{name}.gate")
        up = self.linear(x, f"{name}.up_proj", c.intermediate_size, c.mlp_bias, f"{name}.up")
        gated = self.add(Op.MUL, [self.activation(gate, f"{name}.act"), up], f"{name}.gated")
        return self.linear(gated, f"{name}.down_proj", c.hidden_size, c.mlp_bias, out)

    def split_heads(self, x: str, heads: int, out: str) -> str:
        """Reshape [B, T, heads*D] to [B, heads, T, D]."""
        shape = (self.batch, self.seq, heads, self.config.head_dim)
        split = self.add(Op.RESHAPE, [x], f"{out}.split", shape=shape)
        return self.add(Op.TRANSPOSE, [split], out, perm=(0, 2, 1, 3))

    def merge_heads(self, x: str, out: str) -> str:
        """Transpose [B, H, T, D] back to [B, T, H*D]."""
        c = self.config
        merged = self.add(Op.TRANSPOSE, [x], f"{out}.heads", perm=(0, 2, 1, 3))
        shape = (self.batch, self.seq, c.num_heads * c.head_dim)
        return self.add(Op.RESHAPE, [merged], out, shape=shape)

    def attention(self, x: str, layer: int, rope: bool, causal: bool, q_scaled: bool) -> str:
        """Add multi-head (grouped-query) attention of layer `layer`; return its output.

        q/k/v projections, RoPE when `rope`, the KV cache (appended in decode, recorded as
        outputs `k.{i}` / `v.{i}` for decoders), repeat_kv under GQA, scaled scores (1/sqrt(D)
        on q after its projection when `q_scaled`, as OPT does, else on the scores), the causal
        mask when `causal` (the sliding-window mask when the config has a window), softmax,
        the weighted sum and the output projection.
        """
        c, p = self.config, f"layers.{layer}.attn"
        scale = 1.0 / math.sqrt(c.head_dim)
        q = self.linear(x, f"{p}.q_proj", c.num_heads * c.head_dim, c.attention_bias, f"{p}.q")
        if q_scaled:
            q = self.add(Op.SCALE, [q], f"{p}.q_scaled", factor=scale)
        k = self.linear(x, f"{p}.k_proj", c.num_kv_heads * c.head_dim, c.attention_bias, f"{p}.k")
        v = self.linear(x, f"{p}.v_proj", c.num_kv_heads * c.head_dim, c.attention_bias, f"{p}.v")
        k_name, v_name = self._new_kv_name("k", layer), self._new_kv_name("v", layer)
        q = self.split_heads(q, c.num_heads, f"{p}.q_heads")
        k = self.split_heads(k, c.num_kv_heads, f"{p}.k_heads" if rope else k_name)
        v = self.split_heads(v, c.num_kv_heads, v_name)
        if rope:
            q = self.add(Op.ROPE, [q, self.pos], f"{p}.q_rope", theta=c.rope_theta)
            k = self.add(Op.ROPE, [k, self.pos], k_name, theta=c.rope_theta)
        k, v = self._cache(k, "k", layer), self._cache(v, "v", layer)
        if c.kv_groups > 1:
            k = self.add(Op.REPEAT_KV, [k], f"{p}.k_rep", n_rep=c.kv_groups)
            v = self.add(Op.REPEAT_KV, [v], f"{p}.v_rep", n_rep=c.kv_groups)
        scores = self.add(Op.MATMUL, [q, k], f"{p}.scores", transpose_b=True)
        if not q_scaled:
            scores = self.add(Op.SCALE, [scores], f"{p}.scores_scaled", factor=scale)
        if causal and c.sliding_window:
            scores = self.add(Op.SLIDING_WINDOW_MASK, [scores, self.pos], f"{p}.scores_masked",
                              window=c.sliding_window)  # fmt: skip
        elif causal:
            scores = self.add(Op.CAUSAL_MASK, [scores, self.pos], f"{p}.scores_masked")
        probs = self.add(Op.SOFTMAX, [scores], f"{p}.probs", axis=-1)
        context = self.add(Op.MATMUL, [probs, v], f"{p}.context")
        merged = self.merge_heads(context, f"{p}.merged")
        return self.linear(merged, f"{p}.o_proj", c.hidden_size, c.attention_bias, f"{p}.out")

    def _new_kv_name(self, kind: str, layer: int) -> str:
        """Return the name of this step's keys/values: the cache output `k.{i}` / `v.{i}`
        itself in a decoder's prefill, else an inner value of the layer."""
        if self.config.is_decoder and self.phase == "prefill":
            return f"{kind}.{layer}"
        return f"layers.{layer}.attn.{kind}_new"

    def _cache(self, new: str, kind: str, layer: int) -> str:
        """Record the keys/values of a decoder as output `k.{i}` / `v.{i}`; in decode, append
        them to the cache input `past_k.{i}` / `past_v.{i}` first."""
        if not self.config.is_decoder:
            return new
        if self.phase == "decode":
            c = self.config
            shape = (self.batch, c.num_kv_heads, CACHE_LENGTH, c.head_dim)
            past = self.g.input(f"past_{kind}.{layer}", TensorType(shape, DType.F32))
            new = self.add(Op.KV_APPEND, [past, new], f"{kind}.{layer}")
        self.cache_outputs.append(new)
        return new

    def build(self, outputs: list[str]) -> Graph:
        """Return the verified graph: `outputs` followed by the caches."""
        return self.g.build([*outputs, *self.cache_outputs])


def check_shape_args(config: ModelConfig, phase: str, batch: int, seq: Dim) -> None:
    """Raise InputError unless phase, batch and sequence length fit the model."""
    if phase not in PHASES:
        raise InputError(f"phase must be 'prefill' or 'decode', not {phase!r}")
    if phase == "decode" and not config.is_decoder:
        raise InputError(f"model {config.name!r} is an encoder: it has no decode phase")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, not {batch!r}")
    if isinstance(seq, int) and not isinstance(seq, bool):
        if not 1 <= seq <= config.max_positions:
            raise InputError(f"sequence length {seq} is outside 1..{config.max_positions}")
    elif not (isinstance(seq, str) and seq.isidentifier()) or seq == CACHE_LENGTH:
        raise InputError(f"sequence length must be an integer or a symbol name, not {seq!r}")
