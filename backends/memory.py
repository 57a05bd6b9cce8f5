"""Does a compressed model fit a device: stored weight bytes and KV-cache bytes.

`deployed_weight_bytes` sums every weight as deployed (`weight_storage_bytes`); the KV cache
holds `prompt_len + gen_len` keys and values per layer, in their quantized type or in the
device's float width. `check_capacity` compares both with a GPU's or CPU's memory.
"""

from __future__ import annotations

from sparseflow.hw_models.schema import CpuModel, GpuModel
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.ops import Op, weight_storage_bytes

FP16_BYTES = 2  # GPUs and CPUs keep an unquantized KV cache in fp16


def deployed_weight_bytes(graph: Graph) -> int:
    """Return the graph's weight bytes as deployed (`weight_storage_bytes` of each weight)."""
    return sum(weight_storage_bytes(node.type) for node in graph.nodes_of(Op.WEIGHT))


def kv_cache_bytes(decode: Graph, length: int, float_bytes: int) -> int:
    """Return the bytes of a KV cache of `length` positions (all layers and sequences)."""
    total = 0
    for node in decode.nodes_of(Op.KV_APPEND):
        tensor_type = node.type
        per_element = tensor_type.dtype.bits / 8 if tensor_type.quant else float_bytes
        total += int(tensor_type.numel({"L": length - 1, "T": 1}) * per_element)
    return total


def check_capacity(hw: GpuModel | CpuModel, decode: Graph, length: int) -> None:
    """Raise InputError naming `memory.capacity_bytes` when weights + KV cache overflow it."""
    weights = deployed_weight_bytes(decode)
    kv = kv_cache_bytes(decode, length, FP16_BYTES)
    capacity = hw.memory.capacity_bytes
    if weights + kv > capacity:
        raise InputError(
            f"{hw.source_file or hw.name}: field 'memory.capacity_bytes' = {capacity} cannot hold "
            f"the model: weights {weights} + KV cache {kv} bytes"
        )
