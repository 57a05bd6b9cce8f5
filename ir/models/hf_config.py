"""Read a Hugging Face `config.json` into a `ModelConfig`.

Supported `model_type`s: `llama`, `mistral` (LLaMA with a sliding attention window), `mixtral`
(Mistral with routed experts), `opt` (pre-LN, no embedding projection), `gpt2` and `bert`
(absolute positions, encoder only). Every field used is checked for presence and type;
a field that asks for a network we do not build (RoPE scaling, post-LN OPT, cross-attention)
is rejected. Errors are InputErrors naming the file and the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.models.config import ModelConfig

_MISSING = object()

# Hugging Face `hidden_act` / `activation_function` names -> our activation names.
_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "relu": "relu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
}
_DTYPES = {"float32": DType.F32, "float16": DType.F16, "bfloat16": DType.BF16}


class _Fields:
    """Typed access to the fields of one parsed config file; errors name file and field."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def fail(self, field: str, problem: str) -> InputError:
        return InputError(f"{self.source}: field {field!r} {problem}")

    def get(self, field: str, kinds: tuple[type, ...], default: object = _MISSING) -> Any:
        value = self.data.get(field, default)
        if value is _MISSING:
            raise self.fail(field, "is missing")
        if value is None and default is not _MISSING:
            return default
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(field, f"must be {names}, not {json.dumps(value)[:40]}")
        return value

    def positive(self, field: str, default: object = _MISSING) -> int:
        value = self.get(field, (int,), default)
        if value < 1:
            raise self.fail(field, f"must be a positive integer, not {value}")
        return value

    def number(self, field: str, default: object = _MISSING) -> float:
        value = self.get(field, (int, float), default)
        if isinstance(value, int) and abs(value) > 2**64:
            raise self.fail(field, "is out of range")
        return float(value)

    def flag(self, field: str, default: object = _MISSING) -> bool:
        return self.get(field, (bool,), default)

    def require(self, field: str, allowed: tuple[object, ...], default: object) -> None:
        value = self.data.get(field, default)
        if value not in allowed:
            shown = ", ".join(json.dumps(a) for a in allowed)
            raise self.fail(field, f"must be {shown} (unsupported: {json.dumps(value)[:40]})")

    def activation(self, field: str, default: object = _MISSING) -> str:
        name = self.get(field, (str,), default)
        if name not in _ACTIVATIONS:
            raise self.fail(field, f"activation {name!r} is not supported")
        return _ACTIVATIONS[name]

    def weight_dtype(self) -> DType:
        field = "dtype" if "dtype" in self.data else "torch_dtype"
        name = self.get(field, (str,), "float32")
        if name not in _DTYPES:
            raise self.fail(field, f"must be one of {', '.join(_DTYPES)}, not {name!r}")
        return _DTYPES[name]


def from_hf_config(path: str | Path, name: str | None = None) -> ModelConfig:
    """Return the ModelConfig of a Hugging Face `config.json`; raise InputError naming the
    file and field on any missing, mistyped or unsupported field."""
    source = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{source}: cannot read config ({err.__class__.__name__})") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise InputError(f"{source}: not valid JSON ({err})") from None
    return parse_hf_config(data, source, name or Path(path).resolve().parent.name or "model")


def parse_hf_config(data: object, source: str, name: str) -> ModelConfig:
    """Return the ModelConfig of an already parsed config.json object."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: a config must be a JSON object")
    fields = _Fields(data, source)
    model_type = fields.get("model_type", (str,))
    parser = _PARSERS.get(model_type)
    if parser is None:
        raise fields.fail("model_type", f"{model_type!r} is not one of {', '.join(_PARSERS)}")
    values = parser(fields)
    try:
        return ModelConfig(name=name, weight_dtype=fields.weight_dtype(), **values)
    except InputError as err:
        raise InputError(f"{source}: {err}") from None


def _rope_theta(f: _Fields) -> float:
    params = f.get("rope_parameters", (dict,), None)
    if params is None:
        f.require("rope_scaling", (None,), None)
        return f.number("rope_theta", 10000.0)
    nested = _Fields(params, f"{f.source} (rope_parameters)")
    nested.require("rope_type", ("default",), "default")
    return nested.number("rope_theta", 10000.0)


def _llama(f: _Fields) -> dict[str, object]:
    hidden, heads = f.positive("hidden_size"), f.positive("num_attention_heads")
    if "head_dim" not in f.data and hidden % heads:
        raise f.fail("num_attention_heads", "must divide 'hidden_size'")
    return dict(
        family="llama",
        vocab_size=f.positive("vocab_size"),
        hidden_size=hidden,
        num_layers=f.positive("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=f.positive("num_key_value_heads", heads),
        head_dim=f.positive("head_dim", max(1, hidden // heads)),
        intermediate_size=f.positive("intermediate_size"),
        max_positions=f.positive("max_position_embeddings", 2048),
        norm_eps=f.number("rms_norm_eps", 1e-6),
        rope_theta=_rope_theta(f),
        activation=f.activation("hidden_act", "silu"),
        tied_embeddings=f.flag("tie_word_embeddings", False),
        attention_bias=f.flag("attention_bias", False),
        mlp_bias=f.flag("mlp_bias", False),
    )


def _mistral(f: _Fields) -> dict[str, object]:
    """Return a Mistral config: LLaMA with a sliding attention window (none when the window
    covers the whole context, which is then the same network)."""
    values = _llama(f)
    window = f.get("sliding_window", (int,), None)
    if window is not None and window < 1:
        raise f.fail("sliding_window", f"must be a positive integer or null, not {window}")
    values["sliding_window"] = window if window and window < values["max_positions"] else 0
    return values


def _mixtral(f: _Fields) -> dict[str, object]:
    """Return a Mixtral config: Mistral whose MLPs are `num_local_experts` experts, of which
    each token takes `num_experts_per_tok` (gates renormalised over them)."""
    values = _mistral(f)
    values["num_experts"] = f.positive("num_local_experts")
    values["experts_per_token"] = f.positive("num_experts_per_tok")
    return values


def _divided(f: _Fields, hidden: int, heads: int) -> int:
    if hidden % heads:
        raise f.fail("num_attention_heads" if "num_attention_heads" in f.data else "n_head",
                     "must divide the hidden size")  # fmt: skip
    return hidden // heads


def _opt(f: _Fields) -> dict[str, object]:
    hidden, heads = f.positive("hidden_size"), f.positive("num_attention_heads")
    f.require("do_layer_norm_before", (True,), True)
    f.require("_remove_final_layer_norm", (False,), False)
    f.require("layer_norm_elementwise_affine", (True,), True)
    f.require("word_embed_proj_dim", (hidden, None), hidden)
    bias = f.flag("enable_bias", True)
    return dict(
        family="opt",
        vocab_size=f.positive("vocab_size"),
        hidden_size=hidden,
        num_layers=f.positive("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_divided(f, hidden, heads),
        intermediate_size=f.positive("ffn_dim"),
        max_positions=f.positive("max_position_embeddings"),
        norm_eps=1e-5,  # OPT builds nn.LayerNorm with its default eps
        activation=f.activation("activation_function", "relu"),
        tied_embeddings=f.flag("tie_word_embeddings", True),
        attention_bias=bias,
        mlp_bias=bias,
        position_offset=2,
    )


def _gpt2(f: _Fields) -> dict[str, object]:
    hidden, heads = f.positive("n_embd"), f.positive("n_head")
    f.require("scale_attn_weights", (True,), True)
    f.require("scale_attn_by_inverse_layer_idx", (False,), False)
    f.require("add_cross_attention", (False,), False)
    return dict(
        family="gpt2",
        vocab_size=f.positive("vocab_size"),
        hidden_size=hidden,
        num_layers=f.positive("n_layer"),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_divided(f, hidden, heads),
        intermediate_size=f.positive("n_inner", 4 * hidden),
        max_positions=f.positive("n_positions"),
        norm_eps=f.number("layer_norm_epsilon", 1e-5),
        activation=f.activation("activation_function", "gelu_new"),
        tied_embeddings=f.flag("tie_word_embeddings", True),
        attention_bias=True,
        mlp_bias=True,
    )


def _bert(f: _Fields) -> dict[str, object]:
    hidden, heads = f.positive("hidden_size"), f.positive("num_attention_heads")
    f.require("position_embedding_type", ("absolute",), "absolute")
    f.require("is_decoder", (False,), False)
    f.require("add_cross_attention", (False,), False)
    return dict(
        family="bert",
        vocab_size=f.positive("vocab_size"),
        hidden_size=hidden,
        num_layers=f.positive("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_divided(f, hidden, heads),
        intermediate_size=f.positive("intermediate_size"),
        max_positions=f.positive("max_position_embeddings"),
        norm_eps=f.number("layer_norm_eps", 1e-12),
        activation=f.activation("hidden_act", "gelu"),
        tied_embeddings=False,  # BertModel has no language-model head to tie
        attention_bias=True,
        mlp_bias=True,
        type_vocab_size=f.positive("type_vocab_size", 2),
    )


_PARSERS: dict[str, Callable[[_Fields], dict[str, object]]] = {
    "llama": _llama,
    "mistral": _mistral,
    "mixtral": _mixtral,
    "opt": _opt,
    "gpt2": _gpt2,
    "bert": _bert,
}
