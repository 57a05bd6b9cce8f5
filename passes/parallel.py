"""Map a model graph onto tp x pp devices: pipeline stages, each split tensor-parallel.

Requires: what `pipeline_parallel` and `tensor_parallel` require.
Ensures: `map_devices(graph, tp, pp)[s][r]` is the graph device r of stage s runs (stage s of
`pipeline_stages`, then `tensor_shard` rank r), with the key/value heads of the model whose
cache it holds; `local_program(graph)` drops the collectives of a device graph (each partial
sum or logits shard takes the collective's name), which is the device's own work for a
compiler that exchanges values through the host or models the exchange apart.
IR before -> after (`local_program`):
    %l.out.partial : f32[1,T,64] = linear(%l.merged, %layers.0.attn.o_proj)
    %l.out : f32[1,T,64] = all_reduce(%l.out.partial) {"devices": 2}
  becomes
    %l.out : f32[1,T,64] = linear(%l.merged, %layers.0.attn.o_proj)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sparseflow.ir.graph import Graph, infer_types
from sparseflow.ir.ops import OpClass
from sparseflow.passes.pipeline_parallel import pipeline_stages
from sparseflow.passes.tensor_parallel import plan_shards, tensor_shard


@dataclass(frozen=True)
class DeviceGraph:
    """One device's graph, its place in the mapping and the model's KV heads it caches."""

    graph: Graph
    stage: int
    rank: int
    kv_heads: tuple[int, int]


def map_devices(graph: Graph, tp: int, pp: int) -> list[list[DeviceGraph]]:
    """Return the device graphs [stage][rank] of a tp x pp mapping (module doc)."""
    heads = int(graph.meta_dict["num_kv_heads"])
    stages = pipeline_stages(graph, pp)
    return [
        [
            DeviceGraph(
                tensor_shard(stage, tp, rank),
                s,
                rank,
                plan_shards(stage, tp, rank).kv_heads if tp > 1 else (0, heads),
            )
            for rank in range(tp)
        ]
        for s, stage in enumerate(stages)
    ]


def local_program(graph: Graph) -> Graph:
    """Return a device graph without its collectives (module doc)."""
    renamed: dict[str, str] = {}
    nodes = []
    for node in graph.nodes:
        if node.op.op_class is OpClass.COMMUNICATION:
            renamed[node.inputs[0]] = node.name
            continue
        nodes.append(node)
    nodes = [replace(n, name=renamed.get(n.name, n.name)) for n in nodes]
    return replace(graph, nodes=tuple(infer_types(nodes)))
