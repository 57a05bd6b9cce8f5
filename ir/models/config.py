"""Model configurations: the numbers that define a transformer, and the built-in models.

A `ModelConfig` is everything a graph builder needs: family (llama, opt, gpt2, bert), sizes,
normalisation epsilon, RoPE base, activation, tying and biases; for the LLaMA family also a
sliding attention window (Mistral) and routed experts (Mixtral). The built-in configurations
copy the `config.json` of the public Hugging Face checkpoints named in `BUILTIN_SOURCES`, so the
parameter counts of our graphs equal those of the Hugging Face models. `tiny-llama` is ours: a
2-layer grouped-query LLaMA with seeded random weights for demos and tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.ops import Op

FAMILIES = ("llama", "opt", "gpt2", "bert")
# Activation names a config may give, and the ops computing them.
ACTIVATION_OPS = {"silu": Op.SILU, "relu": Op.RELU, "gelu": Op.GELU, "gelu_tanh": Op.GELU}


@dataclass(frozen=True)
class ModelConfig:
    """The hyper-parameters of one transformer; every field is checked on construction.

    `attention_bias` / `mlp_bias` say whether the attention and MLP linears carry biases;
    `position_offset` is the row offset of learned positions (OPT: 2); `type_vocab_size` is
    BERT's number of token types; `weight_dtype` is the storage type of the weights (it sets
    `weight_bytes`); `random_seed`, when set, gives the built-in graph seeded random weights.
    `sliding_window` > 0 lets each query see only that many most recent keys (itself
    included); `num_experts` > 0 replaces the MLP by that many experts of which each token
    uses `experts_per_token` (top-k routing, gates renormalised over the k).
    """

    name: str
    family: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    max_positions: int
    norm_eps: float
    activation: str
    tied_embeddings: bool
    attention_bias: bool
    mlp_bias: bool
    rope_theta: float = 0.0
    position_offset: int = 0
    type_vocab_size: int = 0
    weight_dtype: DType = DType.F32
    random_seed: int | None = None
    sliding_window: int = 0
    num_experts: int = 0
    experts_per_token: int = 0

    def __post_init__(self) -> None:
        for check in (_check_family, _check_sizes, _check_experts, _check_heads, _check_numbers):
            check(self)

    @property
    def is_moe(self) -> bool:
        """Return True when the MLP is a set of routed experts."""
        return self.num_experts > 0

    @property
    def is_decoder(self) -> bool:
        """Return True for causal language models (everything but BERT)."""
        return self.family != "bert"

    @property
    def kv_groups(self) -> int:
        """Return how many query heads share one key/value head."""
        return self.num_heads // self.num_kv_heads

    def replace(self, **changes: object) -> ModelConfig:
        """Return a copy with the given fields changed (and re-checked)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_meta(self) -> dict[str, int | float | str | bool | None]:
        """Return the fields as JSON-friendly values, for graph metadata."""
        meta = dataclasses.asdict(self)
        meta["weight_dtype"] = self.weight_dtype.short
        return meta


def _fail(config: ModelConfig, field: str, problem: str) -> None:
    raise InputError(f"model config {config.name!r}: field {field!r} {problem}")


def _check_family(c: ModelConfig) -> None:
    if c.family not in FAMILIES:
        _fail(c, "family", f"must be one of {', '.join(FAMILIES)}, not {c.family!r}")
    if c.activation not in ACTIVATION_OPS:
        names = ", ".join(ACTIVATION_OPS)
        _fail(c, "activation", f"must be one of {names}, not {c.activation!r}")
    if not isinstance(c.weight_dtype, DType) or not c.weight_dtype.is_float:
        _fail(c, "weight_dtype", f"must be a float dtype, not {c.weight_dtype!r}")


# Bounds far beyond any released transformer (the largest have ~130 layers, hidden ~25K,
# vocabularies ~260K, contexts ~10M): larger values are typos, and would exhaust memory or
# time before any check of the device could say so.
MAX_SIZE = 1 << 20
SIZE_LIMITS = {"num_layers": 1024, "max_positions": 1 << 26, "vocab_size": 1 << 24}
SIZE_LIMITS["num_experts"] = 1024  # DeepSeek-V3 routes over 256


def _check_sizes(c: ModelConfig) -> None:
    positive = ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads")
    positive += ("head_dim", "intermediate_size", "max_positions")
    for field in positive:
        value = getattr(c, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            _fail(c, field, f"must be a positive integer, not {value!r}")
        if value > SIZE_LIMITS.get(field, MAX_SIZE):
            _fail(c, field, f"({value}) is above {SIZE_LIMITS.get(field, MAX_SIZE):,}")
    for field in ("position_offset", "type_vocab_size", "sliding_window", "num_experts"):
        value = getattr(c, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            _fail(c, field, f"must be a non-negative integer, not {value!r}")
    if c.family == "bert" and c.type_vocab_size < 1:
        _fail(c, "type_vocab_size", "must be positive for BERT")


def _check_experts(c: ModelConfig) -> None:
    if (c.sliding_window or c.num_experts) and c.family != "llama":
        _fail(c, "family", "must be llama for sliding windows and experts")
    if c.num_experts > SIZE_LIMITS["num_experts"]:
        _fail(c, "num_experts", f"({c.num_experts}) is above {SIZE_LIMITS['num_experts']}")
    k, top = c.experts_per_token, c.num_experts
    if isinstance(k, bool) or not isinstance(k, int) or not (1 <= k <= top or k == top == 0):
        _fail(c, "experts_per_token", f"must be in 1..num_experts ({top}), not {k!r}")


def _check_heads(c: ModelConfig) -> None:
    if c.num_heads % c.num_kv_heads:
        _fail(c, "num_kv_heads", f"({c.num_kv_heads}) must divide num_heads ({c.num_heads})")
    if c.family != "llama" and c.num_heads * c.head_dim != c.hidden_size:
        _fail(c, "head_dim", "times num_heads must equal hidden_size")
    if c.family == "llama" and c.head_dim % 2:
        _fail(c, "head_dim", f"must be even for rotary embeddings, not {c.head_dim}")


def _check_numbers(c: ModelConfig) -> None:
    if not isinstance(c.norm_eps, int | float) or not 0 < c.norm_eps < 1:
        _fail(c, "norm_eps", f"must be in (0, 1), not {c.norm_eps!r}")
    if c.family == "llama" and not c.rope_theta > 1:
        _fail(c, "rope_theta", f"must be > 1, not {c.rope_theta!r}")
    if c.random_seed is not None and (isinstance(c.random_seed, bool) or c.random_seed < 0):
        _fail(c, "random_seed", f"must be a non-negative integer, not {c.random_seed!r}")


def _llama(name: str, **fields: object) -> ModelConfig:
    base: dict[str, object] = dict(
        family="llama",
        vocab_size=32000,
        max_positions=4096,
        norm_eps=1e-5,
        rope_theta=10000.0,
        activation="silu",
        tied_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        weight_dtype=DType.F16,
    )
    base.update(fields)
    return ModelConfig(name=name, **base)  # type: ignore[arg-type]


def _opt(name: str, hidden: int, layers: int, heads: int) -> ModelConfig:
    return ModelConfig(
        name=name,
        family="opt",
        vocab_size=50272,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        intermediate_size=4 * hidden,
        max_positions=2048,
        norm_eps=1e-5,  # OPT's nn.LayerNorm default
        activation="relu",
        tied_embeddings=True,
        attention_bias=True,
        mlp_bias=True,
        position_offset=2,  # OPTLearnedPositionalEmbedding.offset
        weight_dtype=DType.F16,
    )


BUILTIN_SOURCES = {
    "llama2-7b": "meta-llama/Llama-2-7b-hf",
    "llama2-13b": "meta-llama/Llama-2-13b-hf",
    "llama2-70b": "meta-llama/Llama-2-70b-hf",
    "llama3-8b": "meta-llama/Meta-Llama-3-8B",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "mixtral-8x7b": "mistralai/Mixtral-8x7B-v0.1",
    "tinyllama-1.1b": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "opt-6.7b": "facebook/opt-6.7b",
    "opt-125m": "facebook/opt-125m",
    "gpt2": "openai-community/gpt2",
    "bert-base": "google-bert/bert-base-uncased",
    "tiny-llama": "sparseflow (2 layers, hidden 64, GQA 4/2 heads, seeded random weights)",
}

BUILTINS: dict[str, ModelConfig] = {
    "llama2-7b": _llama(
        "llama2-7b", hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=32,
        head_dim=128, intermediate_size=11008,
    ),
    "llama2-13b": _llama(
        "llama2-13b", hidden_size=5120, num_layers=40, num_heads=40, num_kv_heads=40,
        head_dim=128, intermediate_size=13824,
    ),
    "llama2-70b": _llama(
        "llama2-70b", hidden_size=8192, num_layers=80, num_heads=64, num_kv_heads=8,
        head_dim=128, intermediate_size=28672,
    ),
    "llama3-8b": _llama(
        "llama3-8b", vocab_size=128256, hidden_size=4096, num_layers=32, num_heads=32,
        num_kv_heads=8, head_dim=128, intermediate_size=14336, max_positions=8192,
        rope_theta=500000.0, weight_dtype=DType.BF16,
    ),
    "mistral-7b": _llama(
        "mistral-7b", hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8,
        head_dim=128, intermediate_size=14336, max_positions=32768, sliding_window=4096,
        weight_dtype=DType.BF16,
    ),
    "mixtral-8x7b": _llama(
        "mixtral-8x7b", hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8,
        head_dim=128, intermediate_size=14336, max_positions=32768, rope_theta=1000000.0,
        num_experts=8, experts_per_token=2, weight_dtype=DType.BF16,
    ),
    "tinyllama-1.1b": _llama(
        "tinyllama-1.1b", hidden_size=2048, num_layers=22, num_heads=32, num_kv_heads=4,
        head_dim=64, intermediate_size=5632, max_positions=2048, weight_dtype=DType.BF16,
    ),
    "opt-6.7b": _opt("opt-6.7b", hidden=4096, layers=32, heads=32),
    "opt-125m": _opt("opt-125m", hidden=768, layers=12, heads=12),
    "gpt2": ModelConfig(
        name="gpt2", family="gpt2", vocab_size=50257, hidden_size=768, num_layers=12,
        num_heads=12, num_kv_heads=12, head_dim=64, intermediate_size=3072, max_positions=1024,
        norm_eps=1e-5, activation="gelu_tanh", tied_embeddings=True, attention_bias=True,
        mlp_bias=True,
    ),
    "bert-base": ModelConfig(
        name="bert-base", family="bert", vocab_size=30522, hidden_size=768, num_layers=12,
        num_heads=12, num_kv_heads=12, head_dim=64, intermediate_size=3072, max_positions=512,
        norm_eps=1e-12, activation="gelu", tied_embeddings=False, attention_bias=True,
        mlp_bias=True, type_vocab_size=2,
    ),
    "tiny-llama": _llama(
        "tiny-llama", vocab_size=256, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
        head_dim=16, intermediate_size=172, max_positions=256, weight_dtype=DType.F32,
        random_seed=0,
    ),
}  # fmt: skip


def builtin_config(name: str) -> ModelConfig:
    """Return the built-in configuration `name`; an unknown name lists the known ones."""
    try:
        return BUILTINS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r} (built-in: {', '.join(BUILTINS)})") from None
