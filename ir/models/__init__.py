"""Transformer model configs, graph builders (LLaMA, OPT, GPT-2, BERT) and importers.

`config` (built-in configs, validation), `hf_config` (Hugging Face config.json), `blocks` +
`llama`/`opt`/`bert` (graph builders), `hf` + `safetensors_file` (real weights),
`random_weights` (seeded weights for shape-only models), `zoo` (model sources by name).

Imports: sparseflow.ir only.
"""

from sparseflow.ir.models.config import BUILTINS, ModelConfig, builtin_config
from sparseflow.ir.models.hf import import_hf_folder
from sparseflow.ir.models.hf_config import from_hf_config
from sparseflow.ir.models.random_weights import random_weights
from sparseflow.ir.models.zoo import build_graph, list_models, load_config, load_model

__all__ = [
    "BUILTINS",
    "ModelConfig",
    "build_graph",
    "builtin_config",
    "from_hf_config",
    "import_hf_folder",
    "list_models",
    "load_config",
    "load_model",
    "random_weights",
]
