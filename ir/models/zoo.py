"""Load a model from any source: built-in name, config.json, checkpoint folder, graph file.

`load_model` is the one entry point the command line uses; `build_graph` turns a config into
a graph; `list_models` names the built-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sparseflow.ir.dims import Dim
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.models.bert import build_bert
from sparseflow.ir.models.config import BUILTIN_SOURCES, BUILTINS, ModelConfig
from sparseflow.ir.models.hf import import_hf_folder
from sparseflow.ir.models.hf_config import from_hf_config
from sparseflow.ir.models.llama import build_llama
from sparseflow.ir.models.opt import build_gpt2, build_opt
from sparseflow.ir.models.random_weights import random_weights
from sparseflow.ir.serialize import read_graphs

_BUILDERS: dict[str, Callable[[ModelConfig, str, int, Dim], Graph]] = {
    "llama": build_llama,
    "opt": build_opt,
    "gpt2": build_gpt2,
    "bert": build_bert,
}


def build_graph(config: ModelConfig, phase: str, batch: int = 1, seq: Dim = "T") -> Graph:
    """Return the graph of `config` for `phase` (prefill: ids [batch, seq]; decode: one token
    per sequence against a cache of symbolic length L). Shape-only unless the config carries
    a `random_seed`, in which case every weight is seeded random."""
    graph = _BUILDERS[config.family](config, phase, batch, seq)
    if config.random_seed is not None:
        graph = random_weights(graph, config.random_seed)
    return graph


def list_models() -> dict[str, str]:
    """Return the built-in model names, each with the checkpoint its config copies."""
    return dict(BUILTIN_SOURCES)


def load_config(source: str) -> ModelConfig:
    """Return the config of a built-in name, a config.json path or a checkpoint folder."""
    path = Path(source)
    if source in BUILTINS:
        return BUILTINS[source]
    if path.is_dir():
        return from_hf_config(path / "config.json", name=path.resolve().name)
    if path.is_file():
        return from_hf_config(path)
    raise _unknown(source)


def load_model(source: str, phase: str = "prefill", batch: int = 1, seq: Dim = "T") -> Graph:
    """Return the graph of a model source for `phase` ("prefill" or "decode").

    `source` is a built-in name (see `list_models`), a path to a Hugging Face config.json
    (shape-only graph), a folder holding config.json and *.safetensors (weights loaded
    lazily), a sparseflow graph file or a folder that `compile` wrote (its `graph` file;
    graphs are returned as written, so `batch` and `seq` must agree with them). Anything else
    raises InputError listing the built-in names.
    """
    path = Path(source)
    if source in BUILTINS:
        return build_graph(BUILTINS[source], phase, batch, seq)
    if path.is_dir() and not (path / "config.json").is_file() and (path / "graph").is_file():
        return _graph_file(path / "graph", phase)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"{source}: a model folder needs a config.json (or a graph file)")
        return import_hf_folder(path, phase, batch, seq)
    if path.is_file() and path.suffix == ".json":
        return build_graph(from_hf_config(path), phase, batch, seq)
    if path.is_file():
        return _graph_file(path, phase)
    raise _unknown(source)


def _graph_file(path: Path, phase: str) -> Graph:
    """Return the graph of `phase` in a graph file (a lone graph without a phase serves any)."""
    graphs = read_graphs(path)
    phases = [g.meta_dict.get("phase") for g in graphs]
    if len(graphs) == 1 and phases[0] is None:
        return graphs[0]
    if phase not in phases:
        held = ", ".join(str(p) for p in phases)
        raise InputError(f"{path}: holds the {held} graph(s), but {phase!r} was asked for")
    return graphs[phases.index(phase)]


def _unknown(source: str) -> InputError:
    known = ", ".join(BUILTINS)
    return InputError(f"unknown model {source!r}: not a built-in ({known}) nor an existing path")
