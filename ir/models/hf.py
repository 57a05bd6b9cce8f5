"""Import a Hugging Face checkpoint folder (config.json + safetensors) as a graph with weights.

Our weight names (see `sparseflow.ir.models.blocks`) map to Hugging Face parameter names by a
table per family: a layer prefix (`model.layers.{i}.`) plus the module's own name, then
`.weight` or `.bias`. A checkpoint of the base model without its head (`LlamaModel`, the
original `gpt2` files) lacks the first prefix component, and old BERT files name LayerNorm
parameters gamma/beta; both spellings are accepted. GPT-2's Conv1D weights are stored
[in, out] and are transposed; its fused `c_attn` [hidden, 3*hidden] is split into q, k, v.
Mixtral's experts are `block_sparse_moe.experts.{e}.w1/w3/w2` (gate, up, down) and its router
`block_sparse_moe.gate`, as the Hub checkpoints and `save_pretrained` store them.
Names and shapes are checked when the folder is imported; values load lazily on first use.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparseflow.ir.dims import Dim
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.models.hf_config import from_hf_config
from sparseflow.ir.models.safetensors_file import TensorRecord, index_folder
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op

_LAYER_PREFIX = {
    "llama": "model.layers.{i}.",
    "opt": "model.decoder.layers.{i}.",
    "gpt2": "transformer.h.{i}.",
    "bert": "bert.encoder.layer.{i}.",
}
_LAYER_MODULES = {
    "llama": {
        "attn_norm": "input_layernorm",
        "attn.q_proj": "self_attn.q_proj",
        "attn.k_proj": "self_attn.k_proj",
        "attn.v_proj": "self_attn.v_proj",
        "attn.o_proj": "self_attn.o_proj",
        "mlp_norm": "post_attention_layernorm",
        "mlp.gate_proj": "mlp.gate_proj",
        "mlp.up_proj": "mlp.up_proj",
        "mlp.down_proj": "mlp.down_proj",
        "mlp.router": "block_sparse_moe.gate",
    },
    "opt": {
        "attn_norm": "self_attn_layer_norm",
        "attn.q_proj": "self_attn.q_proj",
        "attn.k_proj": "self_attn.k_proj",
        "attn.v_proj": "self_attn.v_proj",
        "attn.o_proj": "self_attn.out_proj",
        "mlp_norm": "final_layer_norm",
        "mlp.fc1": "fc1",
        "mlp.fc2": "fc2",
    },
    "gpt2": {
        "attn_norm": "ln_1",
        "attn.q_proj": "attn.c_attn",
        "attn.k_proj": "attn.c_attn",
        "attn.v_proj": "attn.c_attn",
        "attn.o_proj": "attn.c_proj",
        "mlp_norm": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
    },
    "bert": {
        "attn.q_proj": "attention.self.query",
        "attn.k_proj": "attention.self.key",
        "attn.v_proj": "attention.self.value",
        "attn.o_proj": "attention.output.dense",
        "attn_norm": "attention.output.LayerNorm",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
        "mlp_norm": "output.LayerNorm",
    },
}
_GLOBAL_MODULES = {
    "llama": {"embed_tokens": "model.embed_tokens", "final_norm": "model.norm"},
    "opt": {
        "embed_tokens": "model.decoder.embed_tokens",
        "embed_positions": "model.decoder.embed_positions",
        "final_norm": "model.decoder.final_layer_norm",
    },
    "gpt2": {
        "embed_tokens": "transformer.wte", "embed_positions": "transformer.wpe",
        "final_norm": "transformer.ln_f",
    },
    "bert": {
        "embed_tokens": "bert.embeddings.word_embeddings",
        "embed_positions": "bert.embeddings.position_embeddings",
        "embed_types": "bert.embeddings.token_type_embeddings",
        "embed_norm": "bert.embeddings.LayerNorm", "pooler": "bert.pooler.dense",
    },
}  # fmt: skip
_EXPERT = re.compile(r"mlp\.experts\.(\d+)\.(gate|up|down)_proj")
_EXPERT_WEIGHTS = {"gate": "w1", "up": "w3", "down": "w2"}
_GPT2_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_FUSED_QKV = {"attn.q_proj": 0, "attn.k_proj": 1, "attn.v_proj": 2}


@dataclass(frozen=True)
class HfSource:
    """Where one of our weights comes from: the HF parameter, whether it is a Conv1D weight
    stored [in, out], and which third of a fused q/k/v output it is (None: all of it)."""

    name: str
    conv1d: bool = False
    third: int | None = None

    def candidates(self) -> list[str]:
        """Return the parameter names to look for, preferred first."""
        names = [self.name, self.name.split(".", 1)[1]] if "." in self.name else [self.name]
        for old, new in ((".weight", ".gamma"), (".bias", ".beta")):
            if ".LayerNorm" in self.name and self.name.endswith(old):
                names += [n[: -len(old)] + new for n in names]
        return names

    def source_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Return the stored shape of the parameter that yields our `shape`."""
        if self.third is not None:
            shape = (3 * shape[0], *shape[1:])
        return shape[::-1] if self.conv1d and len(shape) == 2 else shape

    def convert(self, value: np.ndarray) -> np.ndarray:
        """Return our weight from the stored parameter."""
        if self.conv1d and value.ndim == 2:
            value = value.T
        if self.third is not None:
            rows = value.shape[0] // 3
            value = value[self.third * rows : (self.third + 1) * rows]
        return np.ascontiguousarray(value, dtype=np.float32)


def hf_source(family: str, name: str) -> HfSource:
    """Return where our weight `name` of a `family` model lives in a Hugging Face checkpoint."""
    module, suffix = (name[: -len(".bias")], "bias") if name.endswith(".bias") else (name, "weight")
    if module == "lm_head":
        return HfSource(f"lm_head.{suffix}")
    parts = module.split(".", 2)
    if parts[0] == "layers" and len(parts) == 3 and parts[1].isdigit():
        local = _LAYER_MODULES[family].get(parts[2]) or _expert_module(family, parts[2])
        if local is not None:
            prefix = _LAYER_PREFIX[family].format(i=parts[1])
            conv1d = family == "gpt2" and local in _GPT2_CONV1D
            third = _FUSED_QKV.get(parts[2]) if family == "gpt2" else None
            return HfSource(f"{prefix}{local}.{suffix}", conv1d, third)
    elif module in _GLOBAL_MODULES[family]:
        return HfSource(f"{_GLOBAL_MODULES[family][module]}.{suffix}")
    raise InputError(f"weight {name!r} has no Hugging Face name in a {family} model")


def _expert_module(family: str, local: str) -> str | None:
    """Return Mixtral's name of an expert weight: `mlp.experts.{e}.gate_proj` is
    `block_sparse_moe.experts.{e}.w1` (up_proj w3, down_proj w2)."""
    match = _EXPERT.fullmatch(local)
    if family != "llama" or match is None:
        return None
    return f"block_sparse_moe.experts.{match[1]}.{_EXPERT_WEIGHTS[match[2]]}"


def import_hf_folder(folder: str | Path, phase: str, batch: int = 1, seq: Dim = "T") -> Graph:
    """Return the graph of the checkpoint in `folder` (config.json + *.safetensors, sharded or
    not) with lazily loaded weights; raise InputError naming the file and tensor when a
    tensor is missing or has the wrong shape."""
    from sparseflow.ir.models.zoo import build_graph  # zoo imports this module

    folder = Path(folder)
    config = from_hf_config(folder / "config.json", name=folder.resolve().name)
    graph = build_graph(config, phase, batch, seq)
    records = index_folder(folder)
    weights = graph.nodes_of(Op.WEIGHT)
    entries = {n.name: _loader(n, config.family, records, folder) for n in weights}
    return graph.with_nodes(graph.nodes, graph.weights.replace(entries))


def _loader(
    node: Node, family: str, records: dict[str, TensorRecord], folder: Path
) -> Callable[[], np.ndarray]:
    source = hf_source(family, node.name)
    record = next((records[c] for c in source.candidates() if c in records), None)
    if record is None:
        raise InputError(f"{folder}: no tensor {source.name!r} for weight {node.name!r}")
    expected = source.source_shape(tuple(int(d) for d in node.type.shape))
    if record.shape != expected:
        raise InputError(
            f"{record.path}: tensor {record.name!r} has shape {list(record.shape)}, "
            f"expected {list(expected)}"
        )
    return lambda: source.convert(record.load())
