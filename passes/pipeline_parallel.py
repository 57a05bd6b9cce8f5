"""Pipeline parallelism: cut a graph into `pp` stages of consecutive layers.

Requires: a graph built by `sparseflow.ir.models` (compressed or not, tensor-sharded or not)
whose metadata holds `num_layers` and whose layer nodes are named `layers.{i}.*` (with the
caches `past_k.{i}`, `k.{i}`, ...).
Ensures: `pipeline_stages(graph, pp)` returns one graph per stage. Stage s holds layers
[first_s, last_s] (layers spread as evenly as they go, the earlier stages taking one more);
the first stage also holds what precedes the layers (embeddings), the last what follows them
(final norm, LM head). Any other node goes to the latest stage among its inputs'. A value
computed in one stage and read in a later one becomes an output of the first and an input
(same name and type) of the second: it crosses the link between them. Weights and graph
inputs go to every stage that reads them (a tied embedding and LM head: to both ends).
IR before -> after (pp = 2, 2 layers): stage 0 ends with
    %layers.0.out : f32[1,T,64] = add(%layers.0.attn_residual, %layers.0.mlp.down)
    return %layers.0.out, %k.0, %v.0
  and stage 1 starts with
    %layers.0.out : f32[1,T,64] = input()
"""

from __future__ import annotations

import re
from dataclasses import replace

from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node, make_attrs
from sparseflow.ir.ops import Op

_LAYER_OF = re.compile(r"(?:layers|past_k|past_v|k|v)\.(\d+)(?:\.|$)")


def stage_layers(layers: int, pp: int) -> list[range]:
    """Return the layers of each stage: contiguous, as even as they go, earlier ones larger."""
    base, extra = divmod(layers, pp)
    starts = [s * base + min(s, extra) for s in range(pp + 1)]
    return [range(starts[s], starts[s + 1]) for s in range(pp)]


def pipeline_stages(graph: Graph, pp: int) -> list[Graph]:
    """Return the stage graphs of a `pp`-stage pipeline (module doc); pp = 1 is the graph."""
    layers = int(graph.meta_dict["num_layers"])
    model = graph.meta_dict.get("name", graph.name)
    if isinstance(pp, bool) or not isinstance(pp, int) or pp < 1:
        raise InputError(f"--pp (parallel.pp) must be an integer >= 1, not {pp!r}")
    if pp > layers:
        raise InputError(f"--pp {pp} (parallel.pp) exceeds the {layers} layers of {model}")
    if pp == 1:
        return [graph]
    stage_of_layer = {i: s for s, r in enumerate(stage_layers(layers, pp)) for i in r}
    stage = _assign(graph, stage_of_layer, pp)
    return [_stage_graph(graph, stage, s, pp) for s in range(pp)]


def _assign(graph: Graph, stage_of_layer: dict[int, int], pp: int) -> dict[str, int]:
    """Return the stage of every computed node (sources follow their readers)."""
    stage: dict[str, int] = {}
    for node in graph.nodes:
        if node.op.is_source:
            continue
        match = _LAYER_OF.match(node.name)
        if match:
            stage[node.name] = stage_of_layer[int(match[1])]
        else:
            stage[node.name] = max((stage[i] for i in node.inputs if i in stage), default=0)
    for name in graph.outputs:
        if name not in stage:  # an output that is a graph input or weight
            stage[name] = pp - 1
    return stage


def _stage_graph(graph: Graph, stage: dict[str, int], s: int, pp: int) -> Graph:
    mine = [n for n in graph.nodes if not n.op.is_source and stage[n.name] == s]
    defined = {n.name for n in mine}
    read = {i for n in mine for i in n.inputs}
    sources = [n for n in graph.nodes if n.op.is_source and n.name in read]
    received = [graph.node(i) for i in sorted(read - defined) if not graph.node(i).op.is_source]
    inputs = [Node(n.name, Op.INPUT, (), n.type) for n in received]
    later = {i for n in graph.nodes if not n.op.is_source and stage[n.name] > s for i in n.inputs}
    outputs = [o for o in graph.outputs if stage.get(o) == s]
    outputs += [n.name for n in mine if n.name in later and n.name not in outputs]
    nodes = [*sources, *inputs, *mine]
    weights = graph.weights.subset({n.name for n in sources})
    meta = make_attrs({**graph.meta_dict, "pp": pp, "pp_stage": s})
    return replace(graph, name=f"{graph.name}.stage{s}", nodes=tuple(nodes),
                   outputs=tuple(outputs), meta=meta, weights=weights)  # fmt: skip


def received_values(stage: Graph) -> list[Node]:
    """Return the inputs of a stage graph that an earlier stage computes (its link traffic)."""
    return [n for n in stage.nodes_of(Op.INPUT) if not _is_model_input(n.name)]


def _is_model_input(name: str) -> bool:
    return name in ("ids", "pos", "token_types") or name.startswith(("past_k.", "past_v."))
