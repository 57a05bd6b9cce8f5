"""Compression passes and recipes: Graph -> Graph functions that sparsify and quantize.

- `manager`: passes registered by name; runs them in order and verifies the graph after each.
- `recipe`: YAML recipes (ordered passes with options and layer patterns) and the command
  line shorthands; `recipes/*.yaml` are the built-in ones.
- `sparsify` / `sparsity`: unstructured, N:M, block and FlightLLM N:16 pruning.
- `quantize_weights`, `quantize`, `quant_gptq`, `quant_llm_int8`, `quant_fp4`, `quant_olive`,
  `smoothquant`: weight quantization algorithms; `activations`: activation and KV-cache
  quantization; `precision`: FP16/BF16 rounding of activations; `untie`: untied LM head.
- `calibration`: activations on calibration ids for the passes that need them.

Imports: sparseflow.ir only.
"""
